"""Installing distributed, and distributing an existing single-node database in place.

- A fresh ``pydbal migrate`` on the coordinator (the session's database) distributes every
  tenant table by tenant_id, colocated with dbal.workflows, analyst_grants as a reference table,
  the entry points by p_tenant; every shard has row-level security enabled and forced.
- ``pydbal distribute`` turns a database migrated without Citus into the same thing, its rows
  included: its catalog afterwards equals the fresh install's, and the API reads the same data.
- ``pydbal migrate`` with a pending migration upgrades a distributed install to the same
  catalog as a fresh one (every node's functions included), its rows kept.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from dbhelpers import create_workflow
from factories import valid_definition
from schema.test_migrate import schema_snapshot

import pydbal
from pydbal import queries as q
from pydbal.distribute import distribute
from pydbal.migrate import migrate, migration_files, status
from pydbal.server import dsn_with

from conftest import (
    APP_LOGIN,
    RUN_ID,
    TestDatabase,
    citus_nodes,
    copy_real_schema,
    create_citus_database,
    drop_citus_database,
    node_dsn,
)

pytestmark = pytest.mark.citus

TENANT_TABLES = {
    "dbal.workflows",
    "dbal.workflow_versions",
    "dbal.audit_log",
    "dbal.workflow_executions",
    "dbal.execution_keys",
    "dbal.workflow_stats_hourly",
    "dbal.workflow_stats_daily",
    "dbal.tenant_counters",
    "dbal.retention_overrides",
}
#: Small tables every tenant reads: a copy on every node.
REFERENCE_TABLES = {"dbal.analyst_grants", "dbal.retention_defaults"}


async def catalog(conn: Any) -> dict[str, Any]:
    """What distribution decides, as comparable values (no oids, no shard ids)."""
    tables = await conn.fetch(
        """
SELECT p.logicalrelid::regclass::text AS rel, p.partmethod::text AS method,
       column_to_column_name(p.logicalrelid, p.partkey) AS column,
       p.colocationid = (SELECT colocationid FROM pg_dist_partition
                          WHERE logicalrelid = 'dbal.workflows'::regclass) AS with_workflows,
       c.relrowsecurity, c.relforcerowsecurity
  FROM pg_dist_partition p JOIN pg_class c ON c.oid = p.logicalrelid
 WHERE c.relnamespace = 'dbal'::regnamespace AND NOT c.relispartition
 ORDER BY 1"""
    )
    functions = await conn.fetch(
        """
