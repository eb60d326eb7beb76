"""``pydbal sql``: one read-only query as an analyst, through the gate of :mod:`pydbal.sqlgate`,
printed as a table, CSV or JSON."""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import asyncpg

from pydbal.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    SubParsers,
    add_options,
    cell,
    json_value,
    print_table,
    run,
)

MAX_TIMEOUT_S = 86_400.0  # a statement timeout longer than a day is a typo


def add_sql_parser(subparsers: SubParsers) -> None:
    """``pydbal sql QUERY | -f FILE``."""
    parser = subparsers.add_parser(
        "sql",
        help="run one read-only SELECT as an analyst (your own login; READ ONLY, time-limited)",
        description=(
            "Parses the query with sqlglot and refuses anything but a single read-only query, "
            "then runs it in a READ ONLY transaction with a statement timeout. Refuses DSNs of "
            "superusers, the owner, BYPASSRLS roles and members of the application role. Exit 0 "
            "done, 1 the query was refused (not one read-only query), failed or ran past "
            "--timeout, 2 usage error, no DSN, a refused login, a query too long or nested too "
            "deeply to check, or the database cannot be reached."
        ),
    )
    parser.add_argument("query", nargs="?", metavar="QUERY", help="the SELECT to run")
    parser.add_argument("--file", "-f", help="read the query from this file ('-' for stdin)")
    parser.add_argument("--dsn", help="your analyst DSN (default: $PYDBAL_DSN)")
    parser.add_argument(
        "--format", choices=["table", "csv", "json"], default="table", help="output format"
    )
    parser.add_argument(
        "--from",
        dest="read",
        metavar="DIALECT",
        help="dialect the query is written in (sqlglot name: mysql, tsql, bigquery, ...)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="statement timeout in seconds (default 30, at most 86400)",
    )
    add_options(parser, cmd_sql, dsn=None)


def _query_text(args: argparse.Namespace) -> str:
    """The query: the argument, or the text of ``--file`` (``-`` for stdin); exactly one."""
    if args.file and args.query:
        raise CommandError("give the query or --file, not both", EXIT_USAGE)
    if args.file:
        if args.file == "-":
            return sys.stdin.read()
        try:
            return Path(args.file).read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read {args.file}: {exc.strerror}", EXIT_USAGE) from None
    if not args.query:
        raise CommandError("give a query or --file", EXIT_USAGE)
    return str(args.query)


def cmd_sql(args: argparse.Namespace) -> int:
    """Check and run the query; exit 0, 1 (refused by policy, failed, timed out) or 2 (usage,
    no DSN, a refused login, a query too complex to check)."""
    from pydbal.sqlgate import QueryTooComplex, RefusedLogin, RefusedQuery, check, run_query

    async def body() -> int:
        text = _query_text(args)
        dsn = args.dsn or os.environ.get("PYDBAL_DSN")
        if not dsn:
            raise CommandError(
                "no DSN: pass --dsn or set $PYDBAL_DSN to your analyst login", EXIT_USAGE
            )
        if not (math.isfinite(args.timeout) and 0 < args.timeout <= MAX_TIMEOUT_S):
            raise CommandError(
                f"--timeout must be a number of seconds from 0 to {MAX_TIMEOUT_S:g}", EXIT_USAGE
            )
        try:
            sql = check(text, read=args.read)
        except QueryTooComplex as exc:
            raise CommandError(f"refused: {exc.reason}", EXIT_USAGE) from None
        except RefusedQuery as exc:
            raise CommandError(f"refused: {exc.reason}", EXIT_FAILED) from None
        try:
            result = await run_query(dsn, sql, timeout_s=args.timeout)
        except RefusedLogin as exc:
            raise CommandError(exc.reason, EXIT_USAGE) from None
        except asyncpg.QueryCanceledError:
            raise CommandError(f"the query ran longer than {args.timeout:g}s: cancelled") from None
        print_result(result.columns, result.rows, args.format, sys.stdout)
        return EXIT_OK

    return run("sql", body)


def print_result(
    columns: list[str], rows: list[tuple[Any, ...]], fmt: str, out: io.TextIOBase | Any
) -> None:
    """Print rows as an aligned table, CSV or a JSON array of objects."""
    if fmt == "json":
        out.write(
            json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=json_value)
            + "\n"
        )
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for r in rows:
            writer.writerow([cell(v) for v in r])
    else:
        print_table(columns, rows, out)
        out.write(f"({len(rows)} row{'s' if len(rows) != 1 else ''})\n")
