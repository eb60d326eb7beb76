"""``pydbal demo``: a walk through the API with two tenants (:mod:`pydbal.demo`)."""

from __future__ import annotations

import argparse

from pydbal.cli.common import EXIT_FAILED, CommandError, SubParsers, add_options, run


def add_demo_parser(subparsers: SubParsers) -> None:
    """``pydbal demo [--dsn DSN]``."""
    parser = subparsers.add_parser(
        "demo",
        help="walk through the API with two tenants (embedded server without --dsn)",
        description="Shows the API step by step with two tenants: create, list and search, "
        "lock and record executions, statistics, export and import, tenant isolation. Its "
        "workflows carry the tag pydbal-demo and are replaced "
        "on every run. Without --dsn and $PYDBAL_DSN it starts and migrates the embedded server "
        "under $PYDBAL_HOME. Exit 0 done, 1 a step failed or the schema is outdated, 2 no "
        "database.",
    )
    add_options(parser, cmd_demo, dsn="a migrated database")


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo; exit 0, 1 (a step failed) or 2 (no database)."""
    from pydbal.database import SchemaOutdatedError
    from pydbal.demo import run_demo
    from pydbal.errors import DBALError

    async def body() -> int:
        try:
            return await run_demo(args.dsn)
        except (SchemaOutdatedError, DBALError) as exc:
            raise CommandError(str(exc), EXIT_FAILED) from None

    return run("demo", body)
