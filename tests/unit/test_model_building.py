"""``pydbal.workflows._base._workflow`` builds a Workflow from a row without validation, by
setting pydantic's instance attributes itself (``__dict__``, ``__pydantic_fields_set__``,
``__pydantic_extra__``, ``__pydantic_private__``): 6-7x cheaper than ``Workflow.model_construct``
on every read. Nothing in pydantic's public API promises that this makes a complete model, so
these tests pin every behaviour pydbal relies on: a pydantic upgrade that changes the internals
fails here instead of in a caller."""

from __future__ import annotations

import copy
import pickle
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter

from pydbal.models import Page, Workflow
from pydbal.workflows._base import _workflow

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
FIELDS = list(Workflow.model_fields)


def _row(**changes: Any) -> dict[str, Any]:
    """A row as ``queries.workflow_columns`` reads it (asyncpg's values: UUID, datetime, ...)."""
    row: dict[str, Any] = {
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "tenant_id": "acme",
        "name": "Nightly",
        "description": None,
        "nodes": [{"id": "a", "type": "start", "parameters": {"k": [1, 2]}}],
        "edges": {"a": {"main": [[{"node": "b", "type": "main", "index": 0}]]}},
        "enabled": True,
        "version": 3,
        "execution_count": 7,
        "last_executed_at": NOW,
        "last_execution_status": "success",
        "average_execution_time": 12.5,
        "created_at": NOW - timedelta(days=1),
        "updated_at": NOW,
        "created_by": "alice",
        "updated_by": None,
        "variables": {"v": 1},
        "config": {"settings": {}},
        "tags": ["etl"],
        "category": "user",
        "validation_status": "valid",
        "validation_errors": {"valid": True, "errors": [], "warnings": []},
        "validated_at": NOW,
        "valid_until": NOW + timedelta(hours=1),
        "validator_version": 1,
        "is_locked": False,
        "locked_by": None,
        "locked_at": None,
        "lock_expires_at": None,
        "archived_at": None,
    }
    row.update(changes)
    assert list(row) == FIELDS  # the row order _workflow relies on (see test_columns.py)
    return row


def test_equal_to_the_validated_model() -> None:
    row = _row()
    built = _workflow(row)
    validated = Workflow.model_validate(row)
    assert type(built) is Workflow
    assert built == validated
    assert validated == built
    assert built == Workflow.model_construct(**row)
    assert built != Workflow.model_validate(_row(version=4))


def test_every_field_counts_as_set() -> None:
    built = _workflow(_row())
    assert built.model_fields_set == set(FIELDS)
    # defaults are never used: a None read from the row is the value, and it is "set"
    assert built.description is None
    assert "description" in built.model_fields_set
    assert built.model_dump(exclude_unset=True) == built.model_dump()
    assert built.model_extra is None
    assert built.__pydantic_private__ is None


def test_columns_after_the_fields_are_not_read() -> None:
    row = {**_row(), "rank": 0.5, "total": 10}
    built = _workflow(row)
    assert built == Workflow.model_validate(_row())
    assert not hasattr(built, "rank")
    assert set(vars(built)) == set(FIELDS)


def test_attributes_and_dumps_equal_the_validated_model() -> None:
    row = _row()
    built, validated = _workflow(row), Workflow.model_validate(row)
    for name in FIELDS:
        assert getattr(built, name) == row[name], name
    assert built.model_dump() == validated.model_dump()
    assert built.model_dump(mode="json", by_alias=True) == validated.model_dump(
        mode="json", by_alias=True
    )
    assert built.model_dump_json() == validated.model_dump_json()
    assert repr(built) == repr(validated)


def test_round_trips() -> None:
    built = _workflow(_row())
    assert Workflow.model_validate(built.model_dump()) == built
    assert Workflow.model_validate_json(built.model_dump_json()) == built
    adapter = TypeAdapter(Workflow)  # the cache's codec (pydbal.cache)
    assert adapter.validate_json(adapter.dump_json(built)) == built
    assert pickle.loads(pickle.dumps(built)) == built


def test_copies() -> None:
    built = _workflow(_row())
    shallow = built.model_copy()  # what the cache hands out
    assert shallow == built and shallow is not built
    assert shallow.model_fields_set == set(FIELDS)
    changed = built.model_copy(update={"name": "Other"})
    assert changed.name == "Other" and built.name == "Nightly"
    deep = copy.deepcopy(built)
    assert deep == built and deep.nodes is not built.nodes
    shallow.name = "renamed"  # assignment works (the model is not frozen) and is the copy's only
    assert built.name == "Nightly"


def test_accepted_as_is_inside_other_models() -> None:
    built = _workflow(_row())
    page = Page[Workflow](items=[built], total=1, has_more=False)
    assert page.items[0] is built  # not re-validated (revalidate_instances="never")
    assert Page[Workflow].model_validate_json(page.model_dump_json()) == page
