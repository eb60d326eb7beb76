"""The limits: one set of numbers in Python and SQL, documented in the README, enforced by the
database for direct SQL too (SQLSTATE D0422 with the field and the limit), and roomy enough for
every file of the shared corpus."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from dbhelpers import TENANT_A, acquire, context, create_workflow, dbal_error, record

import pydbal
from pydbal import limits as lim
from pydbal.errors import ErrorCode
from pydbal.formats import parse_import

from conftest import TestDatabase

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT.parent / "shared" / "corpus"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpus")


async def test_python_limits_mirror_the_database(db: TestDatabase) -> None:
    conn = await db.connect()
    rows = await conn.fetch("SELECT name, value FROM dbal.limits() ORDER BY name")
    assert rows, "dbal.limits() lists nothing"
    in_db = {r["name"]: r["value"] for r in rows}
    hard = asdict(lim.HARD)
    assert in_db == {name: hard[name] for name in lim.SQL_LIMITS}
    # every default lies within its hard limit (pydbal refuses more, never less)
    for name, value in asdict(lim.DEFAULTS).items():
        lo, hi = lim.CONFIGURABLE[name]
        assert lo <= value <= hi, name


def test_readme_table_is_generated_from_the_constants() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = lim.limits_table()
    assert table in readme, "README's limits table is stale: paste pydbal.limits.limits_table()"
    assert readme.count("| limit | bounds |") == 1


def test_configured_limits_stay_within_the_hard_ones() -> None:
    assert lim.DEFAULTS.configured({"nodes": 50}).nodes == 50
    assert lim.DEFAULTS.configured({"lease_min_ms": 1}).lease_min_ms == 1
    for bad in (
        {"nodes": lim.HARD.nodes + 1},
        {"definition_bytes": lim.HARD.definition_bytes},  # measured differently: 2/3 of it
        {"json_depth": 0},
        {"tags": True},
        {"no_such_limit": 1},
        {"lease_min_ms": 5000, "lease_max_ms": 4000},
    ):
        with pytest.raises(ValueError):
            lim.DEFAULTS.configured(bad)


def _depth(value: Any) -> int:
    stack, deepest = [(value, 1)], 0
    while stack:
        item, d = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, d)
            stack.extend((v, d + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def test_every_corpus_file_passes_with_room() -> None:
    files = sorted(CORPUS.rglob("*.json"))
    assert len(files) > 400
    worst: dict[str, int] = {}
    for path in files:
        data = path.read_bytes()
        try:
            definitions = parse_import(data, source_name=path.name)
        except Exception:
            continue  # malformed on purpose (see the corpus README)
        worst["import_bytes"] = max(worst.get("import_bytes", 0), len(data))
        for d in definitions:
            parts = (d.nodes, d.edges, d.variables, d.config)
            measured = {
                "definition_bytes": sum(len(orjson.dumps(p)) for p in parts),
                "nodes": len(d.nodes),
                "json_depth": max(_depth(p) for p in parts),
                "name_length": len(d.name or ""),
                "description_length": len(d.description or ""),
                "tags": len(d.tags),
                "tag_length": max([len(t) for t in d.tags] or [0]),
            }
            for name, value in measured.items():
                worst[name] = max(worst.get(name, 0), value)
            values = {
                "nodes": d.nodes,
                "edges": d.edges,
                "variables": d.variables,
                "config": d.config,
                "tags": d.tags,
                "description": d.description,
            }
            lim.check_definition(values, lim.DEFAULTS)
            lim.check_workflow_text(values, lim.DEFAULTS)
    # "with room": the biggest, deepest, longest file uses at most 40 % of each default
    for name, value in worst.items():
        assert value <= 0.4 * getattr(lim.DEFAULTS, name), (name, value)


# -- direct SQL gets the same answers ---------------------------------------------------------

_INSERT = (
    "INSERT INTO dbal.workflows (tenant_id, name, created_by, nodes, config, tags, description)"
    " VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6::text[], $7) RETURNING id"
)


async def _insert(conn: Any, **values: Any) -> Any:
    args = {
        "name": f"w{uuid.uuid4().hex[:8]}",
        "user": "u1",
        "nodes": "[]",
        "config": "{}",
        "tags": [],
        "description": None,
        **values,
    }
    async with context(conn, TENANT_A, args["user"]):
        return await conn.fetchval(
            _INSERT,
            TENANT_A,
            args["name"],
            args["user"],
            args["nodes"],
            args["config"],
            args["tags"],
            args["description"],
        )


@pytest.mark.parametrize(
    ("values", "field", "limit"),
    [
        ({"nodes": json.dumps([[[1]]] * 2)}, None, None),  # within every limit: stored
        ({"nodes": "[" * 65 + "]" * 65}, "nodes", "json_depth"),
        ({"config": json.dumps({"a": json.loads("[" * 70 + "]" * 70)})}, "config", "json_depth"),
        ({"nodes": json.dumps([{}] * 10_001)}, "nodes", "nodes"),
        ({"config": json.dumps({"x": "y" * 17_000_000})}, "definition", "definition_bytes"),
        ({"tags": ["t" * 101]}, "tags", "tag_length"),
        ({"tags": [f"t{i}" for i in range(65)]}, "tags", "tags"),
        ({"description": "d" * 10_001}, "description", "description_length"),
        ({"user": "u" * 256}, "user_id", "user_id_length"),
        ({"name": "n" * 256}, "name", "name_length"),
    ],
)
async def test_direct_sql_writes_get_the_same_limits(
    db: TestDatabase, values: dict[str, Any], field: str | None, limit: str | None
) -> None:
    # the application role writes no table (issue 9): direct SQL here is an operator's, and the
    # limits are CHECK constraints that hold for every writer
    conn = await db.connect(as_app=False)
    if field is None:
        assert await _insert(conn, **values) is not None
        return
    error = await dbal_error(_insert(conn, **values))
    assert error.code == ErrorCode.VALIDATION_ERROR, repr(error)
    assert error.details["field"] == field and error.details["limit"] == limit, repr(error)


async def test_direct_sql_entry_points_bound_their_arguments(db: TestDatabase) -> None:
    conn = await db.connect()
    wf = await create_workflow(conn)
    calls = {
        "search": (
            "SELECT r.rank FROM dbal.api_search($1, 'u1', 'admin', $2, 10) r",
            TENANT_A,
            "-a " * 33000,
        ),
        "filter.search": (
            "SELECT r.total FROM dbal.api_list($1, 'u1', 'admin', $2::jsonb, 'name', false, 0, 10)"
            " r",
            TENANT_A,
            json.dumps({"search": "w " * 40}),
        ),
        "page": (
            "SELECT r.total FROM dbal.api_list($1, 'u1', 'admin', '{}', 'name', false, $2, 10) r",
            TENANT_A,
            2**31 - 11,
        ),
    }
    for field, (sql, *args) in calls.items():
        error = await dbal_error(conn.fetch(sql, *args))
        assert error.code == ErrorCode.VALIDATION_ERROR and error.details["field"] == field
    # the page size is a limit like the others (issue 10: it was a literal in each function)
    for sql in (
        "SELECT r.total FROM dbal.api_list($1, 'u1', 'admin', '{}', 'name', false, 0, $2) r",
        "SELECT r.rank FROM dbal.api_search($1, 'u1', 'admin', 'x', $2) r",
    ):
        error = await dbal_error(conn.fetch(sql, TENANT_A, lim.HARD.page_size + 1))
        assert (error.details["field"], error.details["limit"]) == ("limit", "page_size"), sql
        assert await conn.fetch(sql, TENANT_A, lim.HARD.page_size) is not None
    token = await acquire(conn, wf, timeout_ms=60_000)
    error = await dbal_error(record(conn, wf, "failure", 5.0, token=token, error="e" * 65_537))
    assert (error.details["field"], error.details["limit"]) == ("error", "error_length")
    error = await dbal_error(record(conn, wf, "success", 1e308, token=token))
    assert error.code == ErrorCode.VALIDATION_ERROR  # a time overflow: class 22, mapped
    error = await dbal_error(acquire(conn, wf, timeout_ms=86_400_001))
    assert error.details["limit"] == "lease_ms"
    assert await conn.fetchval("SELECT count(*) FROM dbal.workflow_executions") == 0


async def test_a_configured_page_size_bounds_list_and_search(db: TestDatabase) -> None:
    async with pydbal.connect(db.app_dsn, limits={"page_size": 5}) as small:
        ws = small.tenant(TENANT_A, user_id="u1", role="admin").workflows
        assert (await ws.list(limit=5)).items == []
        for call in (ws.list(limit=6), ws.search("x", limit=6)):
            with pytest.raises(pydbal.DBALError) as info:
                await call
            assert info.value.code == ErrorCode.VALIDATION_ERROR
            assert info.value.details["field"] == "limit"
        # find_by_field keeps the hard page size, as before the limit existed
        assert await ws.find_by_field("name", "nothing", limit=lim.HARD.page_size) == []
