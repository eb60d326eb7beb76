"""The scheduler's job (sql/45_maintenance.sql, pydbal/maintenance.py): expired leases cleared in
the table and audited within the bound, one runner at a time, and retention removing exactly
what is older than the policy from every table (with pg_partman where the server has it).

Data is written as the app login through the entry points; maintenance runs as the superuser
(like pg_cron's job); the tenant-side retention API is exercised as the app login.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from dbhelpers import TENANT_A, TENANT_B, context, create_workflow

import pydbal
from pydbal import ErrorCode
from pydbal.maintenance import Scheduler, run_once

from conftest import TestDatabase

LOCK_KEY = 8101238223536500852  # c_lock in dbal.run_maintenance
ROOT = str(Path(__file__).resolve().parents[2])


async def _lock(conn: Any, wf: uuid.UUID, timeout_ms: int, tenant: str = TENANT_A) -> int:
    token = await conn.fetchval(
        "SELECT dbal.acquire_lock(p_workflow => $1, p_timeout_ms => $2, p_tenant => $3,"
        " p_user => 'u1', p_role => 'admin')",
        wf,
        timeout_ms,
        tenant,
    )
    assert token is not None
    return int(token)


async def test_scheduler_clears_expired_lease_within_bound(db: TestDatabase) -> None:
    app = await db.connect()
    raw = await db.connect(as_app=False)
    wf = await create_workflow(app)
    live = await create_workflow(app)
    await _lock(app, wf, 300)
    await _lock(app, live, 600_000)
    scheduler = Scheduler(db.dsn, interval=0.2)
    scheduler.start()
    try:
        expired_at = time.monotonic() + 0.3
        while True:
            if not await raw.fetchval("SELECT is_locked FROM dbal.workflows WHERE id = $1", wf):
                break
            assert time.monotonic() < expired_at + 2.0, "expired lease still locked after 2 s"
            await asyncio.sleep(0.05)
    finally:
        await scheduler.stop()
    row = await raw.fetchrow(
        "SELECT is_locked, locked_by, lock_expires_at FROM dbal.workflows WHERE id = $1", wf
    )
    assert dict(row) == {"is_locked": False, "locked_by": None, "lock_expires_at": None}
    assert await raw.fetchval("SELECT is_locked FROM dbal.workflows WHERE id = $1", live)
    audit = await raw.fetch(
        "SELECT user_id, details FROM dbal.audit_log WHERE workflow_id = $1"
        " AND operation = 'lock_expired'",
        wf,
    )
    assert len(audit) == 1 and audit[0]["user_id"].startswith("maintenance:pydbal:")
    assert scheduler.runs >= 1
    last = await raw.fetchrow(
        "SELECT * FROM dbal.maintenance_runs WHERE locks_cleared = 1 ORDER BY id LIMIT 1"
    )
    assert last is not None and last["finished_at"] is not None and last["error"] is None


async def test_a_held_election_lock_skips_the_run(db: TestDatabase) -> None:
    app = await db.connect()
    other = await db.connect(as_app=False)
    raw = await db.connect(as_app=False)
    wf = await create_workflow(app)
    await _lock(app, wf, 1)
    await asyncio.sleep(0.05)
    await other.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)  # "another process is running"
    assert await run_once(db.dsn) is None
    assert await raw.fetchval("SELECT is_locked FROM dbal.workflows WHERE id = $1", wf)
    await other.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    row = await run_once(db.dsn)
    assert row is not None and row["locks_cleared"] == 1
    # a run younger than min_interval makes the next runner skip
    assert await run_once(db.dsn, min_interval=60) is None


_WORKER = """
import asyncio, sys
from pydbal.maintenance import Scheduler
async def main():
    s = Scheduler(sys.argv[1], interval=0.05, runner=sys.argv[2])
    s.start()
    await asyncio.sleep(float(sys.argv[3]))
    await s.stop()
