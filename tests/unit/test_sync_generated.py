"""pydbal/sync_workflows.py is what ``python -m pydbal.sync_gen`` writes from Workflows today: a
method added to (or changed in) the async API must be regenerated into the sync facade."""

from __future__ import annotations

from pydbal import sync_gen


def test_generated_sync_facade_is_up_to_date() -> None:
    assert sync_gen.TARGET.read_text() == sync_gen.render(), (
        "pydbal/sync_workflows.py is stale: run `python -m pydbal.sync_gen`"
    )


def test_the_generator_would_notice_a_new_method() -> None:
    from pydbal.workflows import Workflows

    async def frobnicate(self: Workflows, workflow_id: str, times: int = 2) -> int:
        return times

    Workflows.frobnicate = frobnicate  # type: ignore[attr-defined]
    try:
        text = sync_gen.render()
    finally:
        del Workflows.frobnicate  # type: ignore[attr-defined]
    assert "def frobnicate(self, workflow_id: str, times: int = 2) -> int:" in text
    assert "return self._call(self._async.frobnicate(workflow_id, times))" in text
    assert text != sync_gen.TARGET.read_text()