SELECT p.oid::regprocedure::text AS fn, md5(p.prosrc) AS body, p.prosecdef,
       p.proowner::regrole::text AS owner, p.proacl::text AS acl,
       o.objid IS NOT NULL AS distributed, o.distribution_argument_index AS arg,
       o.force_delegation
  FROM pg_proc p
  LEFT JOIN pg_dist_object o ON o.classid = 'pg_proc'::regclass AND o.objid = p.oid
 WHERE p.pronamespace = 'dbal'::regnamespace
   AND p.prokind = 'f'  -- procedures (run_maintenance) stay local to the coordinator
 ORDER BY 1"""
    )
    triggers = await conn.fetch(
        "SELECT tgrelid::regclass::text AS rel, tgname::text, tgfoid::regprocedure::text AS fn "
        "FROM pg_trigger WHERE NOT tgisinternal AND tgrelid IN "
        "(SELECT oid FROM pg_class WHERE relnamespace = 'dbal'::regnamespace "
        "AND NOT relispartition) ORDER BY 1, 2"
    )
    policies = await conn.fetch(
        "SELECT tablename::text, policyname::text, cmd, roles::text, qual, with_check "
        "FROM pg_policies WHERE schemaname = 'dbal' ORDER BY 1, 2"
    )
    return {
        "tables": [dict(r) for r in tables],
        "functions": [dict(r) for r in functions],
        "triggers": [dict(r) for r in triggers],
        "policies": [dict(r) for r in policies],
    }


async def test_fresh_install_is_distributed_by_tenant(db: TestDatabase) -> None:
    admin = await db.connect(as_app=False)
    got = await catalog(admin)
    tables = {t["rel"]: t for t in got["tables"]}
    assert set(tables) == TENANT_TABLES | REFERENCE_TABLES
    for rel in TENANT_TABLES:
        t = tables[rel]
        assert (t["method"], t["column"], t["with_workflows"]) == ("h", "tenant_id", True), t
        assert t["relrowsecurity"] and t["relforcerowsecurity"], t
    for rel in REFERENCE_TABLES:
        assert tables[rel]["method"] == "n", rel
    assert await admin.fetchval(
        "SELECT NOT EXISTS (SELECT FROM pg_dist_partition "
        "WHERE logicalrelid = 'dbal.schema_migrations'::regclass)"
    )
    by_tenant = [f for f in got["functions"] if "api_" in f["fn"] or "lock" in f["fn"]]
    assert by_tenant and all(
        f["arg"] is not None and f["force_delegation"]
        for f in by_tenant
        if f["fn"] != "dbal.sweep_expired_locks()"
    )
    assert all(f["distributed"] for f in got["functions"])
    # the batched recorder in its Citus shape (sql/citus/08_record_batch.sql), on every node
    for host, port in await citus_nodes(db.dsn):
        node = await asyncpg.connect(node_dsn(db.dsn, host, port, db.name))
        try:
            src = await node.fetchval(
                "SELECT prosrc FROM pg_proc WHERE proname = 'record_executions' "
                "AND pronamespace = 'dbal'::regnamespace"
            )
        finally:
            await node.close()
        assert "pydbal:citus" in src, (host, port)
    # every shard of every tenant table: RLS enabled and forced, on the worker that holds it
    for rel in sorted(TENANT_TABLES):
        flags = await admin.fetch(
            "SELECT success, result FROM run_command_on_shards($1, "
            "$$SELECT relrowsecurity AND relforcerowsecurity FROM pg_class "
            "WHERE oid = '%s'::regclass$$)",
            rel,
        )
        assert flags and all(f["success"] and f["result"] == "t" for f in flags), (rel, flags)


async def test_distribute_in_place_keeps_the_data_and_equals_a_fresh_install(
    db: TestDatabase, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYDBAL_CITUS_SHARD_COUNT", "4")
    name = f"pydbal_dist_{RUN_ID}"
    nodes = await citus_nodes(pg_dsn)
    (chost, cport), workers = nodes[0], nodes[1:]
    await drop_citus_database(pg_dsn, name)
    try:
        # 1. a single-node install on the coordinator's server: no citus in this database
        conn = await asyncpg.connect(node_dsn(pg_dsn, chost, cport, "postgres"))
        try:
            await conn.execute(f"CREATE DATABASE {name}")
        finally:
            await conn.close()
        dsn = dsn_with(pg_dsn, database=name)
        await migrate(dsn)
        app = await asyncpg.connect(dsn_with(dsn, user=APP_LOGIN))
        ids = {}
        try:
            for tenant in ("acme", "globex", "initech"):
                ids[tenant] = [await create_workflow(app, tenant, f"w{i}") for i in range(3)]
                for wf in ids[tenant]:
                    await app.fetch(
                        q.RECORD_EXECUTION,
                        tenant,
                        "u1",
                        "admin",
                        wf,
                        "success",
                        5.0,
                        str(uuid.uuid4()),
                        None,
                        None,
                        None,
                    )
        finally:
            await app.close()
        admin = await asyncpg.connect(dsn)
        counts_sql = (
            "SELECT (SELECT count(*) FROM dbal.workflows), "
            "(SELECT count(*) FROM dbal.workflow_executions), "
            "(SELECT count(*) FROM dbal.audit_log), (SELECT count(*) FROM dbal.execution_keys), "
            "(SELECT sum(success) FROM dbal.workflow_stats_hourly)"
        )
        try:
            before = tuple(await admin.fetchrow(counts_sql))
        finally:
            await admin.close()

        # 2. the operator adds Citus and the workers, then distributes
        for host, port in workers:
            conn = await asyncpg.connect(node_dsn(pg_dsn, host, port, "postgres"))
            try:
                await conn.execute(f"CREATE DATABASE {name}")
            finally:
                await conn.close()
            conn = await asyncpg.connect(node_dsn(pg_dsn, host, port, name))
            try:
                await conn.execute("CREATE EXTENSION citus")
            finally:
                await conn.close()
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute("CREATE EXTENSION citus")
            await admin.execute("SELECT citus_set_coordinator_host($1, $2)", chost, cport)
            for host, port in workers:
                await admin.execute("SELECT citus_add_node($1, $2)", host, port)
        finally:
            await admin.close()
        summary = await distribute(dsn)
        assert summary["distributed_tables"] == len(TENANT_TABLES)
        assert summary["reference_tables"] == len(REFERENCE_TABLES)
        assert await distribute(dsn) == summary  # idempotent
        assert await migrate(dsn) == []  # up to date, and the distribution step is a no-op

        # 3. same rows, same catalog as a fresh distributed install, same answers
        admin = await asyncpg.connect(dsn)
        fresh = await db.connect(as_app=False)
        try:
            assert tuple(await admin.fetchrow(counts_sql)) == before
            assert await catalog(admin) == await catalog(fresh)
        finally:
            await admin.close()
        app = await asyncpg.connect(dsn_with(dsn, user=APP_LOGIN))
        try:
            for tenant, wfs in ids.items():
                page = await app.fetch(
                    q.LIST, tenant, "u1", "admin", None, "name", False, 0, 20, None, None
                )
                assert sorted(r["id"] for r in page) == sorted(wfs)
                got = await app.fetchrow(
                    q.EXECUTION_STATS, tenant, "u1", "admin", wfs[0], None, None
                )
                assert got["total"] == 1 and got["success"] == 1
        finally:
            await app.close()
    finally:
        if os.environ.get("PYDBAL_KEEP_DBS") is None:
            await drop_citus_database(pg_dsn, name)


async def _functions_on_nodes(pg_dsn: str, name: str) -> list[dict[str, tuple[Any, ...]]]:
    """Per node (coordinator first): every dbal routine's body, owner, privileges and
    settings."""
    sql = (
        "SELECT p.oid::regprocedure::text AS fn, md5(p.prosrc) AS body, "
        "p.proowner::regrole::text AS owner, "
        "coalesce(p.proacl, acldefault('f', p.proowner))::text AS acl, "
        "p.prosecdef, p.proconfig::text AS config "
        "FROM pg_proc p WHERE p.pronamespace = 'dbal'::regnamespace AND p.prokind = 'f'"
    )
    found = []
    for host, port in await citus_nodes(pg_dsn):
        conn = await asyncpg.connect(node_dsn(pg_dsn, host, port, name))
        try:
            found.append({r["fn"]: tuple(r)[1:] for r in await conn.fetch(sql)})
        finally:
            await conn.close()
    return found


async def test_upgrading_a_distributed_install_equals_a_fresh_one(
    db: TestDatabase, pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A coordinator migrated and distributed without the newest migration, then ``migrate``d:
    the migration runs as the superuser, what it created is handed to the owner, and the
    install ends like a fresh distributed one (catalog, distribution, every node's functions),
    its rows kept, the API working through the coordinator."""
    monkeypatch.setenv("PYDBAL_CITUS_SHARD_COUNT", "4")
    sql_dir, migrations_dir = copy_real_schema(tmp_path / "now")
    older = tmp_path / "older"
    shutil.copytree(migrations_dir, older)
    newest = migration_files(older)[-1]
    newest.unlink()
    name = f"pydbal_upg_{RUN_ID}"
    dsn = await create_citus_database(pg_dsn, name)
    try:
        await migrate(dsn, mode="migrations", sql_dir=sql_dir, migrations_dir=older)
        app = await asyncpg.connect(dsn_with(dsn, user=APP_LOGIN))
        try:
            before = [await create_workflow(app, "acme", f"w{i}") for i in range(3)]
        finally:
            await app.close()

        assert await migrate(dsn, sql_dir=sql_dir, migrations_dir=migrations_dir) == [newest.stem]
        assert await migrate(dsn, sql_dir=sql_dir, migrations_dir=migrations_dir) == []

        # the same catalog as the session's fresh distributed install ...
        admin = await asyncpg.connect(dsn)
        fresh = await db.connect(as_app=False)
        try:
            assert await catalog(admin) == await catalog(fresh)
            assert await status(dsn, migrations_dir=migrations_dir) == await status(
                db.dsn, migrations_dir=migrations_dir
            )
            owners = (
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname LIKE 'dbal%' AND c.relowner = current_user::regrole"
            )
            assert await admin.fetchval(owners) == await fresh.fetchval(owners)
        finally:
            await admin.close()
        upgraded, fresh_snapshot = await schema_snapshot(dsn), await schema_snapshot(db.dsn)
        assert upgraded.keys() == fresh_snapshot.keys()
        for aspect, rows in fresh_snapshot.items():
            assert upgraded[aspect] == rows, aspect
        # ... on every node
        nodes = await _functions_on_nodes(pg_dsn, name)
        assert nodes == await _functions_on_nodes(pg_dsn, db.name)
        assert all(node == nodes[0] for node in nodes[1:])

        # the rows from before the upgrade, and the API, through the coordinator
        async with pydbal.connect(dsn_with(dsn, user=APP_LOGIN), max_size=2) as database:
            acme = database.tenant("acme", user_id="u1", role="admin")
            assert {(await acme.workflows.get(w)).id for w in before} == set(before)
            wf = await acme.workflows.create(valid_definition("after"))
            assert (await acme.workflows.get(wf.id)).name == "after"
            lock = await acme.workflows.acquire_lock(wf.id, timeout_ms=60000)
            assert lock is not None
            await acme.workflows.record_execution(wf.id, "success", 5.0, "e1", lock=lock)
            assert await acme.workflows.release_lock(wf.id, lock)
            async with database.recorder(batch_size=10, max_delay=0.001) as rec:
                for i in range(20):
                    rec.record(acme, before[i % 3], "success", 1.0, execution_id=f"b{i}")
                report = await rec.flush()
            assert report.stored_count == 20 and not report.refused
            stats = await acme.workflows.get_execution_stats(before[0])
            assert stats.total == 7
            assert (await acme.workflows.get(wf.id)).execution_count == 1
    finally:
        if os.environ.get("PYDBAL_KEEP_DBS") is None:
            await drop_citus_database(pg_dsn, name)


