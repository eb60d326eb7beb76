"""``pydbal status``: migrations, pg_partman, the scheduler, a catalog self-check and the health
of a client; its exit code is meant for probes (0 healthy, 1 degraded, 2 unreachable).

The self-check (:func:`self_check`) reads the catalog for the guarantees pydbal relies on: RLS
enabled and forced on every tenant table, no privileges on partitions for the app and analyst
roles, SECURITY DEFINER functions pinning ``search_path`` and closed to PUBLIC, and an analyst
role that can neither write, read base tables, nor use the side channels of
sql/97_catalog_hardening.sql.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any

import asyncpg

from pydbal import queries as q
from pydbal.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    SubParsers,
    add_options,
    operator_dsn,
    run,
)
from pydbal.schema import Roles, resolve_roles


def add_status_parser(subparsers: SubParsers) -> None:
    """``pydbal status [--json] [--redis URL]``."""
    parser = subparsers.add_parser(
        "status",
        help="migrations, pg_partman, a security self-check and health (exit 0 healthy, "
        "1 degraded, 2 unreachable)",
        description="Schema version and pending migrations, pg_partman, the maintenance "
        "scheduler and its last run, a self-check of the catalog's security guarantees, and the "
        "health of a client (database latency, Redis, pool). Exit 0 healthy, 1 degraded (a "
        "failed check, a schema that is not current, Redis not answering), 2 unreachable, no "
        "database, or a migration edited after it was applied.",
    )
    parser.add_argument(
        "--redis", metavar="URL", help="Redis URL to check (default: $PYDBAL_REDIS_URL)"
    )
    add_options(parser, cmd_status, json="the status (also for an unreachable database)")


@dataclass(frozen=True)
class Check:
    """One self-check: what is guaranteed (``name``), whether it holds, what breaks it."""

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
    """Whether a function's settings pin ``search_path`` with ``pg_temp`` last."""
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
    """``[pass]``/``[FAIL]`` lines, a failure with what breaks it."""
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
    """``healthy (database 1.2 ms, redis answering, pool 1/4)`` from a ``Health``."""
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
                from pydbal.cli.maintenance import print_maintenance_status

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
