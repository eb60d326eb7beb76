"""pydbal: multi-tenant workflow storage on PostgreSQL — schema, operations and analysts.

Every command has ``--help``. Exit codes: 0 all went well, 1 some items failed, 2 usage error or
no database (docs/cli.md). Maintainers: each subcommand is ``add_<name>_parser(subparsers)``
setting ``func=cmd_<name>``, listed in ``_COMMANDS`` below.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pydbal import __version__

_SubParsers = Any  # argparse's _SubParsersAction is private


def _add_dsn_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dsn",
        help="PostgreSQL DSN (default: $PYDBAL_DSN, else an embedded server under $PYDBAL_HOME)",
    )


# --- migrate ---------------------------------------------------------------------------------


def add_migrate_parser(subparsers: _SubParsers) -> None:
    parser = subparsers.add_parser(
        "migrate", help="install or upgrade the schema (needs a superuser)"
    )
    _add_dsn_argument(parser)
    parser.add_argument(
        "--mode",
        choices=["auto", "migrations"],
        default="auto",
        help="fresh install from sql/ (auto) or by replaying migrations/ (migrations)",
    )
    parser.add_argument("--owner-role", help="owner role name (default $PYDBAL_OWNER_ROLE)")
    parser.add_argument("--app-role", help="application role name (default $PYDBAL_APP_ROLE)")
    parser.add_argument("--analyst-role", help="analyst role name (default $PYDBAL_ANALYST_ROLE)")
    parser.add_argument(
        "--lock-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="wait at most this long for another runner's lock, then name it (default 60)",
    )
    parser.add_argument(
        "--no-schedule",
        action="store_true",
        help="do not register the maintenance job with pg_cron (done by default where installed)",
    )
    parser.set_defaults(func=cmd_migrate)


def cmd_migrate(args: argparse.Namespace) -> int:
    from pydbal.maintenance import schedule_cron
    from pydbal.migrate import MigrationError, migrate
    from pydbal.server import EmbeddedServerUnavailable, resolve_dsn

    async def body(dsn: str) -> tuple[list[str], str | None]:
        applied = await migrate(
            dsn,
            mode=args.mode,
            owner_role=args.owner_role,
            app_role=args.app_role,
            analyst_role=args.analyst_role,
            lock_timeout=args.lock_timeout,
        )
        job = None if args.no_schedule else await schedule_cron(dsn)
        return applied, job

    try:
        dsn = resolve_dsn(args.dsn)
        applied, job = asyncio.run(body(dsn))
    except EmbeddedServerUnavailable as exc:  # no database: exit 2, as docs/cli.md says
        print(f"pydbal migrate: {exc}", file=sys.stderr)
        return 2
    except MigrationError as exc:
        print(f"pydbal migrate: {exc}", file=sys.stderr)
        return 1
    if applied:
        print("applied: " + ", ".join(applied))
    else:
        print("up to date")
    if job:
        print(f"maintenance: pg_cron job {job} (every minute)")
    elif not args.no_schedule:
        print("maintenance: no pg_cron here; pydbal processes run it (connect(maintenance=True))")
    return 0


# --- distribute ------------------------------------------------------------------------------


def add_distribute_parser(subparsers: _SubParsers) -> None:
    parser = subparsers.add_parser(
        "distribute",
        help="distribute a migrated database by tenant on its Citus cluster, data included",
    )
    parser.add_argument("--dsn", required=True, help="superuser DSN of the Citus coordinator")
    parser.add_argument("--owner-role", help="owner role name (default $PYDBAL_OWNER_ROLE)")
    parser.add_argument("--app-role", help="application role name (default $PYDBAL_APP_ROLE)")
    parser.add_argument("--analyst-role", help="analyst role name (default $PYDBAL_ANALYST_ROLE)")
    parser.set_defaults(func=cmd_distribute)


def cmd_distribute(args: argparse.Namespace) -> int:
    from pydbal.distribute import distribute
    from pydbal.migrate import MigrationError

    try:
        done = asyncio.run(
            distribute(
                args.dsn,
                owner_role=args.owner_role,
                app_role=args.app_role,
                analyst_role=args.analyst_role,
            )
        )
    except MigrationError as exc:
        print(f"pydbal distribute: {exc}", file=sys.stderr)
        return 1
    print(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in done.items()))
    return 0


# --- status ----------------------------------------------------------------------------------


def add_status_parser(subparsers: _SubParsers) -> None:
    parser = subparsers.add_parser(
        "status",
        help="migrations, pg_partman, a security self-check and health (exit 0 healthy, "
        "1 degraded, 2 unreachable)",
    )
    _add_dsn_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    parser.add_argument("--redis", help="Redis URL to check (default: $PYDBAL_REDIS_URL)")
    parser.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    """Migrations, pg_partman and the catalog self-check (see :mod:`pydbal.cli_ops`)."""
    from pydbal.cli_ops import cmd_status as status_with_self_check

    return status_with_self_check(args)


# --- demo ------------------------------------------------------------------------------------


def add_demo_parser(subparsers: _SubParsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="walk through the API with two tenants (embedded server without --dsn)"
    )
    _add_dsn_argument(parser)
    parser.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from pydbal.database import SchemaOutdatedError
    from pydbal.demo import main as demo
    from pydbal.errors import DBALError
    from pydbal.server import EmbeddedServerUnavailable

    try:
        return demo(args.dsn)
    except EmbeddedServerUnavailable as exc:  # no database: exit 2
        print(f"pydbal demo: {exc}", file=sys.stderr)
        return 2
    except (SchemaOutdatedError, DBALError) as exc:
        print(f"pydbal demo: {exc}", file=sys.stderr)
        return 1


# --- entry point -----------------------------------------------------------------------------

from pydbal.cli_analysts import add_analysts_parser, add_sql_parser  # noqa: E402
from pydbal.cli_maintenance import add_maintenance_parser, add_retention_parser  # noqa: E402
from pydbal.cli_ops import add_locks_parser, add_partitions_parser, add_stats_parser  # noqa: E402
from pydbal.cli_purge import add_purge_parser  # noqa: E402
from pydbal.cli_workflows import (  # noqa: E402
    add_export_parser,
    add_import_parser,
    add_validate_parser,
)

_COMMANDS: list[Callable[[_SubParsers], None]] = [
    add_migrate_parser,
    add_distribute_parser,
    add_status_parser,
    add_export_parser,
    add_import_parser,
    add_validate_parser,
    add_locks_parser,
    add_stats_parser,
    add_partitions_parser,
    add_purge_parser,
    add_maintenance_parser,
    add_retention_parser,
    add_analysts_parser,
    add_sql_parser,
    add_demo_parser,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pydbal",
        description=__doc__.splitlines()[0],
        epilog="Exit codes: 0 all went well, 1 some items failed, 2 usage error or no database. "
        "Database commands take --dsn (default $PYDBAL_DSN, else an embedded server).",
    )
    parser.add_argument("--version", action="version", version=f"pydbal {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
