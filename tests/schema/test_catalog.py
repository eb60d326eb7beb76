"""What the catalog promises about the application login: no power beyond its grants.

Catalog reads are made as the application login where the question is "what can I do"
(has_*_privilege of current_user), and as the superuser only to enumerate objects the app cannot
see. Every list enumerated from the catalog is asserted non-empty, so a query that silently
matches nothing cannot pass.
"""

from __future__ import annotations

from typing import Any

import pytest
from dbhelpers import TENANT_A, context, create_workflow, sqlstate, table_privileges

from pydbal.migrate import resolve_roles

from conftest import APP_LOGIN, TestDatabase

APP_ROLE = resolve_roles().app


async def test_app_login_is_weak_and_owns_nothing(db: TestDatabase) -> None:
    conn = await db.connect()
    row = await conn.fetchrow(
        "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles"
        " WHERE rolname = current_user"
    )
    assert not any(row.values()), dict(row)
    owned = await conn.fetch(
        """
        SELECT 'class' AS kind, oid::regclass::text AS name FROM pg_class
         WHERE pg_get_userbyid(relowner) = ANY($1::text[])
        UNION ALL
        SELECT 'proc', oid::regprocedure::text FROM pg_proc
         WHERE pg_get_userbyid(proowner) = ANY($1::text[])
        UNION ALL
        SELECT 'namespace', nspname FROM pg_namespace
         WHERE pg_get_userbyid(nspowner) = ANY($1::text[])
        UNION ALL
        SELECT 'type', oid::regtype::text FROM pg_type
         WHERE pg_get_userbyid(typowner) = ANY($1::text[])
        """,
        [APP_LOGIN, APP_ROLE],
    )
    assert owned == []
    # and none of the roles it is a member of may bypass RLS either
    assert not await conn.fetchval(
        "SELECT bool_or(rolbypassrls OR rolsuper) FROM pg_roles"
        " WHERE pg_has_role(current_user, oid, 'MEMBER')"
    )


async def _tenant_tables(conn: Any) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """
        SELECT c.oid::regclass::text AS name, c.relrowsecurity, c.relforcerowsecurity
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'dbal' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
           AND EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid
                        AND a.attname = 'tenant_id' AND NOT a.attisdropped)
         ORDER BY 1
        """
    )
    return [dict(r) for r in rows]


async def test_rls_enabled_and_forced_on_every_tenant_table(db: TestDatabase) -> None:
    tables = await _tenant_tables(await db.connect())
    assert {t["name"] for t in tables} >= {"dbal.workflows", "dbal.workflow_executions"}
    bad = [t for t in tables if not (t["relrowsecurity"] and t["relforcerowsecurity"])]
    assert bad == []


async def test_every_tenant_table_has_a_policy_for_the_app_role(db: TestDatabase) -> None:
    conn = await db.connect(as_app=False)
    tables = await _tenant_tables(conn)
    assert tables
    missing = await conn.fetch(
        """
        SELECT t FROM unnest($1::text[]) t
         WHERE NOT EXISTS (SELECT FROM pg_policies p
                            WHERE format('%I.%I', p.schemaname, p.tablename) = t
                              AND $2 = ANY(p.roles) AND p.cmd IN ('SELECT', 'ALL'))
        """,
        [t["name"] for t in tables],
        APP_ROLE,
    )
    assert missing == []


async def test_app_has_no_privilege_on_any_partition(db: TestDatabase) -> None:
    admin = await db.connect(as_app=False)
    children = await admin.fetch(
        """
        SELECT i.inhrelid::regclass::text AS child
          FROM pg_inherits i
          JOIN pg_class p ON p.oid = i.inhparent
          JOIN pg_class c ON c.oid = i.inhrelid
         WHERE p.relnamespace = 'dbal'::regnamespace
           AND p.relkind = 'p' AND c.relkind IN ('r', 'p')
         ORDER BY 1
        """
    )
    assert children, "dbal's partitioned tables have no partition at all"
    assert await table_privileges(await db.connect(), [r["child"] for r in children]) == []


