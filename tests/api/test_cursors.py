"""Keyset pages (``list(after=cursor)``) and the totals behind them (issue 13).

- every row exactly once across pages, for every sort field and direction, with ties and NULLs;
- the same under concurrent inserts and archives between pages;
- cursors are checked (another sort, filter or tenant, an edit: VALIDATION_ERROR);
- totals: exact from the counter without a filter, capped at 1000 with one;
- the counters equal count(*) after every kind of write (property test, bounded examples).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pydbal
from pydbal import ErrorCode, Tenant

from .conftest import TENANT_A, TENANT_B, raises_code, valid_definition

settings.register_profile(
    "cursors-ci",
    max_examples=12,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

FIELDS = ("created_at", "updated_at", "last_executed_at", "execution_count", "name")
NOCACHE = {"hot": False, "warm": False}


@pytest.fixture
async def cold(db: Any) -> Any:
    """A database handle without caches, so every page is a query."""
    async with pydbal.connect(db.app_dsn, max_size=4, cache=NOCACHE) as database:
        yield database


async def _seed_with_ties(scope: Tenant, raw: Any, n: int = 23) -> list[dict[str, Any]]:
    """n workflows whose sort keys repeat (and last_executed_at is NULL for some), set directly
    with the row triggers off (they would restore the server's timestamps)."""
    await scope.workflows.create_many([valid_definition(f"wf {i:02d}") for i in range(n)])
    base = datetime(2024, 1, 1, tzinfo=UTC)
    await raw.execute("SET session_replication_role = replica")
    try:
        rows = await raw.fetch(
            "SELECT id FROM dbal.workflows WHERE tenant_id = $1 ORDER BY name", scope.tenant_id
        )
        for i, r in enumerate(rows):
            await raw.execute(
                "UPDATE dbal.workflows SET created_at = $2, updated_at = $3, "
                "execution_count = $4, last_executed_at = $5 WHERE id = $1",
                r["id"],
                base + timedelta(minutes=i % 4),
                base + timedelta(seconds=(i * 7) % 5),
                i % 3,
                None if i % 4 == 0 else base + timedelta(hours=i % 5),
            )
    finally:
        await raw.execute("SET session_replication_role = origin")
    recs = await raw.fetch("SELECT * FROM dbal.workflows WHERE tenant_id = $1", scope.tenant_id)
    return [dict(r) for r in recs]


def _expected(rows: list[dict[str, Any]], field: str, desc: bool) -> list[uuid.UUID]:
    present = [r for r in rows if r[field] is not None]
    missing = [r for r in rows if r[field] is None]
    present.sort(key=lambda r: (r[field], r["id"]), reverse=desc)
    missing.sort(key=lambda r: r["id"], reverse=desc)
    return [r["id"] for r in present + missing]  # NULLs last in both directions


async def _walk(scope: Tenant, sort: dict[str, str], limit: int, **kw: Any) -> list[uuid.UUID]:
    seen: list[uuid.UUID] = []
    page = await scope.workflows.list(sort=sort, limit=limit, **kw)
    for _ in range(1000):
        seen.extend(w.id for w in page.items)
        if not page.has_more:
            assert page.next_cursor is None
            return seen
        assert page.next_cursor is not None
        page = await scope.workflows.list(sort=sort, limit=limit, after=page.next_cursor, **kw)
    raise AssertionError("pages never end")


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("direction", ["asc", "desc"])
async def test_cursor_pages_read_every_row_once_in_order(
    cold: pydbal.Database, raw: Any, field: str, direction: str
) -> None:
    scope = cold.tenant(TENANT_A, user_id="alice", role="admin")
    rows = await _seed_with_ties(scope, raw)
    # another tenant's rows interleave in every index and must never appear
    await _seed_with_ties(cold.tenant(TENANT_B, user_id="gina", role="admin"), raw, 7)
    expected = _expected(rows, field, direction == "desc")
    if field != "name":  # names are unique among live workflows
        assert len({r[field] for r in rows}) < len(rows), "no ties: the test would be vacuous"
    for limit in (1, 4, 23, 50):
        sort = {"field": field, "direction": direction}
        assert await _walk(scope, sort, limit) == expected, (field, direction, limit)
        # a filter takes the other path (the page sorted among the counted matches)
        filtered = await _walk(scope, sort, limit, filter={"enabled": True})
        assert filtered == expected, (field, direction, limit, "filtered")
    # the offset form reads the same order
    first = await scope.workflows.list(sort=sort, limit=5, page=2)
    assert [w.id for w in first.items] == expected[5:10]
    assert first.total == len(rows) and first.total_exact


@pytest.mark.parametrize(
    "sort",
    [
        {"field": "created_at", "direction": "desc"},
        {"field": "created_at", "direction": "asc"},
        {"field": "name", "direction": "asc"},
        {"field": "last_executed_at", "direction": "desc"},
    ],
)
async def test_cursor_pages_under_concurrent_inserts_and_archives(
    cold: pydbal.Database, sort: dict[str, str]
) -> None:
    scope = cold.tenant(TENANT_A, user_id="alice", role="admin")
    wfs = scope.workflows
    await wfs.create_many([valid_definition(f"base {i:02d}") for i in range(30)])
    start = await wfs.list(limit=100)
    initial = {w.id for w in start.items}
    archived: set[uuid.UUID] = set()
    seen: list[uuid.UUID] = []
    page = await wfs.list(sort=sort, limit=4)
    n = 0
    while True:
        seen.extend(w.id for w in page.items)
        if not page.has_more:
            break
        # between pages: new workflows (both before and after the cursor's position by name),
        # and archives of rows already read and of rows not read yet
        n += 1
        await wfs.create(valid_definition(f"a-new {n:02d}"))
        await wfs.create(valid_definition(f"z-new {n:02d}"))
        unread = sorted(initial - set(seen) - archived)
        for victim in ([seen[0]] if seen[0] not in archived else []) + unread[:1]:
            assert await wfs.delete(victim)
            archived.add(victim)
        assert page.next_cursor is not None
        page = await wfs.list(sort=sort, limit=4, after=page.next_cursor)
    assert len(seen) == len(set(seen)), "a row was read twice"
    stayed = initial - archived
    assert stayed <= set(seen), "a row present throughout was skipped"


async def test_cursors_are_checked(cold: pydbal.Database) -> None:
    scope = cold.tenant(TENANT_A, user_id="alice", role="admin")
    other = cold.tenant(TENANT_B, user_id="gina", role="admin")
    await scope.workflows.create_many([valid_definition(f"c {i}") for i in range(5)])
    page = await scope.workflows.list(limit=2, filter={"enabled": True})
    cursor = page.next_cursor
    assert cursor is not None
    # the same request goes on
    nxt = await scope.workflows.list(limit=2, filter={"enabled": True}, after=cursor)
    assert {w.id for w in nxt.items}.isdisjoint(w.id for w in page.items)
    bad: list[tuple[Tenant, dict[str, Any]]] = [
        (scope, {"filter": {"enabled": False}}),
        (scope, {"filter": {"enabled": True}, "sort": {"field": "name", "direction": "desc"}}),
        (scope, {"filter": {"enabled": True}, "sort": {"direction": "asc"}}),
        (scope, {"filter": {"enabled": True}, "page": 2}),
        (other, {"filter": {"enabled": True}}),
    ]
    for who, kw in bad:
        with raises_code(ErrorCode.VALIDATION_ERROR):
            await who.workflows.list(limit=2, after=cursor, **kw)
    body, mac = cursor.split(".")
    for forged in (body[:-2] + "AA." + mac, body + "." + mac[::-1], "x", "", "a.b.c", 7):
        with raises_code(ErrorCode.VALIDATION_ERROR) as info:
            await scope.workflows.list(limit=2, filter={"enabled": True}, after=forged)  # type: ignore[arg-type]
        assert info.value.details["field"] == "after"


async def test_totals_exact_without_filter_capped_with_one(cold: pydbal.Database) -> None:
    scope = cold.tenant(TENANT_A, user_id="alice", role="admin")
    await scope.workflows.create_many(
        [{"name": f"t {i:04d}", "nodes": [], "tags": ["many"]} for i in range(1003)]
    )
    await scope.workflows.create_many(
        [valid_definition(f"rare {i}", tags=["rare"]) for i in range(3)]
    )
    # past the cap, pages come from the ordered index walk: still every row once, in order
    ids = await _walk(scope, {"field": "name", "direction": "asc"}, 100, filter={"tags": ["many"]})
    assert ids == [
        w.id
        for w in sorted(
            [
                w
                for p in [
                    await scope.workflows.list({"tags": ["many"]}, limit=100, page=k)
                    for k in range(1, 12)
                ]
                for w in p.items
            ],
            key=lambda w: w.name,
        )
    ]
    assert len(ids) == len(set(ids)) == 1003
    plain = await scope.workflows.list(limit=10)
    assert (plain.total, plain.total_exact, plain.has_more) == (1006, True, True)
    many = await scope.workflows.list({"tags": ["many"]}, limit=10)
    assert (many.total, many.total_exact, many.has_more) == (1000, False, True)
    rare = await scope.workflows.list({"tags": ["rare"]}, limit=10)
    assert (rare.total, rare.total_exact, rare.has_more, len(rare.items)) == (3, True, False, 3)
    assert await scope.workflows.delete(rare.items[0].id)
    archived = await scope.workflows.list({"archived": True})
    assert (archived.total, archived.total_exact, len(archived.items)) == (1, True, 1)
    live = await scope.workflows.list({"archived": False}, limit=1)
    assert (live.total, live.total_exact) == (1005, True)
    empty = await scope.workflows.list({"tags": ["none"]})
    assert (empty.total, empty.items, empty.has_more) == (0, [], False)
    past = await scope.workflows.list(page=2000, limit=50)
    assert (past.total, past.items, past.has_more) == (1005, [], False)


# --- counters ----------------------------------------------------------------------------------

_OPS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "create",
                "create_many",
                "delete",
                "delete_many",
                "unarchive",
                "purge",
                "import",
                "clone",
                "other_tenant",
            ]
        ),
        st.integers(min_value=0, max_value=5),
    ),
    min_size=1,
    max_size=8,
)


