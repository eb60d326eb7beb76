"""Issue 9: a compromised service login cannot break the database's promises.

The service login (the application role) may act for any tenant by design. It runs any SQL here,
and still cannot: store a validation result the database did not stamp, erase a workflow's
records, choose or revive ids, or make a fencing token repeat. Deleting archives; only an
operator's purge removes data. Also: a held migration lock is named, not waited on forever.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from dbhelpers import TENANT_A, acquire, context, create_workflow, record, sqlstate

import pydbal
from pydbal.cli.purge import purge_archived
from pydbal.migrate import LOCK_KEY, MigrationError, migrate

from conftest import TestDatabase

FORGE = """
UPDATE dbal.workflows SET nodes = '[{"garbage":1}]', validation_status = 'valid',
       valid_until = 'infinity', validated_at = now(), validator_version = 1
 WHERE id = $1
"""


async def test_app_role_has_no_write_privilege_on_any_table(db: TestDatabase) -> None:
    conn = await db.connect()
    tables = await conn.fetch(
        """SELECT c.oid::regclass::text AS rel FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname LIKE 'dbal%' AND c.relkind IN ('r', 'p')"""
    )
    assert len(tables) >= 8
    for t in tables:
        for privilege in ("INSERT", "UPDATE", "DELETE", "TRUNCATE"):
            assert not await conn.fetchval(
                "SELECT has_table_privilege(current_user, $1, $2)", t["rel"], privilege
            ), (t["rel"], privilege)
        for privilege in ("INSERT", "UPDATE"):
            assert not await conn.fetchval(
                "SELECT has_any_column_privilege(current_user, $1, $2)", t["rel"], privilege
            ), (t["rel"], privilege)


async def test_a_permanent_valid_cannot_be_forged(db: TestDatabase) -> None:
    conn, admin = await db.connect(), await db.connect(as_app=False)
    workflow = await create_workflow(conn)
    # the finding, as the service login: refused outright
    async with context(conn, TENANT_A):
        assert await sqlstate(conn.execute(FORGE, workflow)) == "42501"
    # even a superuser's direct write gets the database's stamp, never 'infinity'
    async with admin.transaction():  # one transaction: now() below is the UPDATE's now()
        await admin.execute(FORGE, workflow)
        row = await admin.fetchrow(
            "SELECT validated_at, valid_until, now() AS now FROM dbal.workflows WHERE id = $1",
            workflow,
        )
    assert row["validated_at"] == row["now"]
    assert row["valid_until"] == row["now"] + timedelta(hours=1)
    assert (
        await sqlstate(
            admin.execute(
                "UPDATE dbal.workflows SET valid_until = 'infinity' WHERE id = $1", workflow
            )
        )
        == "23514"
    )
    # the entry points stamp the database's clock, whatever the caller claims
    await conn.fetchval(
        "SELECT dbal.store_validation($1, 'u1', 'admin', $2, 2, 'valid', NULL, 1)",
        TENANT_A,
        workflow,
    )
    bounded = await admin.fetchval(
        "SELECT valid_until <= validated_at + interval '1 hour' FROM dbal.workflows WHERE id = $1",
        workflow,
    )
    assert bounded is True


async def test_delete_then_recreate_with_the_same_id_is_refused(db: TestDatabase) -> None:
    conn, admin = await db.connect(), await db.connect(as_app=False)
    workflow = await create_workflow(conn)
    async with context(conn, TENANT_A):
        assert (
            await sqlstate(conn.execute("DELETE FROM dbal.workflows WHERE id = $1", workflow))
            == "42501"
        )
    async with context(conn, TENANT_A):
        assert (
            await sqlstate(
                conn.execute(
                    "INSERT INTO dbal.workflows (tenant_id, id, name, created_by)"
                    " VALUES ($1, $2, 'x', 'u1')",
                    TENANT_A,
                    uuid.uuid4(),
                )
            )
            == "42501"
        )
    # no entry point takes an id to create with
    params = await admin.fetchval(
        "SELECT array_agg(a) FROM pg_proc p, unnest(p.proargnames) a"
        " WHERE p.oid = 'dbal.api_insert'::regproc"
    )
    assert not any(a.removeprefix("p_").rstrip("s") == "id" for a in params), params
    assert await admin.fetchval("SELECT count(*) FROM dbal.workflows") == 1


async def _records(admin: Any, workflow: Any) -> dict[str, int]:
    tables = {
        "history": "dbal.workflow_versions",
        "executions": "dbal.workflow_executions",
        "keys": "dbal.execution_keys",
        "hourly": "dbal.workflow_stats_hourly",
        "daily": "dbal.workflow_stats_daily",
        "audit": "dbal.audit_log",
    }
    return {
        k: await admin.fetchval(f"SELECT count(*) FROM {t} WHERE workflow_id = $1", workflow)
        for k, t in tables.items()
    }


@pytest.mark.parametrize("role", ["user", "admin"])
async def test_deleting_through_the_api_archives_and_keeps_every_record(
    db: TestDatabase, role: str
) -> None:
    admin = await db.connect(as_app=False)
    async with pydbal.connect(db.app_dsn) as app:
        creator = app.tenant(TENANT_A, user_id="alice", role="admin")
        wf = await creator.workflows.create(
            {
                "name": "keep me",
                "nodes": [{"id": "t", "name": "Start", "type": "n8n-nodes-base.manualTrigger"}],
            }
        )
        await creator.workflows.update(wf.id, {"nodes": [{"id": "t2", "name": "S2", "type": "x"}]})
        await creator.workflows.record_execution(wf.id, "success", 12.0, execution_id="e1")
        before = await _records(admin, wf.id)
        assert min(before.values()) >= 1, before
        deleter = app.tenant(TENANT_A, user_id="alice", role=role)  # role user: its own
        assert await deleter.workflows.delete(wf.id) is True
        assert await deleter.workflows.get(wf.id) is None
        assert (await deleter.workflows.list()).total == 0
        after = await _records(admin, wf.id)
        assert {k: v for k, v in after.items() if k != "audit"} == {
            k: v for k, v in before.items() if k != "audit"
        }
        assert after["audit"] == before["audit"] + 1  # the archive itself
        archived = await deleter.workflows.list({"archived": True})
        assert [w.id for w in archived.items] == [wf.id]
        assert archived.items[0].archived_at is not None
        # the name is free meanwhile; unarchiving then renames
        other = await creator.workflows.create({"name": "keep me", "nodes": []})
        back = await deleter.workflows.unarchive(wf.id)
        assert back is not None and back.id == wf.id and back.name == "keep me (2)"
        assert back.archived_at is None
        assert await deleter.workflows.get(other.id) is not None
        assert len(await deleter.workflows.history(wf.id)) == before["history"]


async def test_fencing_tokens_never_repeat_across_archive_and_unarchive(
    db: TestDatabase,
) -> None:
    conn, admin = await db.connect(), await db.connect(as_app=False)
    workflow = await create_workflow(conn)
    first = await acquire(conn, workflow)
    assert first is not None
    assert await conn.fetchval("SELECT dbal.api_delete($1, 'u1', 'admin', $2)", TENANT_A, workflow)
    row = await admin.fetchrow(
        "SELECT is_locked, lock_token FROM dbal.workflows WHERE id = $1", workflow
    )
    assert row["is_locked"] is False and row["lock_token"] == first  # released, never reset
    # archived: no lock, no record
    assert (await sqlstate(acquire(conn, workflow))) == "D4041"
    assert (await sqlstate(record(conn, workflow))) == "D4041"
    assert await conn.fetch(
        "SELECT 1 FROM dbal.api_unarchive($1, 'u1', 'admin', $2)", TENANT_A, workflow
    )
    second = await acquire(conn, workflow)
    assert second is not None and second > first


async def test_only_an_operator_purges_and_purge_is_audited(db: TestDatabase) -> None:
    conn, admin = await db.connect(), await db.connect(as_app=False)
    old = await create_workflow(conn, name="old")
    recent = await create_workflow(conn, name="recent")
    live = await create_workflow(conn, name="live")
    await record(conn, old)
    for wid in (old, recent):
        assert await conn.fetchval("SELECT dbal.api_delete($1, 'u1', 'admin', $2)", TENANT_A, wid)
    await admin.execute(
        "UPDATE dbal.workflows SET archived_at = now() - interval '40 days' WHERE id = $1", old
    )
    assert await sqlstate(conn.fetch("SELECT * FROM dbal.purge_archived('1 day')")) == "42501"
    purged = await purge_archived(db.dsn, timedelta(days=30))
    assert [p["workflow_id"] for p in purged] == [old]
    remaining = {r[0] for r in await admin.fetch("SELECT id FROM dbal.workflows")}
    assert remaining == {recent, live}
    records = await _records(admin, old)
    assert records.pop("audit") >= 1  # audit rows stay
    assert set(records.values()) == {0}
    audit = await admin.fetchrow(
        "SELECT user_id, operation FROM dbal.audit_log WHERE workflow_id = $1"
        " ORDER BY at DESC LIMIT 1",
        old,
    )
    assert audit["operation"] == "purge"
    assert audit["user_id"] == await admin.fetchval("SELECT session_user::text")


async def test_a_held_migration_lock_is_named_not_waited_on(db: TestDatabase) -> None:
    holder = await asyncpg.connect(db.dsn, server_settings={"application_name": "stuck-job"})
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        started = asyncio.get_running_loop().time()
        with pytest.raises(MigrationError) as info:
            await migrate(db.dsn, lock_timeout=1.0)
        assert asyncio.get_running_loop().time() - started < 30
        message = str(info.value)
        assert "stuck-job" in message and str(await holder.fetchval("SELECT pg_backend_pid()"))
        assert str(await holder.fetchval("SELECT pg_backend_pid()")) in message
    finally:
        await holder.close()
    assert await migrate(db.dsn, lock_timeout=5.0) == []


async def test_an_operators_direct_sql_is_audited_and_keeps_history(db: TestDatabase) -> None:
    """README: history and audit are written by triggers that also see direct SQL — an
    operator's UPDATE without any request context included."""
    conn, admin = await db.connect(), await db.connect(as_app=False)
    workflow = await create_workflow(conn)
    done = await admin.execute(
        "UPDATE dbal.workflows SET nodes = '[{\"id\": \"x\"}]' WHERE id = $1", workflow
    )
    assert done == "UPDATE 1"
    history = await admin.fetch(
        "SELECT version, replaced_by FROM dbal.workflow_versions WHERE workflow_id = $1", workflow
    )
    operator = await admin.fetchval("SELECT session_user::text")
    assert [(h["version"], h["replaced_by"]) for h in history] == [(1, operator)]
    audit = await admin.fetchrow(
        "SELECT user_id, operation FROM dbal.audit_log WHERE workflow_id = $1"
        " ORDER BY at DESC LIMIT 1",
        workflow,
    )
    assert (audit["user_id"], audit["operation"]) == (operator, "update")
