"""``pydbal migrate`` (install or upgrade the schema) and ``pydbal distribute`` (spread a migrated
database over its Citus cluster). Both need a superuser DSN; see :mod:`pydbal.migrate` and
:mod:`pydbal.distribute` for what they do in the database."""

from __future__ import annotations

import argparse

from pydbal.cli.common import EXIT_OK, SubParsers, add_options, operator_dsn, run


def _add_role_arguments(parser: argparse.ArgumentParser) -> None:
    """``--owner-role``, ``--app-role``, ``--analyst-role``: the names the schema grants to."""
    for kind in ("owner", "app", "analyst"):
        parser.add_argument(
            f"--{kind}-role",
            help=f"{kind} role name (default $PYDBAL_{kind.upper()}_ROLE, else pydbal_{kind})",
        )


def add_migrate_parser(subparsers: SubParsers) -> None:
    """``pydbal migrate``."""
    parser = subparsers.add_parser(
        "migrate",
        help="install or upgrade the schema (needs a superuser)",
        description="Installs the schema on a fresh database, or applies the pending "
        "migrations; a second run changes nothing. Creates the owner, app and analyst roles "
        "where missing and registers the maintenance job with pg_cron where it is installed. "
        "Needs a superuser DSN. Exit 0 done or up to date, 1 the schema cannot be installed or "
        "upgraded (not a superuser, a migration edited after it was applied, another runner's "
        "lock held past --lock-timeout, ...), 2 usage error or no database.",
    )
    parser.add_argument(
        "--mode",
        choices=["auto", "migrations"],
        default="auto",
        help="fresh install from sql/ (auto) or by replaying migrations/ (migrations)",
    )
    _add_role_arguments(parser)
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
    add_options(parser, cmd_migrate, dsn="a superuser")


def cmd_migrate(args: argparse.Namespace) -> int:
    """Migrate, then schedule maintenance; exit 0, 1 (migration refused or failed) or 2."""
    from pydbal.maintenance import schedule_cron
    from pydbal.migrate import migrate

    async def body() -> int:
        dsn = operator_dsn(args)
        applied = await migrate(
            dsn,
            mode=args.mode,
            owner_role=args.owner_role,
            app_role=args.app_role,
            analyst_role=args.analyst_role,
            lock_timeout=args.lock_timeout,
        )
        job = None if args.no_schedule else await schedule_cron(dsn)
        if applied:
            print("applied: " + ", ".join(applied))
        else:
            print("up to date")
        if job:
            print(f"maintenance: pg_cron job {job} (every minute)")
        elif not args.no_schedule:
            print(
                "maintenance: no pg_cron here; pydbal processes run it (connect(maintenance=True))"
            )
        return EXIT_OK

    return run("migrate", body)


def add_distribute_parser(subparsers: SubParsers) -> None:
    """``pydbal distribute --dsn COORDINATOR``."""
    parser = subparsers.add_parser(
        "distribute",
        help="distribute a migrated database by tenant on its Citus cluster, data included",
        description="Distributes the tables of a database migrated on a single node by tenant "
        "over its Citus workers (add them first), rows included; idempotent. On a fresh Citus "
        "database `pydbal migrate` does this itself. Exit 0 done, 1 refused or failed (no "
        "citus extension, no workers, not migrated, not a superuser), 2 usage error or the "
        "database cannot be reached.",
    )
    parser.add_argument("--dsn", required=True, help="superuser DSN of the Citus coordinator")
    _add_role_arguments(parser)
    add_options(parser, cmd_distribute, dsn=None)


def cmd_distribute(args: argparse.Namespace) -> int:
    """Distribute and print what is distributed; exit 0, 1 (refused or failed) or 2."""
    from pydbal.distribute import distribute

    async def body() -> int:
        done = await distribute(
            args.dsn,
            owner_role=args.owner_role,
            app_role=args.app_role,
            analyst_role=args.analyst_role,
        )
        print(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in done.items()))
        return EXIT_OK

    return run("distribute", body)
