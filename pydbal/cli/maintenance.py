"""``pydbal maintenance run|schedule|unschedule`` and ``pydbal retention show|set``: the
maintenance job (expired locks, partitions, retention) and how long data is kept
(:mod:`pydbal.maintenance`). They need a superuser DSN (an operator's)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pydbal.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    SubParsers,
    add_options,
    operator_dsn,
    run,
    superuser_connection,
    user_of,
)
from pydbal.maintenance import KINDS, format_keep, parse_keep


def add_maintenance_parser(subparsers: SubParsers) -> None:
    """``pydbal maintenance run|schedule|unschedule``."""
    parser = subparsers.add_parser(
        "maintenance",
        help="run or schedule the maintenance job: locks, partitions, retention (needs a "
        "superuser)",
        description="The maintenance job releases expired locks, keeps partitions and removes "
        "data past its retention. Run it once, or register it with pg_cron (every minute) "
        "where that extension is installed; without pg_cron pydbal processes run it "
        "(connect(maintenance=True)). Needs a superuser DSN. Exit 0 done (also: skipped, or "
        "nothing to schedule), 2 usage error, no database or not a superuser's DSN.",
    )
    sub = parser.add_subparsers(dest="maintenance_command", required=True, metavar="ACTION")
    for name, text in (
        ("run", "run it once now (skips when another run holds the lock)"),
        ("schedule", "register it with pg_cron (every minute)"),
        ("unschedule", "remove its pg_cron job"),
    ):
        p = sub.add_parser(name, help=text)
        add_options(p, cmd_maintenance, dsn="a superuser")


def cmd_maintenance(args: argparse.Namespace) -> int:
    """Run, schedule or unschedule the job; exit 0, or 2 (no database, not a superuser)."""
    from pydbal import maintenance as m

    async def body() -> int:
        dsn = operator_dsn(args)
        async with superuser_connection(dsn, f"maintenance {args.maintenance_command}"):
            pass  # only the check: refuse a DSN that is not a superuser's before acting
        if args.maintenance_command == "run":
            row = await m.run_once(dsn, runner="cli")
            if row is None:
                print("skipped: another run is in progress")
            else:
                print(_describe_run(row))
        elif args.maintenance_command == "schedule":
            name = await m.schedule_cron(dsn)
            print(f"scheduled pg_cron job {name}" if name else "pg_cron is not installed")
        else:
            gone = await m.unschedule_cron(dsn)
            print("removed the pg_cron job" if gone else "no pg_cron job to remove")
        return EXIT_OK

    return run(f"maintenance {args.maintenance_command}", body)


def _describe_run(row: dict[str, Any]) -> str:
    """One line about a maintenance run: when, by whom, what it cleared and removed, errors."""
    removed = row.get("removed") or {}
    if isinstance(removed, str):
        removed = json.loads(removed)
    parts = [f"{k} {v}" for k, v in sorted(removed.items())]
    dropped = row.get("partitions_dropped")
    text = (
        f"{row['started_at']:%Y-%m-%d %H:%M:%S %Z} by {row['runner']}: "
        f"{row.get('locks_cleared') or 0} expired lock(s) cleared; removed "
        + (", ".join(parts) or "nothing")
        + ("" if dropped is None else f"; {dropped} partition(s) dropped")
    )
    if row.get("finished_at") is None:
        text += " (not finished)"
    if row.get("error"):
        text += f"; errors: {row['error']}"
    return text


def add_retention_parser(subparsers: SubParsers) -> None:
    """``pydbal retention show|set``."""
    parser = subparsers.add_parser(
        "retention",
        help="show or set how long data is kept (needs a superuser)",
        description="How long the maintenance job keeps each kind of data, as defaults and "
        "per-tenant overrides. Needs a superuser DSN. Exit 0 done, 2 usage error (nothing to "
        "set, a value that is not a duration), no database or not a superuser's DSN.",
    )
    sub = parser.add_subparsers(dest="retention_command", required=True, metavar="ACTION")
    show = sub.add_parser("show", help="the defaults, or a tenant's effective retention")
    show.add_argument("--tenant", help="show this tenant's effective retention")
    add_options(show, cmd_retention, json="", dsn="a superuser")
    set_ = sub.add_parser(
        "set", help="set defaults, or a tenant's overrides ('default' removes one)"
    )
    set_.add_argument("--tenant", help="set this tenant's overrides instead of the defaults")
    for kind in KINDS:
        set_.add_argument(
            f"--{kind.replace('_', '-')}",
            dest=kind,
            metavar="KEEP",
            help=f"how long to keep {kind.replace('_', ' ')}, e.g. 30d, 12h, 2y "
            "('default': the tenant follows the default again)",
        )
    add_options(set_, cmd_retention, dsn="a superuser", user=True)


def cmd_retention(args: argparse.Namespace) -> int:
    """Show or set retention, then print it; exit 0, or 2 (usage, no database, not a
    superuser)."""
    from pydbal import maintenance as m

    async def body() -> int:
        dsn = operator_dsn(args)
        async with superuser_connection(dsn, f"retention {args.retention_command}") as conn:
            if args.retention_command == "set":
                changes = {k: getattr(args, k) for k in KINDS if getattr(args, k) is not None}
                if not changes:
                    raise CommandError("nothing to set: give e.g. --executions 30d", EXIT_USAGE)
                async with conn.transaction():
                    for kind, text in changes.items():
                        try:
                            keep = parse_keep(text)
                        except ValueError as exc:
                            raise CommandError(str(exc), EXIT_USAGE) from exc
                        if keep is None and args.tenant is None:
                            raise CommandError("a default needs a value", EXIT_USAGE)
                        await m.set_retention(
                            conn, kind, keep, tenant=args.tenant, user=user_of(args)
                        )
            rows = await m.show_retention(conn, args.tenant)
        if getattr(args, "json", False):
            print(
                json.dumps(
                    [
                        {"kind": r["kind"], "keep": format_keep(r["keep"]), "source": r["source"]}
                        for r in rows
                    ],
                    indent=2,
                )
            )
        else:
            who = f"tenant {args.tenant}" if args.tenant else "defaults"
            print(f"retention ({who}):")
            for r in rows:
                print(f"  {r['kind']:<13} {format_keep(r['keep']):>6}  ({r['source']})")
        return EXIT_OK

    return run(f"retention {args.retention_command}", body)


def print_maintenance_status(info: dict[str, Any], out: Any = None) -> None:
    """``pydbal status``'s lines about the scheduler and the last maintenance run."""
    out = out if out is not None else sys.stdout
    job = info.get("cron_job")
    out.write(f"scheduler:      {'pg_cron job ' + str(job['jobid']) if job else 'in-process'}\n")
    last = info.get("last_maintenance")
    out.write(f"last maintenance: {_describe_run(last) if last else '(never ran)'}\n")
