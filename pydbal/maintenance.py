"""The scheduler: expired-lock sweep, pg_partman maintenance and retention, with no crontab.

One job does all three: ``CALL dbal.run_maintenance(...)`` (sql/45_maintenance.sql). Who runs it:

- **pg_cron**, where the server has it: ``pydbal migrate`` (or :func:`schedule_cron`) registers
  ``pydbal-maintenance:<database>`` every minute with ``cron.schedule_in_database`` in the
  server's ``cron.database_name`` database, so one pg_cron serves every database of the server.
  An expired lease is then cleared within ~60 s of expiring.
- otherwise a **background task of pydbal processes** (:class:`Scheduler`): every ``interval``
  seconds (default 15) it opens its own connection and calls the procedure. The procedure's
  try-lock elects one runner per database at a time (the others skip, they never wait), and a
  run younger than ~``interval`` makes the others skip too, so N processes sweep once per
  interval, not N times. It needs a superuser DSN (the procedure commits between steps, so it
  cannot be a SECURITY DEFINER entry point): ``connect(maintenance=True)`` with an operator DSN,
  or ``maintenance_dsn=...``; the embedded server's DSN is one and runs it by default.

Failures: a failing run is logged (once per distinct error) and retried at the next interval;
the run's row in ``dbal.maintenance_runs`` keeps its error, which ``pydbal status`` shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg

from pydbal import queries as q
from pydbal.server import dsn_with

log = logging.getLogger("pydbal.maintenance")

CRON_SCHEDULE = "* * * * *"
RUN_SQL = (
    "CALL dbal.run_maintenance(p_runner => $1::text, p_min_interval_s => $2::double precision, "
    "p_batch => $3::integer, p_max_batches => $4::integer)"
)
LAST_RUN_SQL = (
    "SELECT id, runner, started_at, finished_at, locks_cleared, partitions_dropped, removed, "
    "error FROM dbal.maintenance_runs ORDER BY started_at DESC, id DESC LIMIT 1"
)
KINDS = ("executions", "stats_hourly", "stats_daily", "audit")


def runner_name() -> str:
    return f"pydbal:{socket.gethostname()}:{os.getpid()}"


def cron_job_name(database: str) -> str:
    return f"pydbal-maintenance:{database}"


async def run_once(
    dsn: str,
    *,
    runner: str | None = None,
    min_interval: float = 0.0,
    batch: int = 5000,
    max_batches: int = 100,
) -> dict[str, Any] | None:
    """One maintenance run on its own connection (as a superuser); the run's row, or None when
    another runner holds the lock or ran less than ``min_interval`` seconds ago."""
    conn = await asyncpg.connect(dsn)
    try:
        before = await conn.fetchval("SELECT coalesce(max(id), 0) FROM dbal.maintenance_runs")
        await conn.execute(RUN_SQL, runner or runner_name(), min_interval, batch, max_batches)
        row = await conn.fetchrow(LAST_RUN_SQL)
    finally:
        await conn.close()
    if row is None or row["id"] <= before or row["runner"] != (runner or runner_name()):
        return None
    return dict(row)


async def last_run(conn: Any) -> dict[str, Any] | None:
    """The latest row of ``dbal.maintenance_runs`` (superuser connection), or None."""
    if not await conn.fetchval("SELECT to_regclass('dbal.maintenance_runs') IS NOT NULL"):
        return None
    row = await conn.fetchrow(LAST_RUN_SQL)
    return dict(row) if row is not None else None


# -- pg_cron ---------------------------------------------------------------------------------


async def _cron_database(conn: Any) -> str | None:
    loaded = await conn.fetchval(
        "SELECT 'pg_cron' = ANY(string_to_array(replace(current_setting("
        "'shared_preload_libraries'), ' ', ''), ','))"
    )
    if not loaded:
        return None
    name = await conn.fetchval("SELECT current_setting('cron.database_name', true)")
    return str(name) if name else None


@contextlib.asynccontextmanager
async def _cron(dsn: str) -> AsyncIterator[tuple[Any, str] | None]:
    """A connection to pg_cron's database and the name of ``dsn``'s database, or None when the
    server has no pg_cron (not preloaded, or the extension not created in its database)."""
    conn = await asyncpg.connect(dsn)
    try:
        cron_db = await _cron_database(conn)
        database = str(await conn.fetchval(q.CURRENT_DATABASE))
    finally:
        await conn.close()
    if cron_db is None:
        yield None
        return
    cron = await asyncpg.connect(dsn_with(dsn, database=cron_db))
    try:
        present = await cron.fetchval(q.EXTENSION_INSTALLED, "pg_cron")
        yield (cron, database) if present else None
    finally:
        await cron.close()


async def schedule_cron(dsn: str, *, schedule: str = CRON_SCHEDULE) -> str | None:
    """Register this database's maintenance job with pg_cron; the job name, or None when the
    server has no pg_cron (not preloaded, or the extension is not created in its database)."""
    async with _cron(dsn) as found:
        if found is None:
            return None
        cron, database = found
        name = cron_job_name(database)
        await cron.execute(
            "SELECT cron.schedule_in_database($1, $2, $3, $4)",
            name,
            schedule,
            "CALL dbal.run_maintenance('pg_cron', 30)",
            database,
        )
        return name


async def unschedule_cron(dsn: str) -> bool:
    """Remove this database's pg_cron job; whether there was one."""
    async with _cron(dsn) as found:
        if found is None:
            return False
        cron, database = found
        deleted = await cron.fetchval(
            "WITH d AS (DELETE FROM cron.job WHERE jobname = $1 RETURNING 1) "
            "SELECT count(*) FROM d",
            cron_job_name(database),
        )
        return bool(deleted)


