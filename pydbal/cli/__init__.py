"""The ``pydbal`` command: schema, operations, workflow files and analysts (docs/cli.md).

:func:`main` is the entry point (``pydbal`` and ``python -m pydbal``); :func:`build_parser` builds
the argument parser from one ``add_<command>_parser`` function per command, each in the module of
its command group (``schema``, ``status``, ``transfer``, ``validate``, ``locks``, ``stats``,
``partitions``, ``purge``, ``maintenance``, ``analysts``, ``sql``, ``demo``); the pieces they share
(DSN, superuser check, error → exit code, output) are in :mod:`pydbal.cli.common`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from pydbal import __version__
from pydbal.cli.analysts import add_analysts_parser
from pydbal.cli.common import SubParsers
from pydbal.cli.demo import add_demo_parser
from pydbal.cli.locks import add_locks_parser
from pydbal.cli.maintenance import add_maintenance_parser, add_retention_parser
from pydbal.cli.partitions import add_partitions_parser
from pydbal.cli.purge import add_purge_parser
from pydbal.cli.schema import add_distribute_parser, add_migrate_parser
from pydbal.cli.sql import add_sql_parser
from pydbal.cli.stats import add_stats_parser
from pydbal.cli.status import add_status_parser
from pydbal.cli.transfer import add_export_parser, add_import_parser
from pydbal.cli.validate import add_validate_parser

__all__ = ["build_parser", "main"]

#: The commands in the order ``pydbal --help`` lists them.
COMMANDS: list[Callable[[SubParsers], None]] = [
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

DESCRIPTION = (
    "pydbal: multi-tenant workflow storage on PostgreSQL — schema, operations and analysts."
)

EPILOG = (
    "Exit codes: 0 all went well; 1 some items failed or were invalid, or the operation failed "
    "or was refused (a refused migration or query); 2 usage error, no database, or a DSN that "
    "is not a superuser's where a command needs one (migrate and distribute: 1); 128 + the "
    "signal when SIGINT/SIGTERM stop an import. Database commands take --dsn (default "
    "$PYDBAL_DSN, else an embedded server under $PYDBAL_HOME); operator commands act as --user "
    "(default: the OS user) with role supergod, so the audit log names who did it. "
    "`pydbal COMMAND --help` says what a command needs."
)


def build_parser() -> argparse.ArgumentParser:
    """The ``pydbal`` argument parser with every command of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(prog="pydbal", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"pydbal {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: the process's arguments), run the command, return its exit code
    (argparse exits 2 itself on a usage error, 0 after ``--help``)."""
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
