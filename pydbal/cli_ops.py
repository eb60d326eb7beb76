"""Operator subcommands: ``locks``, ``stats``, ``partitions`` and the ``status`` self-check.

They use an operator's DSN (a superuser: the sweeper, the roll-ups across a workflow's days and
pg_partman maintenance are not for the app role) and act as ``--user`` with role supergod.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from pydbal import queries as q
from pydbal.cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    add_dsn_argument,
    add_user_argument,
    operator_dsn,
    require_superuser,
    run,
    user_of,
)
from pydbal.migrate import Roles, resolve_roles

_SubParsers = Any
SPARKS = "▁▂▃▄▅▆▇█"


# --------------------------------------------------------------------------------------------
# locks


def add_locks_parser(subparsers: _SubParsers) -> None:
    parser = subparsers.add_parser("locks", help="list workflow locks, sweep expired ones")
    sub = parser.add_subparsers(dest="locks_command", required=True, metavar="ACTION")
    lst = sub.add_parser("list", help="workflows of a tenant that hold a live lock")
    lst.add_argument("--tenant", required=True)
    lst.add_argument("--json", action="store_true", help="print JSON")
    add_dsn_argument(lst)
    add_user_argument(lst)
    lst.set_defaults(func=cmd_locks)
    sweep = sub.add_parser(
        "sweep", help="release every expired lock in all tenants (audited; needs a superuser)"
    )
    add_dsn_argument(sweep)
    add_user_argument(sweep)
    sweep.set_defaults(func=cmd_locks)


async def locked_workflows(tenant: Any) -> list[Any]:
    """The tenant's workflows whose lock is live (expired leases read as unlocked)."""
    locked: list[Any] = []
    page = 1
    while True:
        result = await tenant.workflows.list({"is_locked": True}, page=page, limit=100)
        locked.extend(result.items)
        if not result.has_more:
            return locked
        page += 1


async def sweep_locks(dsn: str, user: str) -> int:
    """``dbal.sweep_expired_locks()`` as a superuser; the audit rows name ``user``."""
    conn = await asyncpg.connect(dsn)
    try:
        await require_superuser(conn, "locks sweep")
        async with conn.transaction():
            await conn.execute(
                "SELECT set_config('dbal.user_id', $1, true), "
                "set_config('dbal.user_role', 'supergod', true)",
                user,
            )
            return int(await conn.fetchval(q.SWEEP_EXPIRED_LOCKS))
    finally:
        await conn.close()


def cmd_locks(args: argparse.Namespace) -> int:
    from pydbal.cli_workflows import _open_db

    async def body() -> int:
        dsn = operator_dsn(args)
        if args.locks_command == "sweep":
            count = await sweep_locks(dsn, user_of(args))
            print(f"released {count} expired lock(s)")
            return EXIT_OK
        async with _open_db(dsn) as db:
            tenant = db.tenant(args.tenant, user_id=user_of(args), role="supergod")
            locked = await locked_workflows(tenant)
        rows = [
            {
                "id": str(w.id),
                "name": w.name,
                "lockedBy": w.locked_by,
                "lockedAt": w.locked_at.isoformat() if w.locked_at else None,
                "expiresAt": w.lock_expires_at.isoformat() if w.lock_expires_at else None,
            }
            for w in locked
        ]
        if args.json:
            print(json.dumps(rows, indent=2))
        elif not rows:
            print(f"no live locks in {args.tenant}")
        else:
            from pydbal.cli_analysts import _print_table

            _print_table(
                ["id", "name", "locked_by", "locked_at", "expires_at"],
                [tuple(r.values()) for r in rows],
                sys.stdout,
            )
        return EXIT_OK

    return run(f"locks {args.locks_command}", body)


# --------------------------------------------------------------------------------------------
# stats


_SINCE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")


def parse_since(text: str) -> timedelta:
    """``30m``, ``24h``, ``7d``, ``2w`` → a timedelta."""
    match = _SINCE.match(text)
    if not match:
        raise CommandError(f"--since {text!r}: use a number and m, h, d or w (e.g. 7d)", 2)
    n, unit = int(match.group(1)), match.group(2)
    return {
        "m": timedelta(minutes=n),
        "h": timedelta(hours=n),
        "d": timedelta(days=n),
        "w": timedelta(weeks=n),
    }[unit]