async def _counters_match(raw: Any) -> None:
    actual = {
        r["tenant_id"]: (r["live"], r["archived"])
        for r in await raw.fetch(
            "SELECT tenant_id, count(*) FILTER (WHERE archived_at IS NULL) AS live, "
            "count(*) FILTER (WHERE archived_at IS NOT NULL) AS archived "
            "FROM dbal.workflows GROUP BY tenant_id"
        )
    }
    counted = {
        r["tenant_id"]: (r["live"], r["archived"])
        for r in await raw.fetch("SELECT tenant_id, live, archived FROM dbal.tenant_counters")
        if (r["live"], r["archived"]) != (0, 0)
    }
    assert counted == actual


@settings.get_profile("cursors-ci")
@given(ops=_OPS)
async def test_counters_equal_count_after_every_kind_of_write(
    cold: pydbal.Database, raw: Any, ops: list[tuple[str, int]]
) -> None:
    acme = cold.tenant(TENANT_A, user_id="alice", role="admin")
    globex = cold.tenant(TENANT_B, user_id="gina", role="admin")
    wfs = acme.workflows
    for op, k in ops:
        tag = uuid.uuid4().hex[:8]
        live = (await wfs.list(limit=100)).items
        gone = (await wfs.list({"archived": True}, limit=100)).items
        if op == "create":
            await wfs.create(valid_definition(f"p {tag}"))
        elif op == "create_many":
            await wfs.create_many([valid_definition(f"p {tag} {i}") for i in range(k)])
        elif op == "delete" and live:
            await wfs.delete(live[k % len(live)].id)
        elif op == "delete_many":
            await wfs.delete_many({"ids": [w.id for w in live[:k]]})
        elif op == "unarchive" and gone:
            await wfs.unarchive(gone[k % len(gone)].id)
        elif op == "purge":
            await raw.fetch("SELECT * FROM dbal.purge_archived('0 seconds'::interval)")
        elif op == "import":
            await wfs.import_workflow({"name": f"imp {tag}", "nodes": [], "connections": {}})
        elif op == "clone" and live:
            await wfs.clone(live[k % len(live)].id)
        elif op == "other_tenant":
            await globex.workflows.create(valid_definition(f"g {tag}"))
        await _counters_match(raw)
        total = (await wfs.list(limit=1)).total
        assert total == await raw.fetchval(
            "SELECT count(*) FROM dbal.workflows WHERE tenant_id = $1 AND archived_at IS NULL",
            TENANT_A,
        )


