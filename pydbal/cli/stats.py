"""``pydbal stats``: the execution statistics of one workflow, with a per-day chart."""

from __future__ import annotations

import argparse
import json
import re
from datetime import UTC, date, datetime, timedelta
from uuid import UUID

from pydbal.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    SubParsers,
    add_options,
    open_db,
    operator_dsn,
    run,
    user_of,
)

SPARKS = "▁▂▃▄▅▆▇█"

_SINCE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")


def parse_since(text: str) -> timedelta:
    """``30m``, ``24h``, ``7d``, ``2w`` → a timedelta."""
    match = _SINCE.match(text)
    if not match:
        raise CommandError(f"--since {text!r}: use a number and m, h, d or w (e.g. 7d)", EXIT_USAGE)
    n, unit = int(match.group(1)), match.group(2)
    return {
        "m": timedelta(minutes=n),
        "h": timedelta(hours=n),
        "d": timedelta(days=n),
        "w": timedelta(weeks=n),
    }[unit]


def sparkline(values: list[int]) -> str:
    """One block character per value, scaled to the largest (all lowest when none is > 0)."""
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


def add_stats_parser(subparsers: SubParsers) -> None:
    """``pydbal stats --tenant T WORKFLOW``."""
    parser = subparsers.add_parser(
        "stats",
        help="execution statistics of one workflow with a per-day chart",
        description="Counts, success rate, durations (avg/min/max, p50/p95/p99) of one "
        "workflow's executions in a window, with a per-day sparkline and bar chart (UTC days, "
        "from the hourly roll-ups). Reads as --user with role supergod. Exit 0 done, 1 no such "
        "workflow, 2 usage error or no database.",
    )
    parser.add_argument("--tenant", required=True, help="the tenant id")
    parser.add_argument("workflow", metavar="WORKFLOW", help="workflow id or name")
    parser.add_argument("--since", default="7d", help="window: 30m, 24h, 7d, 2w (default 7d)")
    add_options(parser, cmd_stats, json="", user=True)


def _fmt_ms(value: float | None) -> str:
    """Milliseconds as ``12.3 ms`` or, from 10 s, ``12.34 s``; ``-`` for none."""
    if value is None:
        return "-"
    return f"{value:.1f} ms" if value < 10_000 else f"{value / 1000:.2f} s"


def cmd_stats(args: argparse.Namespace) -> int:
    """Print a workflow's statistics; exit 0, 1 (no such workflow) or 2 (usage, no database)."""

    async def body() -> int:
        window = parse_since(args.since)
        dsn = operator_dsn(args)
        now = datetime.now(UTC)
        start = now - window
        async with open_db(dsn) as db:
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