def sparkline(values: list[int]) -> str:
    top = max(values, default=0)
    if top <= 0:
        return SPARKS[0] * len(values)
    return "".join(SPARKS[min(len(SPARKS) - 1, v * (len(SPARKS) - 1) // top)] for v in values)


_PER_DAY = """
SELECT (hour AT TIME ZONE 'UTC')::date AS day,
       sum(success + failure + pending + timeout)::bigint AS total,
       sum(success)::bigint AS success, sum(failure)::bigint AS failure,
       sum(timeout)::bigint AS timeout
  FROM dbal.workflow_stats_hourly
 WHERE tenant_id = $1 AND workflow_id = $2 AND hour >= date_trunc('hour', $3::timestamptz)
 GROUP BY 1 ORDER BY 1
"""


def add_stats_parser(subparsers: _SubParsers) -> None:
    parser = subparsers.add_parser(
        "stats", help="execution statistics of one workflow with a per-day chart"
    )
    parser.add_argument("--tenant", required=True)
    parser.add_argument("workflow", metavar="WORKFLOW", help="workflow id or name")
    parser.add_argument("--since", default="7d", help="window: 30m, 24h, 7d, 2w (default 7d)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_dsn_argument(parser)
    add_user_argument(parser)
    parser.set_defaults(func=cmd_stats)


def _fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} ms" if value < 10_000 else f"{value / 1000:.2f} s"


def cmd_stats(args: argparse.Namespace) -> int:
    from pydbal.cli_workflows import _open_db

    async def body() -> int:
        window = parse_since(args.since)
        dsn = operator_dsn(args)
        now = datetime.now(UTC)
        start = now - window
        async with _open_db(dsn) as db:
            tenant = db.tenant(args.tenant, user_id=user_of(args), role="supergod")
            wf = None
            try:
                wf = await tenant.workflows.get(UUID(args.workflow))
            except ValueError:
                wf = await tenant.workflows.find_first({"name": args.workflow})
            if wf is None:
                raise CommandError(f"no workflow {args.workflow!r} in tenant {args.tenant}")
            stats = await tenant.workflows.get_execution_stats(wf.id, start=start)
            rows = await db.fetch(_PER_DAY, args.tenant, wf.id, start)
        by_day = {r["day"]: r for r in rows}
        days: list[date] = []
        d = start.date()
        while d <= now.date():
            days.append(d)
            d += timedelta(days=1)
        counts = [int(by_day[d]["total"]) if d in by_day else 0 for d in days]
        failures = [
            int(by_day[d]["failure"]) + int(by_day[d]["timeout"]) if d in by_day else 0
            for d in days
        ]
        if args.json:
            data = stats.model_dump(mode="json", by_alias=True)
            data["workflow"] = {"id": str(wf.id), "name": wf.name}
            data["since"] = start.isoformat()
            data["perDay"] = [
                {"day": d.isoformat(), "total": c, "failed": f}
                for d, c, f in zip(days, counts, failures, strict=True)
            ]
            print(json.dumps(data, indent=2))
            return EXIT_OK
        rate = "-" if stats.success_rate is None else f"{stats.success_rate * 100:.1f}%"
        print(f"workflow  {wf.name} ({wf.id})")
        print(f"window    since {start:%Y-%m-%d %H:%M} UTC ({args.since})")
        print(
            f"runs      {stats.total}: {stats.success} success, {stats.failure} failure, "
            f"{stats.timeout} timeout, {stats.pending} pending"
        )
        print(f"success   {rate}")
        print(
            f"duration  avg {_fmt_ms(stats.average_ms)}, min {_fmt_ms(stats.min_ms)}, "
            f"max {_fmt_ms(stats.max_ms)}"
        )
        print(
            f"          p50 {_fmt_ms(stats.p50_ms)}, p95 {_fmt_ms(stats.p95_ms)}, "
            f"p99 {_fmt_ms(stats.p99_ms)}"
        )
        print(f"per day   {sparkline(counts)}  ({days[0]} .. {days[-1]}, UTC)")
        top = max(counts, default=0)
        for d, c, f in zip(days[-31:], counts[-31:], failures[-31:], strict=True):
            bar = "█" * (0 if top == 0 else max(1 if c else 0, round(40 * c / top)))
            failed = f"  ({f} failed)" if f else ""
            print(f"  {d}  {bar:<40} {c}{failed}")
        return EXIT_OK

    return run("stats", body)


# --------------------------------------------------------------------------------------------
# partitions


_PARTITIONS = """
SELECT p.oid::regclass::text AS parent, c.oid::regclass::text AS partition,
       pg_get_expr(c.relpartbound, c.oid) AS bounds, c.reltuples::bigint AS row_estimate
  FROM pg_inherits i
  JOIN pg_class c ON c.oid = i.inhrelid
  JOIN pg_class p ON p.oid = i.inhparent
 WHERE p.relnamespace = 'dbal'::regnamespace AND p.relkind = 'p' AND c.relkind IN ('r', 'p')
 ORDER BY 1, 2
"""


def add_partitions_parser(subparsers: _SubParsers) -> None:
    parser = subparsers.add_parser(
        "partitions", help="list partitions of dbal's tables; run pg_partman maintenance"
    )
    sub = parser.add_subparsers(dest="partitions_command", required=True, metavar="ACTION")
    lst = sub.add_parser("list", help="partitions with their bounds and row estimates")
    lst.add_argument("--json", action="store_true", help="print JSON")
    add_dsn_argument(lst)
    lst.set_defaults(func=cmd_partitions)
    maintain = sub.add_parser(
        "maintain", help="CALL partman.run_maintenance_proc() where pg_partman is installed"
    )
    add_dsn_argument(maintain)
    maintain.set_defaults(func=cmd_partitions)


async def list_partitions(conn: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(_PARTITIONS)]


def cmd_partitions(args: argparse.Namespace) -> int:
    async def body() -> int:
        dsn = operator_dsn(args)
        conn = await asyncpg.connect(dsn)
        try:
            if args.partitions_command == "list":
                parts = await list_partitions(conn)
                if args.json:
                    print(json.dumps(parts, indent=2))
                else:
                    from pydbal.cli_analysts import _print_table

                    _print_table(
                        ["parent", "partition", "bounds", "rows (estimate)"],
                        [
                            (
                                p["parent"],
                                p["partition"],
                                p["bounds"],
                                "-" if p["row_estimate"] < 0 else p["row_estimate"],
                            )
                            for p in parts
                        ],
                        sys.stdout,
                    )
                return EXIT_OK
            installed = await conn.fetchval(q.EXTENSION_INSTALLED, "pg_partman")
            if not installed:
                print(
                    "pg_partman is not installed in this database: nothing to maintain "
                    "(executions and audit rows live in their default partitions)"
                )
                return EXIT_OK
            await require_superuser(conn, "partitions maintain")
            before = len(await list_partitions(conn))
            await conn.execute("CALL partman.run_maintenance_proc()")
            after = len(await list_partitions(conn))
            print(f"pg_partman maintenance done: {before} partition(s) before, {after} after")
            return EXIT_OK
        finally:
            await conn.close()

    return run(f"partitions {args.partitions_command}", body)


# --------------------------------------------------------------------------------------------
# status self-check


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""


_TENANT_TABLES = """
SELECT c.oid::regclass::text AS name, c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'dbal' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
   AND EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id'
                AND NOT a.attisdropped)
 ORDER BY 1
"""

_PARTITION_PRIVILEGES = """
SELECT i.inhrelid::regclass::text AS child, r.rolname AS role
  FROM pg_inherits i
  JOIN pg_class p ON p.oid = i.inhparent
  CROSS JOIN pg_roles r
 WHERE p.relnamespace = 'dbal'::regnamespace AND p.relkind = 'p'
   AND r.rolname = ANY($1::text[])
   AND (has_table_privilege(r.oid, i.inhrelid,
                            'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
        OR has_any_column_privilege(r.oid, i.inhrelid, 'SELECT, INSERT, UPDATE, REFERENCES'))
 ORDER BY 1, 2
"""

_DEFINERS = """
SELECT p.oid::regprocedure::text AS fn, p.proconfig,
       p.proacl IS NULL OR EXISTS (SELECT FROM aclexplode(p.proacl) a
                                    WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')
           AS public_exec
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname LIKE 'dbal%' AND p.prosecdef
 ORDER BY 1
"""

_ANALYST_WRITES = """
SELECT c.oid::regclass::text AS rel
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname LIKE 'dbal%' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND (has_table_privilege($1, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
        OR has_any_column_privilege($1, c.oid, 'INSERT, UPDATE'))
UNION ALL
SELECT 'schema ' || n.nspname FROM pg_namespace n
 WHERE n.nspname LIKE 'dbal%' AND has_schema_privilege($1, n.oid, 'CREATE')
"""


# What an analyst login (PUBLIC's rights plus the analyst role) could use as a side channel or
# to write (sql/97_catalog_hardening.sql); every column must be false / empty.
_ANALYST_SIDE_CHANNELS = """
SELECT ARRAY(SELECT c.oid::regclass::text FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'dbal' AND c.relkind IN ('r', 'p')
                AND c.relname NOT IN ('analyst_grants', 'schema_migrations')
                AND (has_table_privilege($1, c.oid, 'SELECT')
                     OR has_any_column_privilege($1, c.oid, 'SELECT'))) AS base_tables,
       has_database_privilege($1, current_database(), 'TEMPORARY') AS temp,
       has_function_privilege($1, 'pg_catalog.lo_create(oid)', 'EXECUTE') AS lo,
       has_function_privilege($1, 'pg_catalog.pg_advisory_lock(bigint)', 'EXECUTE') AS advisory,
       has_table_privilege($1, 'pg_catalog.pg_stat_all_tables', 'SELECT') AS stats,
       has_column_privilege($1, 'pg_catalog.pg_class', 'reltuples', 'SELECT') AS reltuples
"""


def _search_path_ok(proconfig: list[str] | None) -> bool:
    settings = dict(s.split("=", 1) for s in (proconfig or []) if "=" in s)
    path = [p.strip().strip('"') for p in settings.get("search_path", "").split(",") if p.strip()]
    return bool(path) and path[-1] == "pg_temp"


async def self_check(conn: Any, roles: Roles | None = None) -> list[Check]:
    """The catalog guarantees pydbal relies on, each as a pass/fail :class:`Check`."""
    roles = roles or resolve_roles()
    if not await conn.fetchval(q.SCHEMA_EXISTS):
        return [Check("schema installed", False, "dbal.workflows does not exist: run migrate")]
    checks: list[Check] = []
    tables = await conn.fetch(_TENANT_TABLES)
    bad = [r["name"] for r in tables if not (r["enabled"] and r["forced"])]
    checks.append(
        Check(
            f"RLS enabled and forced on every tenant table ({len(tables)})",
            not bad and bool(tables),
            ", ".join(bad),
        )
    )
    granted = await conn.fetch(_PARTITION_PRIVILEGES, [roles.app, roles.analyst])
    checks.append(
        Check(
            "no privileges on partitions for the app and analyst roles",
            not granted,
            ", ".join(f"{r['role']} on {r['child']}" for r in granted[:10]),
        )
    )
    definers = await conn.fetch(_DEFINERS)
    no_path = [r["fn"] for r in definers if not _search_path_ok(r["proconfig"])]
    checks.append(
        Check(
            f"SECURITY DEFINER functions pin search_path, pg_temp last ({len(definers)})",
            not no_path,
            ", ".join(no_path),
        )
    )
    public = [r["fn"] for r in definers if r["public_exec"]]
    checks.append(
        Check("no SECURITY DEFINER function executable by PUBLIC", not public, ", ".join(public))
    )
    analyst_exists = await conn.fetchval(
        "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", roles.analyst
    )
    if analyst_exists:
        writes = [r["rel"] for r in await conn.fetch(_ANALYST_WRITES, roles.analyst)]
        checks.append(
            Check(
                "the analyst role has no write privilege on pydbal's tables",
                not writes,
                ", ".join(writes),
            )
        )
        side = dict(await conn.fetchrow(_ANALYST_SIDE_CHANNELS, roles.analyst))
        checks.append(
            Check(
                "the analyst role reads no base table (only dbal_analytics views)",
                not side["base_tables"],
                ", ".join(side["base_tables"] or []),
            )
        )
        checks.append(
            Check(
                "analysts cannot create temporary tables in this database",
                not side["temp"],
                "PUBLIC has TEMPORARY: run `pydbal analysts grant` or migrate",
            )
        )
        checks.append(
            Check(
                "analysts cannot create large objects or take advisory locks",
                not side["lo"] and not side["advisory"],
                "lo_create / pg_advisory_lock executable by PUBLIC",
            )
        )
        checks.append(
            Check(
                "analysts cannot read statistics views or row estimates",
                not side["stats"] and not side["reltuples"],
                "pg_stat_* or pg_class.reltuples readable by PUBLIC",
            )
        )
    return checks


def print_checks(checks: list[Check], out: Any = None) -> None:
    out = out if out is not None else sys.stdout
    out.write("self-check:\n")
    for c in checks:
        mark = "pass" if c.ok else "FAIL"
        detail = f": {c.detail}" if c.detail and not c.ok else ""
        out.write(f"  [{mark}] {c.name}{detail}\n")


async def _client_health(dsn: str, redis_url: str | None) -> Any:
    """``Database.health()`` of a short-lived client, when the schema lets one connect."""
    import os

    import pydbal

    redis = redis_url or os.environ.get("PYDBAL_REDIS_URL")
    try:
        database = await pydbal.connect(
            dsn,
            redis,
            min_size=1,
            max_size=1,
            auto_migrate=False,
            cache={"revalidate": False, "redis_connect_timeout": 0.5},
        )
    except pydbal.SchemaOutdatedError:
        return None
    try:
        return await database.health()
    finally:
        await database.close(grace=1.0)


def _health_line(health: Any) -> str:
    db = health.database
    latency = f"{db.latency_ms:.1f} ms" if db.latency_ms is not None else "no answer"
    if not health.redis.configured:
        redis = "not configured"
    else:
        redis = "answering" if health.redis.available else "NOT answering"
    pool = health.pool
    return f"{health.status} (database {latency}, redis {redis}, pool {pool.in_use}/{pool.max})"


def cmd_status(args: argparse.Namespace) -> int:
    """``pydbal status``: migrations, pg_partman, the self-check and the health of a client
    (database latency, Redis, pool). Exit 0 healthy, 1 degraded (a failed check, a schema that
    is not current, Redis not answering), 2 unreachable (or a migration edited after applying).
    With ``--json`` an unreachable database is reported as JSON too."""
    from pydbal.migrate import status

    async def body() -> int:
        dsn = operator_dsn(args)
        try:
            info = await status(dsn)
        except (OSError, asyncpg.PostgresError) as exc:
            if not args.json:
                raise
            reason = f"{type(exc).__name__}: {exc}"
            print(json.dumps({"status": "unreachable", "problems": [reason]}, indent=2))
            return EXIT_USAGE
        checks: list[Check] = []
        if info["schema_version"] is not None:
            from pydbal.maintenance import cron_job, last_run

            conn = await asyncpg.connect(dsn)
            try:
                checks = await self_check(conn)
                info["last_maintenance"] = await last_run(conn)
            finally:
                await conn.close()
            info["cron_job"] = await cron_job(dsn)
        health = await _client_health(dsn, args.redis)
        problems = [f"self-check failed: {c.name}" for c in checks if not c.ok]
        if info["schema_version"] != info["expected_version"]:
            problems.append(
                f"schema is {info['schema_version'] or 'not installed'}, "
                f"pydbal needs {info['expected_version']}"
            )
        if health is not None:
            problems.extend(health.problems)
        overall = "degraded" if problems else "healthy"
        if health is not None and health.status == "unreachable":
            overall = "unreachable"
        if args.json:
            info["self_check"] = [{"check": c.name, "ok": c.ok, "detail": c.detail} for c in checks]
            info["health"] = health.model_dump(mode="json") if health is not None else None
            info["status"] = overall
            info["problems"] = problems
            print(json.dumps(info, indent=2, default=str))
        else:
            print(f"schema version: {info['schema_version'] or '(not installed)'}")
            print(f"newest known:   {info['expected_version'] or '(none)'}")
            print(f"applied:        {len(info['applied'])}")
            print(f"pending:        {', '.join(info['pending']) or '(none)'}")
            if info["edited"]:
                print(f"EDITED after applying: {', '.join(info['edited'])}")
            print(f"pg_partman:     {'installed' if info['pg_partman'] else 'not installed'}")
            if info["schema_version"] is not None:
                from pydbal.cli_maintenance import print_maintenance_status

                print_maintenance_status(info)
            if health is not None:
                print(f"health:         {_health_line(health)}")
            if checks:
                print_checks(checks)
            for problem in problems:
                print(f"problem: {problem}")
        if info["edited"] or overall == "unreachable":
            return EXIT_USAGE
        return EXIT_OK if overall == "healthy" else EXIT_FAILED

    return run("status", body)
