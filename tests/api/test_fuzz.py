"""Property-based: every public operation, driven with hostile values, answers with a result or a
DBALError; when it is a DBALError the database is unchanged (workflows, versions, executions,
audit); no call takes more than a few seconds.

Budget: the ``ci`` profile (the default) runs a fixed number of examples per operation,
derandomized, so a run is reproducible and bounded; ``HYPOTHESIS_PROFILE=dev`` draws new ones.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pydbal
from pydbal import DBALError, Tenant

from .conftest import TENANT_A, snapshot, valid_definition

settings.register_profile(
    "ci",
    max_examples=20,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "dev",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

CALL_SECONDS = 5.0


def _nested(depth: int) -> Any:
    value: Any = "x"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


texts = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        ["", " ", "a\x00b", "\ud800", "x" * 256, "x" * 100_000, "-a " * 3000, '"q" -x', "é"]
    ),
)
edge_ints = st.sampled_from(
    [0, -1, 1, 999, 1000, 2**31 - 1, 2**31, 2**63 - 1, 2**63, 2**64, 2**70, -(2**63) - 1]
)
numbers = st.one_of(
    st.integers(),
    edge_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["1000", "3", "x", "1.5", " 7 ", "1e308", "-0"]),
)
times = st.one_of(
    st.datetimes(timezones=st.just(UTC)),
    st.datetimes(),  # naive
    st.sampled_from(
        ["2024-01-01", "2024-01-01T00:00:00Z", "x", "1700000000000", "9" * 40, "+99999-01-01"]
    ),
    numbers,
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.one_of(
    st.recursive(
        scalars,
        lambda c: st.lists(c, max_size=4) | st.dictionaries(texts, c, max_size=4),
        max_leaves=12,
    ),
    st.sampled_from([10, 63, 64, 65, 200, 255, 256, 500, 990, 1100, 3000]).map(_nested),
)
wrong = st.one_of(
    st.none(),
    st.binary(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.just(object()),
    st.just({1, 2}),
    st.just(uuid.uuid4()),
)
anything = st.one_of(scalars, json_values, wrong, times)
inputs = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "name": texts,
            "description": st.one_of(texts, anything),
            "nodes": st.one_of(json_values, st.lists(json_values, max_size=3), texts),
            "edges": st.one_of(json_values, texts),
            "variables": json_values,
            "config": json_values,
            "tags": st.one_of(st.lists(texts, max_size=80), texts, anything),
            "category": st.one_of(st.just("user"), texts),
            "enabled": anything,
            "tenant_id": texts,
            "nonsense": anything,
        },
    ),
    anything,
)
filters = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "name": st.one_of(texts, st.lists(texts, max_size=3)),
            "tags": st.one_of(texts, st.lists(texts, max_size=1200)),
            "search": st.one_of(texts, anything),
            "ids": st.one_of(st.lists(st.uuids(), max_size=3), anything),
            "enabled": anything,
            "created_by": texts,
        },
    ),
    anything,
)
locks = st.one_of(
    anything,
    st.fixed_dictionaries(
        {"workflow_id": st.uuids(), "token": numbers, "expires_at": st.just(datetime.now(UTC))}
    ),
)


def _ops(draw: Any, wid: Any) -> dict[str, Any]:
    """One hostile call per public operation: name -> (callable taking the scope)."""
    ident = draw(st.one_of(st.just(wid), anything))
    return {
        "get": lambda w: w.get(ident),
        "list": lambda w: w.list(draw(filters), draw(anything), draw(numbers), draw(numbers)),
        "find_first": lambda w: w.find_first(draw(filters), draw(anything)),
        "find_by_field": lambda w: w.find_by_field(
            draw(st.one_of(st.sampled_from(["name", "tags", "category"]), anything)),
            draw(anything),
            draw(numbers),
        ),
        "search": lambda w: w.search(draw(st.one_of(texts, anything)), draw(numbers)),
        "get_execution_stats": lambda w: w.get_execution_stats(ident, draw(times), draw(times)),
        "executions": lambda w: w.executions(
            ident, draw(times), draw(times), draw(st.one_of(texts, anything)), draw(numbers)
        ),
        "audit": lambda w: w.audit(ident, draw(numbers)),
        "history": lambda w: w.history(ident),
        "create": lambda w: w.create(draw(inputs)),
        "create_many": lambda w: w.create_many(
            draw(st.one_of(st.lists(inputs, max_size=3), anything))
        ),
        "update": lambda w: w.update(ident, draw(inputs), draw(st.one_of(st.none(), numbers))),
        "set_enabled": lambda w: w.set_enabled(ident, draw(anything)),
        "delete": lambda w: w.delete(draw(anything)),
        "upsert": lambda w: w.upsert(draw(texts), draw(inputs), draw(inputs)),
        "update_many": lambda w: w.update_many(draw(filters), draw(inputs)),
        "delete_many": lambda w: w.delete_many(draw(filters)),
        "restore": lambda w: w.restore(ident, draw(numbers)),
        "validate": lambda w: w.validate(ident),
        "acquire_lock": lambda w: w.acquire_lock(ident, draw(numbers)),
        "renew_lock": lambda w: w.renew_lock(ident, draw(locks), draw(numbers)),
        "release_lock": lambda w: w.release_lock(ident, draw(locks)),
        "release_expired_locks": lambda w: w.release_expired_locks(),
        "record_execution": lambda w: w.record_execution(
            ident,
            draw(st.one_of(st.sampled_from(["success", "pending"]), anything)),
            draw(st.one_of(st.none(), numbers)),
            draw(st.one_of(st.none(), texts, numbers)),
            draw(st.one_of(st.none(), locks)),
            draw(st.one_of(st.none(), times)),
            draw(st.one_of(st.none(), texts, anything)),
        ),
        "clone": lambda w: w.clone(ident, draw(st.one_of(st.none(), texts)), draw(anything)),
        "export": lambda w: w.export(ident),
        "export_many": lambda w: w.export_many(draw(st.one_of(st.lists(anything), anything))),
        "import_workflow": lambda w: w.import_workflow(
            draw(st.one_of(inputs, texts, st.binary(max_size=64))),
            draw(st.one_of(st.none(), texts)),
            draw(anything),
            draw(anything),
        ),
        "import_many": lambda w: w.import_many(
            draw(st.one_of(st.lists(inputs, max_size=3), texts)), None, draw(anything)
        ),
    }


OPERATIONS = sorted(_ops(lambda s: None, None))


async def _state(raw: Any) -> dict[str, Any]:
    state = await snapshot(raw)
    state["audit"] = int(await raw.fetchval("SELECT count(*) FROM dbal.audit_log"))
    return state


@pytest.mark.parametrize("operation", OPERATIONS)
@given(data=st.data())
async def test_every_operation_answers_hostile_input(
    operation: str, data: st.DataObject, acme: Tenant, raw: Any
) -> None:
    wf = await acme.workflows.create(valid_definition(f"fuzz {uuid.uuid4().hex}"))
    call = _ops(data.draw, wf.id)[operation]
    before = await _state(raw)
    started = time.monotonic()
    try:
        await call(acme.workflows)
    except DBALError:
        assert await _state(raw) == before, f"{operation} failed after writing"
    assert time.monotonic() - started < CALL_SECONDS, f"{operation} took too long"


@given(tenant=anything, user=anything, role=anything)
async def test_tenant_scopes_answer_hostile_input(
    app: pydbal.Database, raw: Any, tenant: Any, user: Any, role: Any
) -> None:
    before = await _state(raw)
    try:
        scope = app.tenant(tenant, user_id=user, role=role)
        await scope.workflows.create(valid_definition(f"scoped {uuid.uuid4().hex}"))
    except DBALError:
        assert await _state(raw) == before
    else:
        assert tenant != TENANT_A or await raw.fetchval("SELECT count(*) FROM dbal.workflows")