asyncio.run(main())
"""


async def test_two_processes_never_sweep_at_once(db: TestDatabase) -> None:
    app = await db.connect()
    raw = await db.connect(as_app=False)
    for _ in range(40):  # expired leases for the runs to clear
        await _lock(app, await create_workflow(app), 1)
    env = {**os.environ, "PYTHONPATH": ROOT}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _WORKER, db.dsn, f"proc{i}", "3", env=env
        )
        for i in range(2)
    ]
    for p in procs:
        assert await asyncio.wait_for(p.wait(), 60) == 0
    runs = await raw.fetch(
        "SELECT runner, started_at, finished_at, locks_cleared FROM dbal.maintenance_runs"
        " ORDER BY started_at"
    )
    assert len(runs) >= 4 and {r["runner"] for r in runs} <= {"proc0", "proc1"}
    assert all(r["finished_at"] is not None for r in runs)
    for a, b in itertools.pairwise(runs):
        assert a["finished_at"] <= b["started_at"], (dict(a), dict(b))  # never overlapping
    assert sum(r["locks_cleared"] for r in runs) == 40  # each expired lease cleared once
    assert (
        await raw.fetchval("SELECT count(*) FROM dbal.audit_log WHERE operation = 'lock_expired'")
        == 40
    )


# -- retention ------------------------------------------------------------------------------------

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


async def _record_at(app: Any, tenant: str, wf: uuid.UUID, age: timedelta, eid: str) -> None:
    await app.fetchrow(
        "SELECT * FROM dbal.record_execution(p_workflow => $1, p_status => 'success',"
        " p_duration_ms => 5, p_execution_id => $2, p_started_at => now() - $3::interval,"
        " p_tenant => $4, p_user => 'u1', p_role => 'admin')",
        wf,
        eid,
        age,
        tenant,
    )


async def test_retention_removes_exactly_what_is_older(db: TestDatabase) -> None:
    app = await db.connect()
    raw = await db.connect(as_app=False)
    partman = await raw.fetchval(
        "SELECT EXISTS (SELECT FROM pg_extension WHERE extname='pg_partman')"
    )
    ages = {
        "d1": DAY,
        "d29": 30 * DAY - 2 * HOUR,  # just inside the executions' 30 days
        "d30": 30 * DAY + 2 * HOUR,  # just outside
        "d31": 31 * DAY + 12 * HOUR,  # in a partition that pg_partman drops whole
        "d45": 45 * DAY,  # older than the first partition: in the default one
        "d89": 89 * DAY,  # hourly roll-up kept (90 days)
        "d91": 91 * DAY,  # hourly roll-up removed
        "d729": 729 * DAY,  # daily roll-up kept (2 years)
        "d731": 731 * DAY,  # daily roll-up removed
    }
    wfs = {
        TENANT_A: await create_workflow(app, TENANT_A),
        TENANT_B: await create_workflow(app, TENANT_B),
    }
    for tenant, wf in wfs.items():
        for name, age in ages.items():
            await _record_at(app, tenant, wf, age, f"{tenant}-{name}")
    # audit rows of another age, written as an operator would (direct SQL)
    for tenant in wfs:
        for days in (300, 364, 366, 500):
            await raw.execute(
                "INSERT INTO dbal.audit_log (tenant_id, user_id, operation, at)"
                " VALUES ($1, 'op', $2, now() - $3::interval)",
                tenant,
                f"old{days}",
                days * DAY,
            )
    # globex keeps executions 7 days (its admin may shorten, through the API as the app login)
    async with context(app, TENANT_B, "boss", "admin"):
        await app.execute("SELECT dbal.set_retention('executions', interval '7 days')")

    row = await run_once(db.dsn, batch=2)  # tiny batches: many bounded deletes, same result
    assert row is not None and row["error"] is None, row
    if partman:
        assert row["partitions_dropped"] >= 1
    else:
        assert row["partitions_dropped"] is None

    async def names(sql: str, tenant: str) -> set[str]:
        rows = await raw.fetch(sql, tenant)
        return {r[0].split("-", 1)[1] for r in rows}

    def older(limit: timedelta) -> set[str]:
        return {n for n, a in ages.items() if a < limit}

    rows_sql = "SELECT execution_id FROM dbal.workflow_executions WHERE tenant_id = $1"
    keys_sql = "SELECT execution_id FROM dbal.execution_keys WHERE tenant_id = $1"
    assert await names(rows_sql, TENANT_A) == {"d1", "d29"}
    assert await names(keys_sql, TENANT_A) == {"d1", "d29"}
    assert await names(rows_sql, TENANT_B) == {"d1"}
    assert await names(keys_sql, TENANT_B) == {"d1"}
    for tenant in wfs:
        hours = await raw.fetch(
            "SELECT hour FROM dbal.workflow_stats_hourly WHERE tenant_id = $1", tenant
        )
        assert len(hours) == len(older(90 * DAY))
        cutoff = await raw.fetchval("SELECT now() - interval '90 days'")
        assert all(h["hour"] >= cutoff - HOUR for h in hours)
        days = await raw.fetchval(
            "SELECT sum(success) FROM dbal.workflow_stats_daily WHERE tenant_id = $1", tenant
        )
        assert days == len(older(730 * DAY))  # daily roll-ups outlive the executions
        audit = await raw.fetch(
            "SELECT operation FROM dbal.audit_log WHERE tenant_id = $1 AND operation LIKE 'old%'",
            tenant,
        )
        assert sorted(a["operation"] for a in audit) == ["old300", "old364"]
    removed = row["removed"] if isinstance(row["removed"], dict) else json.loads(row["removed"])
    assert removed["audit"] == 4
    assert removed["stats_daily"] == 2
    # a pruned execution id may be recorded again: it is new once its key is gone
    out = await app.fetchrow(
        "SELECT outcome FROM dbal.record_execution(p_workflow => $1, p_status => 'success',"
        " p_duration_ms => 5, p_execution_id => 'acme-d45', p_started_at => now() - interval"
        " '45 days', p_tenant => 'acme', p_user => 'u1', p_role => 'admin')",
        wfs[TENANT_A],
    )
    assert out["outcome"] == "recorded"
    # a second run finds nothing more to remove (the re-recorded one aside)
    again = await run_once(db.dsn)
    assert again is not None
    again_removed = (
        again["removed"] if isinstance(again["removed"], dict) else json.loads(again["removed"])
    )
    assert again_removed["audit"] == 0 and again_removed["stats_daily"] == 0


async def test_retention_api_permissions(db: TestDatabase) -> None:
    async with pydbal.connect(db.app_dsn, max_size=2) as app:
        admin = app.tenant(TENANT_A, user_id="a", role="admin")
        user = app.tenant(TENANT_A, user_id="u", role="user")
        other = app.tenant(TENANT_B, user_id="b", role="admin")
        base = await admin.retention()
        assert base == {
            "executions": 30 * DAY,
            "stats_hourly": 90 * DAY,
            "stats_daily": 730 * DAY,
            "audit": 365 * DAY,
        }
        assert await admin.set_retention("executions", 10 * DAY) == 10 * DAY
        assert (await admin.retention())["executions"] == 10 * DAY
        assert (await other.retention())["executions"] == 30 * DAY  # per tenant
        with pytest.raises(pydbal.DBALError) as info:
            await user.set_retention("executions", 5 * DAY)
        assert info.value.code == ErrorCode.FORBIDDEN
        with pytest.raises(pydbal.DBALError) as info:
            await admin.set_retention("audit", 3650 * DAY)  # longer than the default
        assert info.value.code == ErrorCode.FORBIDDEN
        with pytest.raises(pydbal.DBALError) as info:
            await admin.set_retention("bogus", DAY)
        assert info.value.code == ErrorCode.VALIDATION_ERROR
        assert await admin.set_retention("executions", None) == 30 * DAY
        assert (await admin.retention())["executions"] == 30 * DAY
    conn = await db.connect()  # the app login cannot change defaults or run maintenance
    for sql in (
        "SELECT dbal.set_retention_default('executions', interval '1 day')",
        "CALL dbal.run_maintenance('x')",
        "SELECT dbal.prune_batch('executions', now(), 10)",
        "UPDATE dbal.retention_defaults SET keep = interval '1 day'",
    ):
        with pytest.raises(Exception) as err:
            await conn.execute(sql)
        assert getattr(err.value, "sqlstate", None) == "42501", sql