async def test_counter_is_read_only_and_tenant_scoped(db: Any, cold: pydbal.Database) -> None:
    await cold.tenant(TENANT_A, user_id="alice", role="admin").workflows.create(
        valid_definition("one")
    )
    await cold.tenant(TENANT_B, user_id="gina", role="admin").workflows.create(
        valid_definition("two")
    )
    conn = await db.connect()  # the application role
    async with conn.transaction():
        await conn.execute("SELECT dbal.enter('acme', 'alice', 'admin')")
        rows = await conn.fetch("SELECT tenant_id FROM dbal.tenant_counters")
        assert [r["tenant_id"] for r in rows] == [TENANT_A]
    for sql in (
        "UPDATE dbal.tenant_counters SET live = 0",
        "INSERT INTO dbal.tenant_counters VALUES ('acme', 5, 0)",
        "DELETE FROM dbal.tenant_counters",
    ):
        with pytest.raises(Exception, match="permission denied"):
            await conn.execute(sql)


async def test_direct_sql_filters_null_and_empty_are_unfiltered(db: Any, acme: Tenant) -> None:
    await acme.workflows.create(valid_definition("one"))
    conn = await db.connect()
    for flt in (None, "{}", "null", '{"archived": false}', '{"name": null}'):
        row = await conn.fetchrow(
            "SELECT total, total_exact, has_more, name FROM dbal.api_list('acme', 'alice', "
            "'admin', $1::jsonb, 'created_at', true, 0, 10)",
            flt,
        )
        assert (row["total"], row["total_exact"], row["has_more"], row["name"]) == (
            1,
            True,
            False,
            "one",
        ), flt
    with pytest.raises(asyncpg.PostgresError, match="filter must be an object"):
        await conn.fetch(
            "SELECT * FROM dbal.api_list('acme', 'alice', 'admin', '[1]', 'name', true, 0, 10)"
        )