async def test_definer_functions_pin_search_path_and_deny_public(db: TestDatabase) -> None:
    conn = await db.connect(as_app=False)
    rows = await conn.fetch(
        """
        SELECT p.oid::regprocedure::text AS fn, p.proconfig, p.proacl IS NULL AS default_acl,
               EXISTS (SELECT FROM aclexplode(p.proacl) a
                        WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE') AS public_exec
          FROM pg_proc p
         WHERE p.pronamespace = 'dbal'::regnamespace AND p.prosecdef
         ORDER BY 1
        """
    )
    names = {r["fn"].split("(")[0] for r in rows}
    assert {"dbal.acquire_lock", "dbal.record_execution", "dbal.execution_stats"} <= names
    problems = []
    for r in rows:
        settings = dict(s.split("=", 1) for s in (r["proconfig"] or []))
        path = [p.strip().strip('"') for p in settings.get("search_path", "").split(",") if p]
        if not path:
            problems.append((r["fn"], "no search_path"))
        elif path[-1] != "pg_temp":
            # without an explicit trailing pg_temp, pg_temp is searched FIRST for relations
            problems.append((r["fn"], f"pg_temp is not last: {path}"))
        if r["default_acl"] or r["public_exec"]:
            problems.append((r["fn"], "PUBLIC may execute"))
    assert problems == []


async def test_search_path_schemas_of_definer_functions_are_not_writable(
    db: TestDatabase,
) -> None:
    conn = await db.connect()
    schemas = await conn.fetch(
        """
        SELECT DISTINCT btrim(s, ' "') AS nsp
          FROM pg_proc p, unnest(p.proconfig) c,
               unnest(string_to_array(substr(c, length('search_path=') + 1), ',')) s
         WHERE p.pronamespace = 'dbal'::regnamespace AND p.prosecdef
           AND c LIKE 'search_path=%'
        """
    )
    names = [r["nsp"] for r in schemas if r["nsp"] != "pg_temp"]
    assert names
    writable = [
        n
        for n in names
        if await conn.fetchval("SELECT has_schema_privilege(current_user, $1, 'CREATE')", n)
    ]
    assert writable == []


async def test_no_function_of_dbal_is_executable_by_public(db: TestDatabase) -> None:
    conn = await db.connect(as_app=False)
    rows = await conn.fetch(
        """
        SELECT p.oid::regprocedure::text AS fn FROM pg_proc p
         WHERE p.pronamespace = 'dbal'::regnamespace
           AND (p.proacl IS NULL OR EXISTS (SELECT FROM aclexplode(p.proacl) a
                                             WHERE a.grantee = 0))
        """
    )
    assert [r["fn"] for r in rows] == []


@pytest.mark.parametrize(
    "function",
    [
        "dbal.sweep_expired_locks()",
        "dbal.clear_expired_locks(text)",
        "dbal.workflow_for_update(text, uuid)",
        "dbal.audit(text, uuid, jsonb, text[])",
        "dbal.rollup_add(text, uuid, timestamptz, text, double precision, boolean)",
    ],
)
async def test_internal_helpers_are_not_executable_by_the_app(
    db: TestDatabase, function: str
) -> None:
    conn = await db.connect()
    assert not await conn.fetchval(
        "SELECT has_function_privilege(current_user, $1, 'EXECUTE')", function
    )


async def test_app_cannot_run_the_sweeper(db: TestDatabase) -> None:
    conn = await db.connect()
    assert await sqlstate(conn.fetchval("SELECT dbal.sweep_expired_locks()")) == "42501"


