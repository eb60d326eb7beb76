"""``pydbal purge``: the only way data leaves pydbal (operators, superuser DSN).

Deleting a workflow through the API archives it; ``purge --older-than 30d`` removes the workflows
archived longer ago than that, with their history, executions, execution keys and roll-ups
(``dbal.purge_archived``, sql/73_purge.sql). Each purged workflow leaves a ``purge`` audit row
naming the operator's login.
"""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from typing import Any

from pydbal import queries as q
from pydbal.cli.common import (
    EXIT_OK,
    SubParsers,
    add_options,
    duration,
    operator_dsn,
    run,
    superuser_connection,
)


async def purge_archived(
    dsn: str, older_than: timedelta, tenant: str | None = None
) -> list[dict[str, Any]]:
    """Run ``dbal.purge_archived`` as a superuser; return the purged workflows."""
    async with superuser_connection(dsn, "purge (only operators remove data)") as conn:
        rows = await conn.fetch(q.PURGE_ARCHIVED, older_than, tenant)
        return [dict(r) for r in rows]


def add_purge_parser(subparsers: SubParsers) -> None:
    """``pydbal purge --older-than DURATION``."""
    parser = subparsers.add_parser(
        "purge",
        help="remove workflows archived longer ago than --older-than, with their records "
        "(needs a superuser)",
        description=(
            "Removes archived (deleted) workflows for good, with their history, executions and "
            "roll-ups. Live workflows are never touched. Each purged workflow leaves a purge "
            "audit row naming the login. Needs a superuser DSN. Exit 0 done (also when nothing "
            "was old enough), 2 usage error, no database or not a superuser's DSN."
        ),
    )
    parser.add_argument(
        "--older-than",
        required=True,
        type=duration,
        metavar="DURATION",
        help="archived before now minus this (e.g. 30d, 12h; ms, s, min, h, d; a plain "
        "number is seconds)",
    )
    parser.add_argument("--tenant", help="only this tenant's archived workflows")
    add_options(parser, cmd_purge, json="the purged workflows", dsn="a superuser")


def cmd_purge(args: argparse.Namespace) -> int:
    """Purge and list what went; exit 0, or 2 (usage, no database, not a superuser)."""

    async def body() -> int:
        purged = await purge_archived(operator_dsn(args), args.older_than, args.tenant)
        if args.json:
            print(json.dumps(purged, default=str, indent=2))
        else:
            for row in purged:
                print(f"purged {row['tenant_id']} {row['workflow_id']} {row['name']!r}")
            print(f"{len(purged)} workflow(s) purged")
        return EXIT_OK

    return run("purge", body)
