"""Time partitions under pg_partman (sql/60_partitions.sql): rows land in dated children, and no
child — premade, or created later by maintenance — gives the application role any privilege.

Skipped where pg_partman is not installed (the embedded server): there, every row lives in one
default partition, which tests/schema/test_catalog.py already checks for privileges.
"""

from __future__ import annotations

from typing import Any

import pytest
from dbhelpers import create_workflow, record, sqlstate, table_privileges

from conftest import APP_LOGIN, TestDatabase


async def _require_partman(admin: Any) -> None:
    if not await admin.fetchval(
        "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_partman')"
    ):
        pytest.skip(
            "pg_partman is not installed on this server (embedded PostgreSQL): "
            "executions and audit rows live in a default partition"
        )


async def _children(admin: Any) -> list[str]:
    rows = await admin.fetch(
        """
        SELECT i.inhrelid::regclass::text AS child FROM pg_inherits i
         WHERE i.inhparent IN ('dbal.workflow_executions'::regclass, 'dbal.audit_log'::regclass)
         ORDER BY 1
        """
    )
    return [r["child"] for r in rows]


async def test_old_executions_land_in_a_dated_child(db: TestDatabase) -> None:
    admin, conn = await db.connect(as_app=False), await db.connect()
    await _require_partman(admin)
    workflow = await create_workflow(conn)
    started = await conn.fetchval("SELECT now() - interval '20 days'")
    execution_id, outcome = await record(conn, workflow, started_at=started)
    assert outcome == "recorded"
    row = await admin.fetchrow(
        "SELECT e.tableoid::regclass::text AS part, pg_get_expr(c.relpartbound, c.oid) AS bound"
        " FROM dbal.workflow_executions e JOIN pg_class c ON c.oid = e.tableoid"
        " WHERE e.execution_id = $1",
        execution_id,
    )
    assert row["part"].startswith("dbal.workflow_executions_p"), row
    assert "DEFAULT" not in row["bound"], row
    assert started.strftime("%Y") in row["part"]
    # and the audit row of that recording lands in today's child, not the default
    audit_part = await admin.fetchval(
        "SELECT a.tableoid::regclass::text FROM dbal.audit_log a"
        " WHERE a.operation = 'execution' AND a.workflow_id = $1",
        workflow,
    )
    assert not audit_part.endswith("_default"), audit_part
    assert await admin.fetchval("SELECT count(*) FROM dbal.workflow_executions_default") == 0


async def test_app_cannot_read_a_child_partition_directly(db: TestDatabase) -> None:
    admin, conn = await db.connect(as_app=False), await db.connect()
    await _require_partman(admin)
    workflow = await create_workflow(conn)
    execution_id, _ = await record(conn, workflow)
    child = await admin.fetchval(
        "SELECT tableoid::regclass::text FROM dbal.workflow_executions WHERE execution_id = $1",
        execution_id,
    )
    assert await sqlstate(conn.fetch(f"SELECT * FROM {child}")) == "42501"
    assert await sqlstate(conn.fetch("SELECT * FROM dbal.workflow_executions_default")) == "42501"


async def test_maintenance_creates_children_without_app_privileges(db: TestDatabase) -> None:
    admin, conn = await db.connect(as_app=False), await db.connect()
    await _require_partman(admin)
    before = await _children(admin)
    # ask for more children ahead, so maintenance has something to create
    await admin.execute(
        "UPDATE partman.part_config SET premake = premake + 3"
        " WHERE parent_table IN ('dbal.workflow_executions', 'dbal.audit_log')"
    )
    await admin.execute("CALL partman.run_maintenance_proc()")  # autocommit: no transaction
    after = await _children(admin)
    assert set(after) > set(before), "maintenance created no child"
    assert await table_privileges(conn, after) == []
    new = sorted(set(after) - set(before))
    assert await sqlstate(conn.fetch(f"SELECT * FROM {new[0]}")) == "42501"
    # nor does any ACL entry name the app role, its login or PUBLIC
    grantees = await admin.fetch(
        """
        SELECT c.oid::regclass::text AS child, a.grantee::regrole::text AS grantee
          FROM pg_class c, aclexplode(c.relacl) a
         WHERE c.oid = ANY($1::regclass[])
           AND (a.grantee = 0 OR pg_has_role($2, a.grantee, 'MEMBER'))
        """,
        after,
        APP_LOGIN,
    )
    assert [dict(r) for r in grantees] == []
