"""``pydbal partitions list|maintain``: the partitions of dbal's tables and pg_partman's
maintenance."""

from __future__ import annotations

import argparse
import json
from typing import Any

import asyncpg

from pydbal.cli.common import (
    EXIT_OK,
    SubParsers,
    add_options,
    operator_dsn,
    print_table,
    require_superuser,
    run,
)
from pydbal.schema import has_extension

_PARTITIONS = """
SELECT p.oid::regclass::text AS parent, c.oid::regclass::text AS partition,
       pg_get_expr(c.relpartbound, c.oid) AS bounds, c.reltuples::bigint AS row_estimate
  FROM pg_inherits i
  JOIN pg_class c ON c.oid = i.inhrelid
  JOIN pg_class p ON p.oid = i.inhparent
 WHERE p.relnamespace = 'dbal'::regnamespace AND p.relkind = 'p' AND c.relkind IN ('r', 'p')
 ORDER BY 1, 2
"""


def add_partitions_parser(subparsers: SubParsers) -> None:
    """``pydbal partitions list`` and ``pydbal partitions maintain``."""
    parser = subparsers.add_parser(
        "partitions",
        help="list partitions of dbal's tables; run pg_partman maintenance",
        description="The partitions of pydbal's partitioned tables, and pg_partman's "
        "maintenance where that extension is installed. Exit 0 done (also: nothing to maintain "
        "without pg_partman), 2 usage error, no database or (maintain) not a superuser's DSN.",
    )
    sub = parser.add_subparsers(dest="partitions_command", required=True, metavar="ACTION")
    lst = sub.add_parser("list", help="partitions with their bounds and row estimates")
    add_options(lst, cmd_partitions, json="")
    maintain = sub.add_parser(
        "maintain",
        help="CALL partman.run_maintenance_proc() where pg_partman is installed (superuser)",
        description="Runs pg_partman's maintenance (creates and drops partitions as configured) "
        "and prints the partition count before and after. Without pg_partman it says so and "
        "exits 0. Needs a superuser DSN.",
    )
    add_options(maintain, cmd_partitions, dsn="a superuser")


async def list_partitions(conn: Any) -> list[dict[str, Any]]:
    """Every partition of dbal's partitioned tables: parent, partition, bounds, row estimate."""
    return [dict(r) for r in await conn.fetch(_PARTITIONS)]


def cmd_partitions(args: argparse.Namespace) -> int:
    """Run ``partitions list`` or ``partitions maintain``; exit 0, or 2 (no database, not a
    superuser for maintain where pg_partman is installed)."""

    async def body() -> int:
        dsn = operator_dsn(args)
        conn = await asyncpg.connect(dsn)
        try:
            if args.partitions_command == "list":
                parts = await list_partitions(conn)
                if args.json:
                    print(json.dumps(parts, indent=2))
                else:
                    print_table(
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
                    )
                return EXIT_OK
            if not await has_extension(conn, "pg_partman"):
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
