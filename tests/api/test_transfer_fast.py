"""The fast bulk and transfer paths (issue 13) give what the slow ones gave.

- export_many builds bundles from the stored rows (no model_dump of every workflow) and
  export_json writes them without models at all: on the shared corpus, with stored reports
  current, expired and pending, the bundles equal those the first implementation built
  (``ExportBundle.model_validate(build_bundle(workflow.model_dump(), report, now))``) and
  export_json is byte for byte ``orjson.dumps`` of their JSON dumps.
- create_many and import_many send a few statements, each prepared while the one before runs:
  the stored rows are those one statement stored, the names across statements as one statement
  chose them, and a refused input anywhere wins over a database error, nothing stored.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

import pydbal
from pydbal import ErrorCode, Tenant
from pydbal.formats import build_bundle
from pydbal.models import ExportBundle
from pydbal.validation import VALIDATOR_VERSION, validate_definition
from pydbal.workflows import _base as base
from pydbal.workflows import bulk, transfer

from .conftest import TENANT_A, count_rows, raises_code, valid_definition
from .test_corpus import FILES

FIXED = datetime(2026, 5, 17, 8, 30, 12, 345678, tzinfo=UTC)


class _FixedClock(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> Any:  # type: ignore[override]
        return FIXED


def _first_bundle(w: pydbal.Workflow) -> ExportBundle:
    """The bundle as the first implementation built it."""
    report = None
    if w.validation_status in ("valid", "invalid") and w.validator_version == VALIDATOR_VERSION:
        report = w.validation_errors
    if report is None:
        settings = w.config.get("settings")
        computed = validate_definition(
            w.nodes, w.edges, w.variables, settings if isinstance(settings, dict) else None
        )
        report = computed.model_dump(mode="json", by_alias=True)
    return ExportBundle.model_validate(build_bundle(w.model_dump(), report, FIXED))


async def _compare(scope: Tenant, ids: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transfer, "datetime", _FixedClock)
    expected = [_first_bundle(await scope.workflows.get(i)) for i in ids]
    bundles = await scope.workflows.export_many(ids)
    assert bundles == expected
    dumped = orjson.dumps([b.model_dump(mode="json", by_alias=True) for b in expected])
    assert await scope.workflows.export_json(ids) == dumped
    assert orjson.dumps([b.model_dump(mode="json", by_alias=True) for b in bundles]) == dumped
    singles = [await scope.workflows.export(i) for i in ids]
    assert singles == expected


@pytest.mark.skipif(not FILES, reason="no shared corpus")
async def test_export_of_the_corpus_equals_the_first_bundles(
    acme: Tenant, raw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids: list[Any] = []
    for path in FILES:
        try:
            ids.extend(w.id for w in await acme.workflows.import_many(path))
        except pydbal.DBALError:
            continue
    assert len(ids) > 100
    # a third with an expired result (read as stale: validated again), some pending
    await raw.execute(
        "UPDATE dbal.workflows SET valid_until = validated_at WHERE id = ANY($1::uuid[])",
        ids[::3],
    )
    await raw.execute(
        "UPDATE dbal.workflows SET validation_status = 'pending', validation_errors = NULL, "
        "validated_at = NULL, valid_until = NULL, validator_version = NULL "
        "WHERE id = ANY($1::uuid[])",
        ids[1::7],
    )
    statuses = {w.validation_status for w in [await acme.workflows.get(i) for i in ids]}
    assert {"valid", "invalid", "stale", "pending"} <= statuses
    await _compare(acme, ids[::-1], monkeypatch)


async def test_export_json_of_many_reads_in_order_past_the_cache(
    acme: Tenant, globex: Tenant, raw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = await acme.workflows.create_many([valid_definition(f"ex {i:04d}") for i in range(1203)])
    assert n == 1203
    rows = await raw.fetch(
        "SELECT id FROM dbal.workflows WHERE tenant_id = $1 ORDER BY name", TENANT_A
    )
    ids = [r["id"] for r in rows]
    assert len(ids) == 1203
    await acme.workflows.list({"ids": ids[:100]})  # a cached page must not be what export reads
    await acme.workflows.update(ids[5], {"description": "changed after the list"})
    await _compare(acme, [*ids[::-1], ids[7]], monkeypatch)
    assert (await acme.workflows.export_many([ids[5]]))[0].workflow["description"] == (
        "changed after the list"
    )
    foreign = await globex.workflows.create(valid_definition("theirs"))
    with raises_code(ErrorCode.WORKFLOW_NOT_FOUND) as info:
        await acme.workflows.export_json([ids[0], foreign.id, uuid.uuid4()])
    assert len(info.value.details["ids"]) == 2
    assert await acme.workflows.export_json([]) == b"[]"


async def test_export_json_imports_back(acme: Tenant, globex: Tenant) -> None:
    made = [await acme.workflows.create(valid_definition(f"round {i}")) for i in range(3)]
    data = await acme.workflows.export_json([w.id for w in made])
    back = await globex.workflows.import_many(data)
    assert [w.name for w in back] == ["round 0", "round 1", "round 2"]
    assert [w.nodes for w in back] == [w.nodes for w in made]


# --- create_many / import_many in pipelined batches ------------------------------------------


async def _stored(raw: Any, tenant: str) -> list[dict[str, Any]]:
    rows = await raw.fetch(
        "SELECT name, description, nodes, edges, variables, config, tags, category, enabled, "
        "validation_status, validation_errors, validator_version, created_by, version "
        "FROM dbal.workflows WHERE tenant_id = $1 ORDER BY name",
        tenant,
    )
    return [dict(r) for r in rows]


async def test_create_many_in_batches_stores_what_one_statement_stores(
    app: pydbal.Database, raw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = [valid_definition(f"same {i:03d}", tags=[f"t{i % 5}"]) for i in range(350)]
    inputs[17]["edges"] = {"missing": {"main": [[{"node": "nowhere"}]]}}  # invalid: stored so
    inputs[200]["nodes"] = orjson.dumps(inputs[200]["nodes"]).decode()  # JSON text input
    one = app.tenant("fast-one", user_id="u", role="admin")
    many = app.tenant("fast-many", user_id="u", role="admin")
    assert base.batch_sizes(350) == [50, 100, 200]  # three statements
    assert await many.workflows.create_many(inputs) == 350
    monkeypatch.setattr(bulk, "batch_sizes", lambda n: [n])  # one statement
    assert await one.workflows.create_many(inputs) == 350
    assert await _stored(raw, "fast-many") == await _stored(raw, "fast-one")
    audits = await raw.fetchval(
        "SELECT count(*) FROM dbal.audit_log WHERE tenant_id = 'fast-many' AND operation = 'create'"
    )
    assert audits == 350
    assert (await many.workflows.list()).total == 350


async def test_create_many_refused_input_wins_over_a_database_error(acme: Tenant, raw: Any) -> None:
    await acme.workflows.create(valid_definition("taken"))
    before = await count_rows(raw, TENANT_A)
    inputs = [valid_definition(f"ok {i}") for i in range(300)]
    inputs[3] = valid_definition("taken")  # the first statement fails: the name is taken
    inputs[280] = {"name": "", "nodes": []}  # the last batch holds a refused input
    with raises_code(ErrorCode.VALIDATION_ERROR):
        await acme.workflows.create_many(inputs)
    inputs[280] = valid_definition("ok 280")
    with raises_code(ErrorCode.CONFLICT):
        await acme.workflows.create_many(inputs)
    inputs[3] = valid_definition("ok 3")
    inputs[150] = {"name": "bad nodes", "nodes": "{not json"}  # refused while batch 0 runs
    with raises_code(ErrorCode.VALIDATION_ERROR):
        await acme.workflows.create_many(inputs)
    assert await count_rows(raw, TENANT_A) == before
    inputs[150] = valid_definition("ok 150")
    assert await acme.workflows.create_many(inputs) == 300


async def test_import_many_in_batches_names_like_one_statement(
    app: pydbal.Database, raw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = build_bundle(valid_definition("dup"), None, FIXED)
    data = orjson.dumps([bundle] * 250)
    many = app.tenant("imp-many", user_id="u", role="admin")
    one = app.tenant("imp-one", user_id="u", role="admin")
    for scope in (many, one):
        await scope.workflows.create(valid_definition("dup (3)"))
    got = await many.workflows.import_many(data)
    monkeypatch.setattr(transfer, "batch_sizes", lambda n: [n])
    ref = await one.workflows.import_many(data)
    assert [w.name for w in got] == [w.name for w in ref]
    assert got[0].name == "dup" and got[2].name == "dup (4)" and got[-1].name == "dup (251)"
    assert await _stored(raw, "imp-many") == await _stored(raw, "imp-one")


async def test_import_many_strict_refusal_in_a_later_batch_stores_nothing(
    acme: Tenant, raw: Any
) -> None:
    good = build_bundle(valid_definition("fine"), None, FIXED)
    bad = build_bundle(
        {**valid_definition("broken"), "edges": {"x": {"main": [[{"node": "y"}]]}}}, None, FIXED
    )
    data = orjson.dumps([good] * 280 + [bad])
    before = await count_rows(raw, TENANT_A)
    with raises_code(ErrorCode.IMPORT_VALIDATION_FAILED) as info:
        await acme.workflows.import_many(data, strict=True)
    assert info.value.details["index"] == 280
    assert await count_rows(raw, TENANT_A) == before
    assert len(await acme.workflows.import_many(data)) == 281


async def test_the_collector_runs_again_after_bulk_transfers(acme: Tenant) -> None:
    import gc

    assert gc.isenabled()
    await acme.workflows.create_many([valid_definition(f"gc {i}") for i in range(3)])
    assert gc.isenabled()
    made = await acme.workflows.import_many(
        orjson.dumps([build_bundle(valid_definition("gc import"), None, FIXED)])
    )
    assert gc.isenabled()
    await acme.workflows.export_json([made[0].id])
    await acme.workflows.export_many([made[0].id])
    assert gc.isenabled()
    with raises_code(ErrorCode.INVALID_EXPORT_FORMAT):
        await acme.workflows.import_many(b"not json")
    assert gc.isenabled()