async def test_privileges_on_every_worker_equal_the_coordinators(
    db: TestDatabase, pg_dsn: str
) -> None:
    """A delegated call is checked for EXECUTE on the worker, not on the coordinator: the
    workers' function and table privileges must be the coordinator's (no PUBLIC EXECUTE)."""
    acl_sql = (
        "SELECT 'f ' || p.oid::regprocedure::text AS obj, "
        "coalesce(p.proacl, acldefault('f', p.proowner))::text AS acl "
        "FROM pg_proc p WHERE p.pronamespace = 'dbal'::regnamespace AND p.prokind = 'f' "
        "UNION ALL SELECT 't ' || c.oid::regclass::text, c.relacl::text FROM pg_class c "
        "WHERE c.relnamespace = 'dbal'::regnamespace AND c.relkind IN ('r', 'p') "
        "AND NOT c.relispartition "
        # local to the coordinator (docs/scale-out.md): migrate's and maintenance's own
        "AND c.relname NOT IN ('schema_migrations', 'maintenance_runs') "
        "UNION ALL SELECT 's ' || nspname, nspacl::text FROM pg_namespace "
        "WHERE nspname IN ('dbal', 'dbal_ext') ORDER BY 1"
    )
    nodes = await citus_nodes(pg_dsn)
    acls = []
    for host, port in nodes:
        conn = await asyncpg.connect(node_dsn(pg_dsn, host, port, db.name))
        try:
            acls.append({r["obj"]: r["acl"] for r in await conn.fetch(acl_sql)})
        finally:
            await conn.close()
    coordinator, workers = acls[0], acls[1:]
    assert any(k.startswith("f dbal.api_get") for k in coordinator)
    assert not [k for k, v in coordinator.items() if v and ("{=" in v or ",=" in v)]
    for worker in workers:
        assert worker == coordinator