async def cron_job(dsn: str) -> dict[str, Any] | None:
    """This database's pg_cron job (schedule, command, active, last run), or None."""
    async with _cron(dsn) as found:
        if found is None:
            return None
        cron, database = found
        row = await cron.fetchrow(
            "SELECT j.jobid, j.schedule, j.command, j.active, "
            "(SELECT max(d.start_time) FROM cron.job_run_details d WHERE d.jobid = j.jobid) "
            "AS last_start FROM cron.job j WHERE j.jobname = $1",
            cron_job_name(database),
        )
        return dict(row) if row is not None else None


# -- the in-process scheduler -------------------------------------------------------------------


class Scheduler:
    """Runs ``dbal.run_maintenance`` every ``interval`` seconds from this process (see the
    module doc for the election). ``start()`` / ``await stop()``; ``runs`` counts the runs this
    process performed (skipped ones excluded)."""

    def __init__(
        self,
        dsn: str,
        *,
        interval: float = 15.0,
        batch: int = 5000,
        max_batches: int = 100,
        runner: str | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be > 0")
        self.dsn = dsn
        self.interval = interval
        self.batch = batch
        self.max_batches = max_batches
        self.runner = runner or runner_name()
        self.runs = 0
        self.last: dict[str, Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_error: str | None = None
        self._idle: asyncio.Event | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self, grace: float = 10.0) -> None:
        """Stop; a run in progress gets ``grace`` seconds to finish (its row complete)."""
        task, self._task = self._task, None
        if task is not None:
            if self._idle is not None and not self._idle.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._idle.wait()), grace)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def tick(self) -> dict[str, Any] | None:
        """One attempt now; the run's row or None when skipped."""
        row = await run_once(
            self.dsn,
            runner=self.runner,
            min_interval=self.interval * 0.9,
            batch=self.batch,
            max_batches=self.max_batches,
        )
        if row is not None:
            self.runs += 1
            self.last = row
        return row

    async def _loop(self) -> None:
        self._idle = asyncio.Event()
        while True:
            self._idle.clear()
            try:
                await self.tick()
                self._last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                text = f"{type(exc).__name__}: {exc}"
                if text != self._last_error:
                    log.warning(
                        "maintenance run failed (retried every %.0f s): %s", self.interval, text
                    )
                self._last_error = text
            finally:
                self._idle.set()
            await asyncio.sleep(self.interval)


# -- retention ----------------------------------------------------------------------------------


def parse_keep(text: str) -> timedelta | None:
    """``30d``, ``12h``, ``2y``, ``8w`` → a timedelta; ``default``/``none`` → None (no override)."""
    value = text.strip().lower()
    if value in ("default", "none", ""):
        return None
    units = {"h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
    if value[-1] in units and value[:-1].isdigit():
        return timedelta(seconds=int(value[:-1]) * units[value[-1]])
    raise ValueError(f"bad retention {text!r}: use e.g. 12h, 30d, 8w, 2y or 'default'")


def format_keep(keep: timedelta) -> str:
    if keep.seconds == 0 and keep.days % 365 == 0 and keep.days:
        return f"{keep.days // 365}y"
    if keep.seconds == 0:
        return f"{keep.days}d"
    return f"{int(keep.total_seconds() // 3600)}h"


async def show_retention(conn: Any, tenant: str | None = None) -> list[dict[str, Any]]:
    """Defaults, or a tenant's effective retention (superuser connection)."""
    if tenant is None:
        rows = await conn.fetch(
            "SELECT kind, keep, 'default' AS source, keep AS default_keep, updated_by "
            "FROM dbal.retention_defaults ORDER BY kind"
        )
    else:
        rows = await conn.fetch(
            "SELECT d.kind, coalesce(o.keep, d.keep) AS keep, "
            "CASE WHEN o.keep IS NULL THEN 'default' ELSE 'tenant' END AS source, "
            "d.keep AS default_keep, coalesce(o.updated_by, d.updated_by) AS updated_by "
            "FROM dbal.retention_defaults d LEFT JOIN dbal.retention_overrides o "
            "ON o.tenant_id = $1 AND o.kind = d.kind ORDER BY d.kind",
            tenant,
        )
    return [dict(r) for r in rows]


async def set_retention(
    conn: Any,
    kind: str,
    keep: timedelta | None,
    *,
    tenant: str | None = None,
    user: str = "operator",
) -> None:
    """Set a default (``tenant=None``; ``keep`` required) or a tenant's override (``keep=None``
    removes it), as an operator (superuser connection)."""
    if tenant is None:
        if keep is None:
            raise ValueError("a default needs a value")
        await conn.execute("SELECT dbal.set_retention_default($1, $2)", kind, keep)
        return
    await conn.execute(
        "SELECT dbal.set_retention(p_kind => $1, p_keep => $2, p_tenant => $3, p_user => $4, "
        "p_role => 'supergod')",
        kind,
        keep,
        tenant,
        user,
    )