@pytest.mark.parametrize(
    "column_value",
    [
        ("is_locked", "true"),
        ("locked_by", "'me'"),
        ("locked_at", "now()"),
        ("lock_expires_at", "now()"),
        ("lock_token", "lock_token + 100"),
        ("execution_count", "0"),
        ("finished_execution_count", "0"),
        ("average_execution_time", "1"),
        ("last_executed_at", "now()"),
        ("last_execution_status", "'success'"),
        ("tenant_id", "'globex'"),
        ("created_at", "now()"),
    ],
)
async def test_app_cannot_update_system_columns(
    db: TestDatabase, column_value: tuple[str, str]
) -> None:
    conn = await db.connect()
    workflow = await create_workflow(conn)
    column, value = column_value
    with pytest.raises(Exception) as info:
        async with context(conn, TENANT_A):
            await conn.execute(
                f"UPDATE dbal.workflows SET {column} = {value} WHERE id = $1", workflow
            )
    assert getattr(info.value, "sqlstate", None) == "42501"
    assert "permission denied" in str(info.value)


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO dbal.audit_log (tenant_id, user_id, operation) VALUES ('acme', 'u1', 'x')",
        "UPDATE dbal.audit_log SET operation = 'x'",
        "DELETE FROM dbal.audit_log",
        "TRUNCATE dbal.audit_log",
        "INSERT INTO dbal.workflow_executions (tenant_id, workflow_id, execution_id, status,"
        " started_at, executed_by) SELECT tenant_id, id, 'e1', 'success', now(), 'u1'"
        " FROM dbal.workflows",
        "UPDATE dbal.workflow_executions SET status = 'success'",
        "DELETE FROM dbal.workflow_executions",
        "INSERT INTO dbal.workflow_stats_hourly (tenant_id, workflow_id, hour)"
        " SELECT tenant_id, id, date_trunc('hour', now()) FROM dbal.workflows",
        "UPDATE dbal.workflow_stats_hourly SET success = success + 1",
        "INSERT INTO dbal.workflow_versions (tenant_id, workflow_id, version, name, nodes, edges,"
        " variables, config, created_by, created_at) SELECT tenant_id, id, 99, name, nodes,"
        " edges, variables, config, created_by, now() FROM dbal.workflows",
        "DELETE FROM dbal.workflow_versions",
        "INSERT INTO dbal.execution_keys (tenant_id, execution_id, workflow_id, started_at,"
        " status) SELECT tenant_id, 'e1', id, now(), 'success' FROM dbal.workflows",
        "TRUNCATE dbal.workflows",
    ],
)
async def test_app_cannot_write_the_trails(db: TestDatabase, statement: str) -> None:
    conn = await db.connect()
    await create_workflow(conn)
    with pytest.raises(Exception) as info:
        async with context(conn, TENANT_A):
            await conn.execute(statement)
    assert getattr(info.value, "sqlstate", None) == "42501"
    assert "permission denied" in str(info.value)


async def test_leakproof_copies_are_for_pydbal_only(db: TestDatabase) -> None:
    """sql/05_index_operators.sql: the only leakproof functions pydbal adds are the copies of
    &&, @@ and %, calling the built-in C functions; analysts and PUBLIC may not execute them."""
    conn = await db.connect(as_app=False)
    rows = await conn.fetch(
        """
        SELECT p.oid::regprocedure::text AS name, p.prosrc,
               has_function_privilege($2, p.oid, 'EXECUTE') AS analyst,
               has_function_privilege($1, p.oid, 'EXECUTE') AS app,
               p.proacl::text AS acl
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname LIKE 'dbal%' AND p.proleakproof
         ORDER BY 1
        """,
        APP_ROLE,
        resolve_roles().analyst,
    )
    assert [(r["name"], r["prosrc"]) for r in rows] == [
        ("dbal.name_similar(text,text)", "similarity_op"),
        ("dbal.search_match(tsvector,tsquery)", "ts_match_vq"),
        ("dbal.tags_overlap(text[],text[])", "arrayoverlap"),
    ]
    assert not any(r["analyst"] for r in rows) and all(r["app"] for r in rows)
    assert not any(r["acl"].startswith("{=X") or ",=X/" in r["acl"] for r in rows)
