"""Analysts as real LOGIN roles: they see exactly their granted tenants, nothing they can set in
their own session widens that, and every write fails. The database is the guard here: these
statements go straight to the server, not through the sqlgate."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from pydbal.cli.analysts import grant_analyst, list_analysts, revoke_analyst

from .conftest import TENANTS, Analyst, Seed
from conftest import CITUS_DSN, TestDatabase

VIEWS = (
    "dbal_analytics.workflows",
    "dbal_analytics.executions",
    "dbal_analytics.daily_stats",
    "dbal_analytics.audit_log",
)
BASE_TABLES = {
    "dbal_analytics.workflows": "dbal.workflows",
    "dbal_analytics.executions": "dbal.workflow_executions",
    "dbal_analytics.daily_stats": "dbal.workflow_stats_hourly",
    "dbal_analytics.audit_log": "dbal.audit_log",
}
GRANTED = {"acme", "globex"}


async def _tenant_counts(conn: Any, relation: str) -> dict[str, int]:
    rows = await conn.fetch(f"SELECT tenant_id, count(*) AS n FROM {relation} GROUP BY 1")
    return {r["tenant_id"]: r["n"] for r in rows}


# What each view shows, read from its base table (the views read the caller's granted tenants
# only, and a superuser login has none).
_BASE = {
    "dbal_analytics.workflows": "dbal.workflows",
    "dbal_analytics.executions": "dbal.workflow_executions",
    "dbal_analytics.daily_stats": "dbal.workflow_stats_daily",
    "dbal_analytics.audit_log": "dbal.audit_log",
}


async def _expected(db: TestDatabase, view: str) -> dict[str, int]:
    admin = await db.connect(as_app=False)  # superuser: no RLS
    counts = await _tenant_counts(admin, _BASE.get(view, view))
    assert set(counts) == set(TENANTS), f"{view} is not seeded for every tenant: {counts}"
    return {t: n for t, n in counts.items() if t in GRANTED}


async def _sees_exactly_granted(db: TestDatabase, conn: Any) -> None:
    for view in VIEWS:
        assert await _tenant_counts(conn, view) == await _expected(db, view), view


@pytest.fixture
async def analyst(seeded: Seed, make_analyst: Any) -> Analyst:
    result: Analyst = await make_analyst(*sorted(GRANTED))
    return result


async def test_sees_exactly_the_granted_tenants_in_every_view(
    db: TestDatabase, analyst: Analyst
) -> None:
    conn = await asyncpg.connect(analyst.dsn)
    try:
        await _sees_exactly_granted(db, conn)
        # the base tables behind the views are not readable at all (issue 9: no privilege, so
        # no predicate of the analyst's can run on them before the tenant filter)
        for table in (*BASE_TABLES.values(), "dbal.execution_keys", "dbal.workflow_versions"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await _tenant_counts(conn, table)
    finally:
        await conn.close()


async def test_an_analyst_without_grants_sees_nothing(seeded: Seed, make_analyst: Any) -> None:
    nobody = await make_analyst()
    conn = await asyncpg.connect(nobody.dsn)
    try:
        for view in VIEWS:
            assert await conn.fetchval(f"SELECT count(*) FROM {view}") == 0, view
    finally:
        await conn.close()


async def test_workflows_view_hides_lock_internals(db: TestDatabase, analyst: Analyst) -> None:
    conn = await asyncpg.connect(analyst.dsn)
    try:
        columns = {
            r["column_name"]
            for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'dbal_analytics' AND table_name = 'workflows'"
            )
        }
        assert {"id", "name", "tenant_id", "nodes", "execution_count"} <= columns
        assert not {c for c in columns if "lock" in c}
        for column in ("lock_token", "locked_by", "lock_expires_at", "is_locked"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch(f"SELECT {column} FROM dbal.workflows")
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "statement",
    [
        "SET dbal.tenant_id = 'initech'",
        "SELECT set_config('dbal.tenant_id', 'initech', false)",
        "SET dbal.user_role = 'supergod'",
        "SELECT set_config('dbal.user_id', 'initech-admin', false)",
        "SET ROLE pydbal_analyst",
        "SET application_name = 'initech'",
    ],
)
async def test_session_settings_widen_nothing(
    db: TestDatabase, analyst: Analyst, statement: str
) -> None:
    if CITUS_DSN and statement.startswith("SET ROLE"):
        pytest.skip(
            "through Citus a delegated call logs in to the worker as the current role, and the "
            "NOLOGIN analyst group cannot: the views fail with an error instead (never widen)"
        )
    conn = await asyncpg.connect(analyst.dsn)
    try:
        await conn.execute(statement)
        await _sees_exactly_granted(db, conn)
        async with conn.transaction():
            await conn.execute("SELECT set_config('dbal.tenant_id', 'initech', true)")
            await _sees_exactly_granted(db, conn)
    finally:
        await conn.close()


@pytest.mark.parametrize("role", ["pydbal_app", "pydbal_owner", "postgres", "pydbal_test_app"])
async def test_set_role_to_other_roles_is_refused(
    db: TestDatabase, analyst: Analyst, role: str
) -> None:
    conn = await asyncpg.connect(analyst.dsn)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(f"SET ROLE {role}")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(f"SET SESSION AUTHORIZATION {role}")
        await _sees_exactly_granted(db, conn)
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "call",
    [
        "SELECT * FROM dbal.execution_stats(p_workflow => $1::uuid, p_tenant => 'initech', "
        "p_user => 'x', p_role => 'supergod')",
        "SELECT * FROM dbal.api_get('initech', 'x', 'supergod', $1::uuid)",
        "SELECT count(*) FROM dbal.api_list('initech', 'x', 'supergod', NULL, 'name', false, "
        "0, 10) "
        "WHERE $1::uuid IS NOT NULL",
        "SELECT * FROM dbal.api_audit('initech', 'x', 'supergod', $1::uuid, 10)",
        "SELECT * FROM dbal.api_executions('initech', 'x', 'supergod', $1::uuid, NULL, NULL, "
        "NULL, 10)",
        "SELECT dbal.release_expired_locks('initech', 'x', 'supergod') WHERE $1::uuid IS NOT NULL",
        "SELECT dbal.enter('initech', 'x', 'supergod') WHERE $1::uuid IS NOT NULL",
        "SELECT dbal.enter_app('initech', 'x', 'supergod') WHERE $1::uuid IS NOT NULL",
        "SELECT dbal.sweep_expired_locks() WHERE $1::uuid IS NOT NULL",
        "SELECT dbal.ctx_tenant() WHERE $1::uuid IS NOT NULL",
    ],
)
async def test_pydbal_functions_with_another_tenants_id_give_nothing(
    db: TestDatabase, seeded: Seed, analyst: Analyst, call: str
) -> None:
    other = seeded.workflows["initech"][0]
    conn = await asyncpg.connect(analyst.dsn)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch(call, other)
        await _sees_exactly_granted(db, conn)
    finally:
        await conn.close()


async def test_the_grants_table_shows_only_the_analysts_own_rows(
    db: TestDatabase, seeded: Seed, make_analyst: Any
) -> None:
    first = await make_analyst("acme", "globex")
    second = await make_analyst("initech")
    conn = await asyncpg.connect(first.dsn)
    try:
        rows = await conn.fetch("SELECT login::text, tenant_id FROM dbal.analyst_grants")
        assert {(r["login"], r["tenant_id"]) for r in rows} == {
            (first.login, "acme"),
            (first.login, "globex"),
        }
        assert sorted(r[0] for r in await conn.fetch("SELECT dbal.analyst_tenants()")) == [
            "acme",
            "globex",
        ]
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(
                "INSERT INTO dbal.analyst_grants (tenant_id, login) VALUES ('initech', $1)",
                first.login,
            )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE dbal.analyst_grants SET login = $1", second.login)
    finally:
        await conn.close()
    listed = await list_analysts(db.dsn)
    assert {(g.login, g.tenant_id) for g in listed} >= {(second.login, "initech")}
    assert all(g.granted_by == "test-operator" for g in listed)


WRITES = [
    "INSERT INTO dbal_analytics.workflows (tenant_id, name) VALUES ('acme', 'x')",
    "UPDATE dbal_analytics.workflows SET name = 'x'",
    "DELETE FROM dbal_analytics.workflows",
    "DELETE FROM dbal_analytics.executions",
    "UPDATE dbal_analytics.audit_log SET user_id = 'x'",
    "DELETE FROM dbal_analytics.daily_stats",
    "INSERT INTO dbal.workflows (tenant_id, name, created_by) VALUES ('acme', 'x', 'x')",
    "UPDATE dbal.workflows SET name = 'x'",
    "DELETE FROM dbal.workflows",
    "DELETE FROM dbal.workflow_executions",
    "INSERT INTO dbal.audit_log (tenant_id, user_id, operation) VALUES ('acme', 'x', 'x')",
    "UPDATE dbal.workflow_stats_hourly SET success = 0",
    "DELETE FROM dbal.analyst_grants",
    "TRUNCATE dbal.workflows",
    "TRUNCATE dbal.audit_log",
    "CREATE TABLE dbal.x (a int)",
    "CREATE VIEW dbal_analytics.x AS SELECT 1",
    "CREATE TABLE dbal_ext.x (a int)",
    "CREATE TABLE public.x (a int)",
    "CREATE SCHEMA analyst_own",
    "CREATE FUNCTION dbal.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "COPY dbal.workflow_executions FROM STDIN",
    "ALTER TABLE dbal.workflows DISABLE ROW LEVEL SECURITY",
    "DROP VIEW dbal_analytics.workflows",
    "SELECT id FROM dbal.workflows FOR UPDATE",
]


@pytest.mark.parametrize("statement", WRITES)
async def test_every_write_attempt_fails(analyst: Analyst, statement: str) -> None:
    conn = await asyncpg.connect(analyst.dsn)
    try:
        with pytest.raises(
            (asyncpg.InsufficientPrivilegeError, asyncpg.ObjectNotInPrerequisiteStateError)
        ):
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_revoking_a_grant_takes_effect_for_the_next_query(
    db: TestDatabase, analyst: Analyst
) -> None:
    conn = await asyncpg.connect(analyst.dsn)
    try:
        assert set(await _tenant_counts(conn, "dbal_analytics.workflows")) == GRANTED
        assert await revoke_analyst(db.dsn, analyst.login, ["globex"]) == 1
        assert set(await _tenant_counts(conn, "dbal_analytics.workflows")) == {"acme"}
        assert await grant_analyst(db.dsn, analyst.login, ["initech"], granted_by="op") == 1
        assert set(await _tenant_counts(conn, "dbal_analytics.workflows")) == {"acme", "initech"}
        assert await revoke_analyst(db.dsn, analyst.login, ["acme", "initech"]) == 2
        for view in VIEWS:
            assert await conn.fetchval(f"SELECT count(*) FROM {view}") == 0
    finally:
        await conn.close()


async def test_daily_stats_match_the_recorded_executions(
    db: TestDatabase, analyst: Analyst
) -> None:
    conn = await asyncpg.connect(analyst.dsn)
    try:
        rows = await conn.fetch(
            "SELECT tenant_id, sum(total) AS total, sum(success) AS success, "
            "sum(failure) AS failure, min(min_ms) AS min_ms, max(max_ms) AS max_ms, "
            "sum(avg_ms * finished) / sum(finished) AS avg_ms "
            "FROM dbal_analytics.daily_stats GROUP BY 1 ORDER BY 1"
        )
        assert [r["tenant_id"] for r in rows] == sorted(GRANTED)
        for r in rows:
            assert (r["total"], r["success"], r["failure"]) == (6, 4, 2)
            assert (r["min_ms"], r["max_ms"]) == (10.0, 30.0)
            assert r["avg_ms"] == pytest.approx(20.0)
    finally:
        await conn.close()


async def test_grant_refuses_missing_and_privileged_logins(db: TestDatabase) -> None:
    from pydbal.cli.common import CommandError

    with pytest.raises(CommandError, match="does not exist"):
        await grant_analyst(db.dsn, "pydbal_no_such_login", ["acme"], granted_by="op")
    with pytest.raises(CommandError, match="superuser"):
        await grant_analyst(db.dsn, "postgres", ["acme"], granted_by="op")
    with pytest.raises(CommandError, match="app"):
        await grant_analyst(db.dsn, "pydbal_test_app", ["acme"], granted_by="op")
    with pytest.raises(CommandError, match="cannot log in"):
        await grant_analyst(db.dsn, "pydbal_app", ["acme"], granted_by="op")
