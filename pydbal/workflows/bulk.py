"""The bulk writes of :class:`pydbal.workflows.Workflows`: create_many, update_many and
delete_many, each all or nothing.

Each write invalidates what ``invalidation.INVALIDATES`` names for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydbal import gcpause
from pydbal import limits as lim
from pydbal import queries as q
from pydbal.instrument import operations
from pydbal.models import CreateWorkflowInput, UpdateWorkflowInput, WorkflowFilter
from pydbal.validation import VALIDATOR_VERSION
from pydbal.workflows._base import (
    DEFINITION_FIELDS,
    _json,
    _report_status,
    _validate,
    batch_sizes,
)
from pydbal.workflows.reads import Reads


@operations  # every public method: refused once closing, counted in flight, traced when on
class Bulk(Reads):
    """Writes of many workflows in one call (uses the filters of :class:`Reads`)."""

    async def create_many(self, inputs: Iterable[CreateWorkflowInput | Mapping[str, Any]]) -> int:
        """Create many workflows, all or nothing, in one transaction of a few statements (at most
        1000 rows each, see ``batch_sizes``): each batch is parsed, checked, validated and
        encoded while the server stores the one before. Any refused input is refused as if all
        were checked first."""
        self._require_create()
        items = lim.items(inputs, "inputs")
        if not items:
            return 0
        sizes = batch_sizes(len(items))
        starts = [sum(sizes[:k]) for k in range(len(sizes))]

        def prepare(k: int) -> tuple[Any, ...]:
            batch = [self._create_input(i) for i in items[starts[k] : starts[k] + sizes[k]]]
            return self._insert_args(batch, False, None)

        async def run(conn: Any, args: tuple[Any, ...]) -> int:
            return int(await conn.fetchval(q.INSERT_COUNT, *args))

        with gcpause.paused():
            counts = await self._pipelined(len(sizes), prepare, run, [])
        await self._after_write("create_many")
        return sum(counts)

    async def update_many(
        self,
        filter: WorkflowFilter | Mapping[str, Any] | None,
        input: UpdateWorkflowInput | Mapping[str, Any],
    ) -> int:
        """Apply ``input`` to every matching workflow the caller may change; returns how many.
        Rows of another creator (role user) or locked by another user are left untouched."""
        flt = self._filter(filter)
        patch = self._patch(input)
        vstatus: str | None = None
        verrors: str | None = None
        if all(k in patch for k in DEFINITION_FIELDS):
            report = _validate(
                patch["nodes"], patch["edges"], patch["variables"], patch.get("config")
            )
            vstatus, verrors = _report_status(report)
        count = int(
            await self._db.fetchval(
                q.UPDATE_MANY,
                *self._ctx,
                _json(flt),
                _json(patch),
                vstatus,
                verrors,
                VALIDATOR_VERSION,
            )
        )
        await self._after_write("update_many")
        return count

    async def delete_many(self, filter: WorkflowFilter | Mapping[str, Any] | None) -> int:
        """Delete every matching workflow the caller may delete; returns how many."""
        flt = self._filter(filter)
        count = int(await self._db.fetchval(q.DELETE_MANY, *self._ctx, _json(flt)))
        await self._after_write("delete_many")
        return count
