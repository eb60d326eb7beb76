"""Tenant isolation as the application login: policies, pooled connections, definer functions.

Tenants A (acme) and B (globex) each own workflows, created through the policies. Every check is
made as the application login; the superuser connection only verifies afterwards that B's rows
are untouched.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from dbhelpers import (
    TENANT_A,
    TENANT_B,
    acquire,
    context,
    create_workflow,
    expect_code,
    record,
    release,
    renew,
    sqlstate,
    stats,
)

from pydbal.errors import ErrorCode

from conftest import CITUS_DSN, CITUS_NULL_TENANT, TestDatabase


@pytest.fixture
async def two_tenants(db: TestDatabase) -> dict[str, Any]:
    """Two workflows per tenant; returns the app connection, the superuser one and the ids."""
    conn = await db.connect()
    ids = {
        TENANT_A: [await create_workflow(conn, TENANT_A, f"a{i}") for i in range(2)],
        TENANT_B: [await create_workflow(conn, TENANT_B, f"b{i}") for i in range(2)],
    }
    return {"conn": conn, "admin": await db.connect(as_app=False), "ids": ids}


async def _snapshot(admin: Any, tenant: str) -> list[dict[str, Any]]:
    rows = await admin.fetch(
        "SELECT * FROM dbal.workflows WHERE tenant_id = $1 ORDER BY id", tenant
    )
    return [dict(r) for r in rows]


async def test_select_sees_only_the_context_tenant(two_tenants: dict[str, Any]) -> None:
    conn = two_tenants["conn"]
    async with context(conn, TENANT_A):
        rows = await conn.fetch("SELECT tenant_id, id FROM dbal.workflows")
        # even when asked explicitly for B's rows
        b_rows = await conn.fetch(
            "SELECT id FROM dbal.workflows WHERE tenant_id = $1 OR id = ANY($2::uuid[])",
            TENANT_B,
            two_tenants["ids"][TENANT_B],
        )
        trails = await conn.fetchval(
            "SELECT count(*) FROM dbal.audit_log WHERE tenant_id <> $1", TENANT_A
        )
    assert {r["tenant_id"] for r in rows} == {TENANT_A}
    assert sorted(r["id"] for r in rows) == sorted(two_tenants["ids"][TENANT_A])
    assert b_rows == []
    assert trails == 0


async def test_update_and_delete_of_other_tenant_touch_nothing(
    two_tenants: dict[str, Any],
) -> None:
    conn, admin = two_tenants["conn"], two_tenants["admin"]
    before = await _snapshot(admin, TENANT_B)
    attempts = [
        ("UPDATE dbal.workflows SET description = 'pwned' WHERE tenant_id = $1", TENANT_B),
        (
            "UPDATE dbal.workflows SET enabled = false WHERE id = ANY($1::uuid[])",
            two_tenants["ids"][TENANT_B],
        ),
        ("DELETE FROM dbal.workflows WHERE id = ANY($1::uuid[])", two_tenants["ids"][TENANT_B]),
        ("DELETE FROM dbal.workflows WHERE tenant_id <> $1", TENANT_A),
    ]
    for statement, arg in attempts:
        # the application role writes no table at all: refused before any row is looked at
        async with context(conn, TENANT_A):
            assert await sqlstate(conn.execute(statement, arg)) == "42501", statement
    # and through the entry points, B's ids are not found from A
    for wid in two_tenants["ids"][TENANT_B]:
        assert (
            await conn.fetchval("SELECT dbal.api_delete($1, 'u1', 'admin', $2)", TENANT_A, wid)
            is False
        )
    assert await _snapshot(admin, TENANT_B) == before


async def test_insert_into_other_tenant_is_refused(two_tenants: dict[str, Any]) -> None:
    conn, admin = two_tenants["conn"], two_tenants["admin"]
    with pytest.raises(asyncpg.PostgresError) as info:
        async with context(conn, TENANT_A):
            await conn.execute(
                "INSERT INTO dbal.workflows (tenant_id, name, created_by) VALUES ($1, 'x', 'u1')",
                TENANT_B,
            )
    assert info.value.sqlstate == "42501"
    assert len(await _snapshot(admin, TENANT_B)) == 2


async def test_moving_a_row_to_another_tenant_is_refused(two_tenants: dict[str, Any]) -> None:
    conn, admin = two_tenants["conn"], two_tenants["admin"]
    mine = two_tenants["ids"][TENANT_A][0]
    with pytest.raises(asyncpg.PostgresError) as info:
        async with context(conn, TENANT_A):
            await conn.execute(
                "UPDATE dbal.workflows SET tenant_id = $1 WHERE id = $2", TENANT_B, mine
            )
    # Through Citus the planner refuses to change the distribution column (0A000) before the
    # privilege check (42501) is reached: refused either way.
    assert info.value.sqlstate in (("42501", "0A000") if CITUS_DSN else ("42501",))
    assert await admin.fetchval("SELECT tenant_id FROM dbal.workflows WHERE id = $1", mine) == (
        TENANT_A
    )


async def test_upsert_aimed_at_other_tenant_key_changes_nothing(
    two_tenants: dict[str, Any],
) -> None:
    conn, admin = two_tenants["conn"], two_tenants["admin"]
    before = await _snapshot(admin, TENANT_B)
    upsert = """
        INSERT INTO dbal.workflows (tenant_id, name, created_by, description)
        VALUES ($1, 'b0', 'u1', 'pwned')
        ON CONFLICT (tenant_id, name) WHERE archived_at IS NULL
        DO UPDATE SET description = excluded.description
    """
    # B's key, from A's context: refused before any conflict is looked at
    with pytest.raises(asyncpg.PostgresError) as info:
        async with context(conn, TENANT_A):
            await conn.execute(upsert, TENANT_B)
    assert info.value.sqlstate == "42501"
    # even in A's own key: the application role writes no table (issue 9)
    async with context(conn, TENANT_A):
        assert await sqlstate(conn.execute(upsert, TENANT_A)) == "42501"
    assert await _snapshot(admin, TENANT_B) == before


@pytest.mark.single_node(reason=CITUS_NULL_TENANT)
async def test_without_context_nothing_is_visible_and_writes_are_refused(
    two_tenants: dict[str, Any],
) -> None:
    conn, admin = two_tenants["conn"], two_tenants["admin"]
    before = await _snapshot(admin, TENANT_A)
    for table in (
        "workflows",
        "audit_log",
        "workflow_versions",
        "workflow_executions",
        "execution_keys",
        "workflow_stats_hourly",
    ):
        assert await conn.fetchval(f"SELECT count(*) FROM dbal.{table}") == 0, table
    assert await sqlstate(conn.execute("UPDATE dbal.workflows SET description = 'x'")) == "42501"
    assert await sqlstate(conn.execute("DELETE FROM dbal.workflows")) == "42501"
    assert (
        await sqlstate(
            conn.execute(
                "INSERT INTO dbal.workflows (tenant_id, name, created_by) VALUES ($1, 'x', 'u1')",
                TENANT_A,
            )
        )
        == "42501"
    )
    # a context with a user and role but no tenant is no context
    async with conn.transaction():
        await conn.execute(
            "SELECT set_config('dbal.user_role', 'admin', true),"
            " set_config('dbal.user_id', 'u1', true)"
        )
        assert await conn.fetchval("SELECT count(*) FROM dbal.workflows") == 0
    wf = two_tenants["ids"][TENANT_A][0]
    await expect_code(acquire(conn, wf, tenant=None), ErrorCode.FORBIDDEN)
    await expect_code(record(conn, wf, tenant=None), ErrorCode.FORBIDDEN)
    await expect_code(stats(conn, wf, tenant=None), ErrorCode.FORBIDDEN)
    await expect_code(release(conn, wf, tenant=None), ErrorCode.FORBIDDEN)
    assert await _snapshot(admin, TENANT_A) == before


async def test_empty_tenant_setting_is_no_context(two_tenants: dict[str, Any]) -> None:
    conn = two_tenants["conn"]
    async with conn.transaction():
        await conn.execute("SELECT set_config('dbal.tenant_id', '', true)")
        assert await conn.fetchval("SELECT count(*) FROM dbal.workflows") == 0


async def test_reused_connection_forgets_the_tenant_after_the_transaction(
    two_tenants: dict[str, Any],
) -> None:
    conn = two_tenants["conn"]
    async with context(conn, TENANT_A):
        assert await conn.fetchval("SELECT count(*) FROM dbal.workflows") == 2
    assert await conn.fetchval("SELECT count(*) FROM dbal.workflows") == 0
    # a failed transaction does not leave its context behind either
    with pytest.raises(asyncpg.PostgresError):
        async with context(conn, TENANT_A):
            await conn.execute("SELECT 1 / 0")
    assert await conn.fetchval("SELECT count(*) FROM dbal.workflows") == 0
    # nor does a context set with set_config(..., true) outside an explicit transaction
    await conn.execute("SELECT set_config('dbal.tenant_id', $1, true)", TENANT_A)
    assert await conn.fetchval("SELECT count(*) FROM dbal.workflows") == 0


@pytest.mark.parametrize("reset", ["default", "no-op"])
async def test_pooled_connection_forgets_the_tenant(
    db: TestDatabase, two_tenants: dict[str, Any], reset: str
) -> None:
    async def no_reset(_conn: Any) -> None:
        return None

    kwargs: dict[str, Any] = {"reset": no_reset} if reset == "no-op" else {}
    pool = await asyncpg.create_pool(db.app_dsn, min_size=1, max_size=1, **kwargs)
    try:
        async with pool.acquire() as conn:
            first_pid = conn.get_server_pid()
            async with context(conn, TENANT_A):
                assert await conn.fetchval("SELECT count(*) FROM dbal.workflows") == 2
        async with pool.acquire() as conn:
            assert conn.get_server_pid() == first_pid  # the same server session
            assert await conn.fetchval("SELECT count(*) FROM dbal.workflows") == 0
            assert await conn.fetchval("SELECT dbal.ctx_tenant()") is None
        assert await pool.fetchval("SELECT count(*) FROM dbal.workflows") == 0
    finally:
        await pool.close()


# --- definer functions ---------------------------------------------------------------------------


async def test_definer_functions_hide_other_tenants_workflows(
    two_tenants: dict[str, Any],
) -> None:
    conn, admin = two_tenants["conn"], two_tenants["admin"]
    theirs = two_tenants["ids"][TENANT_B][0]
    missing = uuid.uuid4()
    before = await _snapshot(admin, TENANT_B)
    calls = {
        "acquire_lock": lambda wf: acquire(conn, wf),
        "renew_lock": lambda wf: renew(conn, wf, 1),
        "release_lock": lambda wf: release(conn, wf),
        "record_execution": lambda wf: record(conn, wf),
        "execution_stats": lambda wf: stats(conn, wf),
    }
    for name, call in calls.items():
        other = await expect_code(call(theirs), ErrorCode.WORKFLOW_NOT_FOUND)
        random = await expect_code(call(missing), ErrorCode.WORKFLOW_NOT_FOUND)
        assert other.message == random.message, name
        assert other.details == {"id": str(theirs)}, name
    assert await _snapshot(admin, TENANT_B) == before
    assert (
        await admin.fetchval(
            "SELECT count(*) FROM dbal.workflow_executions WHERE tenant_id = $1", TENANT_B
        )
        == 0
    )


@pytest.mark.single_node(
    reason="a context set with set_config() on the coordinator does not reach the worker that "
    "runs the delegated call, so the entry point acts for its tenant argument (which the app "
    "login is trusted to name anyway); docs/scale-out.md"
)
async def test_tenant_argument_contradicting_context_is_refused(
    two_tenants: dict[str, Any],
) -> None:
    conn = two_tenants["conn"]
    theirs = two_tenants["ids"][TENANT_B][0]
    calls = [
        lambda: acquire(conn, theirs, tenant=TENANT_B),
        lambda: record(conn, theirs, tenant=TENANT_B),
        lambda: stats(conn, theirs, tenant=TENANT_B),
        lambda: release(conn, theirs, tenant=TENANT_B),
        lambda: renew(conn, theirs, 1, tenant=TENANT_B),
        lambda: conn.fetchval("SELECT dbal.release_expired_locks($1, 'u1', 'admin')", TENANT_B),
    ]
    for call in calls:
        with pytest.raises(asyncpg.PostgresError) as info:
            async with context(conn, TENANT_A):
                await call()
        assert info.value.sqlstate == "D4034"


@pytest.mark.single_node(reason=CITUS_NULL_TENANT)
async def test_session_level_setting_cannot_reach_another_tenant(
    two_tenants: dict[str, Any],
) -> None:
    conn, admin = two_tenants["conn"], two_tenants["admin"]
    theirs = two_tenants["ids"][TENANT_B][0]
    before = await _snapshot(admin, TENANT_B)
    await conn.execute("SET dbal.tenant_id = 'acme'")  # session level, outlives transactions
    try:
        await expect_code(acquire(conn, theirs, tenant=TENANT_B), ErrorCode.TENANT_MISMATCH)
        await expect_code(record(conn, theirs, tenant=TENANT_B), ErrorCode.TENANT_MISMATCH)
        await expect_code(stats(conn, theirs, tenant=TENANT_B), ErrorCode.TENANT_MISMATCH)
        # and with the session's tenant, B's workflow is still not found
        await expect_code(acquire(conn, theirs, tenant=None), ErrorCode.WORKFLOW_NOT_FOUND)
    finally:
        await conn.execute("RESET dbal.tenant_id")
    assert await _snapshot(admin, TENANT_B) == before


async def test_plain_user_writes_only_its_own_workflows(db: TestDatabase) -> None:
    conn, admin = await db.connect(), await db.connect(as_app=False)
    own = await create_workflow(conn, TENANT_A, "own", user="alice")
    other = await create_workflow(conn, TENANT_A, "other", user="bob")
    update = (
        "SELECT count(*) FROM dbal.api_update($1, $2, $3, $4, $5::jsonb, NULL, NULL, NULL, NULL)"
    )
    async with context(conn, TENANT_A, "alice", "user"):
        assert await conn.fetchval("SELECT count(*) FROM dbal.workflows") == 2  # reads all
    assert (
        await conn.fetchval(update, TENANT_A, "alice", "user", own, '{"description": "mine"}') == 1
    )
    await expect_code(
        conn.fetchval(update, TENANT_A, "alice", "user", other, '{"description": "x"}'),
        ErrorCode.FORBIDDEN,
    )
    await expect_code(
        conn.fetchval("SELECT dbal.api_delete($1, 'alice', 'user', $2)", TENANT_A, other),
        ErrorCode.FORBIDDEN,
    )
    # direct SQL: no write privilege at all, whatever the context
    async with context(conn, TENANT_A, "alice", "user"):
        assert (
            await sqlstate(
                conn.execute("UPDATE dbal.workflows SET description = 'x' WHERE id = $1", own)
            )
            == "42501"
        )
    # a user may not create a workflow, not even as itself
    insert = (
        "SELECT count(*) FROM dbal.api_insert($1, $2, $3, ARRAY['new'], ARRAY[NULL::text],"
        " ARRAY['[]'::jsonb], ARRAY['{}'::jsonb], ARRAY['{}'::jsonb], ARRAY['{}'::jsonb],"
        " ARRAY['[]'::jsonb], ARRAY[NULL::text], ARRAY[true], ARRAY['pending'],"
        " ARRAY[NULL::jsonb], 1)"
    )
    await expect_code(conn.fetchval(insert, TENANT_A, "alice", "user"), ErrorCode.FORBIDDEN)
    # an unknown role has no rights at all
    await expect_code(
        conn.fetchval(update, TENANT_A, "bob", "Admin", own, '{"description": "x"}'),
        ErrorCode.FORBIDDEN,
    )
    rows = {r["id"]: r for r in await admin.fetch("SELECT * FROM dbal.workflows")}
    assert rows[own]["description"] == "mine"
    assert rows[own]["created_by"] == "alice"
    assert rows[other]["description"] is None
    assert len(rows) == 2


async def test_objects_planted_in_pg_temp_do_not_change_definer_functions(
    two_tenants: dict[str, Any],
) -> None:
    conn, admin = two_tenants["conn"], two_tenants["admin"]
    mine = two_tenants["ids"][TENANT_A][0]
    theirs = two_tenants["ids"][TENANT_B][0]
    before = await _snapshot(admin, TENANT_B)
    await conn.execute(
        """
        CREATE TEMP TABLE workflows (tenant_id text, id uuid, is_locked boolean,
                                     lock_token bigint, enabled boolean);
        CREATE TEMP TABLE workflow_executions (tenant_id text, workflow_id uuid);
        CREATE FUNCTION pg_temp.ctx_tenant() RETURNS text LANGUAGE sql AS $$ SELECT 'globex' $$;
        CREATE FUNCTION pg_temp.clock_timestamp() RETURNS timestamptz
            LANGUAGE sql AS $$ SELECT '2000-01-01'::timestamptz $$;
        CREATE FUNCTION pg_temp.now() RETURNS timestamptz
            LANGUAGE sql AS $$ SELECT '2000-01-01'::timestamptz $$;
        CREATE FUNCTION pg_temp.current_setting(text, boolean) RETURNS text
            LANGUAGE sql AS $$ SELECT 'globex' $$;
        CREATE FUNCTION pg_temp.enter(text, text, text) RETURNS text
            LANGUAGE sql AS $$ SELECT 'globex' $$;
        """
    )
    await conn.execute(f"INSERT INTO pg_temp.workflows VALUES ('acme', '{theirs}', false, 0, true)")
    await conn.execute("SET search_path = pg_temp, dbal, public")
    token = await acquire(conn, mine)
    assert token == 1
    locked = await admin.fetchrow("SELECT * FROM dbal.workflows WHERE id = $1", mine)
    assert locked["is_locked"] and locked["lock_expires_at"].year > 2000
    assert await admin.fetchval(
        "SELECT lock_expires_at > now() + interval '20 seconds' FROM dbal.workflows WHERE id = $1",
        mine,
    )
    _, outcome = await record(conn, mine, token=token)
    assert outcome == "recorded"
    s = await stats(conn, mine)
    assert s["total"] == 1 and s["last_executed_at"].year > 2000
    await expect_code(acquire(conn, theirs), ErrorCode.WORKFLOW_NOT_FOUND)
    await expect_code(stats(conn, theirs), ErrorCode.WORKFLOW_NOT_FOUND)
    assert await release(conn, mine, token) is True
    assert await _snapshot(admin, TENANT_B) == before
    assert (
        await admin.fetchval(
            "SELECT count(*) FROM dbal.workflow_executions WHERE tenant_id = $1", TENANT_A
        )
        == 1
    )
