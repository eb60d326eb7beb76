"""Issue 12: where pg_cron is installed, the job `pydbal migrate` schedules really clears an expired
lease in the table (not only through the API) within the bound, audited — without any pydbal
process running. Skipped where the server has no pg_cron (the embedded server): there the
in-process scheduler does the same (tests/ops/test_maintenance.py).

Slow by nature (pg_cron 1.4 runs jobs once a minute): one test, waiting at most 80 s.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import asyncpg
import pytest
from dbhelpers import acquire, create_workflow

from pydbal.maintenance import cron_job, schedule_cron, unschedule_cron
from pydbal.migrate import migrate
from pydbal.server import dsn_with

from conftest import APP_LOGIN


async def test_pg_cron_clears_an_expired_lease_within_the_bound(pg_dsn: str) -> None:
    name = f"pydbal_cron_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(pg_dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    dsn = dsn_with(pg_dsn, database=name)
    scheduled = None
    try:
        await migrate(dsn)
        scheduled = await schedule_cron(dsn)
        if scheduled is None:
            pytest.skip("pg_cron is not preloaded or not created in its database on this server")
        job = await cron_job(dsn)
        assert job is not None and "dbal.run_maintenance" in job["command"]
        await admin.execute(f"GRANT CONNECT ON DATABASE {name} TO {APP_LOGIN}")
        app = await asyncpg.connect(dsn_with(dsn, user=APP_LOGIN))
        su = await asyncpg.connect(dsn)
        try:
            workflow = await create_workflow(app)
            assert await acquire(app, workflow, timeout_ms=1) is not None
            expired_at = time.monotonic()
            cleared = None
            while time.monotonic() - expired_at < 80:
                row = await su.fetchrow(
                    "SELECT is_locked FROM dbal.workflows WHERE id = $1", workflow
                )
                if not row["is_locked"]:
                    cleared = time.monotonic() - expired_at
                    break
                await asyncio.sleep(1)
            assert cleared is not None, "pg_cron did not clear the expired lease within 80 s"
            assert cleared <= 75  # a minute's schedule plus the run
            audit = await su.fetchval(
                "SELECT count(*) FROM dbal.audit_log WHERE workflow_id = $1"
                " AND operation = 'lock_expired'",
                workflow,
            )
            assert audit == 1
        finally:
            await app.close()
            await su.close()
    finally:
        if scheduled is not None:
            assert await unschedule_cron(dsn) is True
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
