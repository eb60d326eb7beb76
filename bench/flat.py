"""Issue 13: does a read stay flat as a tenant grows? ``python -m bench.flat --size quick``.

Per-tenant growth: one tenant ("grow") holding N small workflows (quick: 1k, 10k, 100k; full:
also 1M) beside a 1k-workflow neighbour, caches off. At each size, interleaved:

* list page 1 (default sort, created_at desc, total included);
* a keyset page 1,000 pages deep (a cursor at row 20,000, or at the last page of a smaller
  tenant), i.e. what ``list(after=cursor)`` costs at depth;
* a list filtered by a rare tag (one workflow in 1,000 carries it: the matches grow with N);
* search "w123" (one full-text hit, the rest from the trigram fallback);
* the floor: a hand-written keyset page (superuser, direct connection, no total).

Statistics: one workflow with 10k and then 1M executions (spread over 20 days); four windows
(default, 7 days, the last hour, a window ending in the past), each measured right after the load
(planner statistics stale) and after ANALYZE (fresh), against the raw percentile query.

``python -m bench flat --size quick`` runs the same. Writes ``bench/results/flat-<size>.json``,
``flat-<size>.md`` and ``flat-growth-<size>.png``.
Targets: each read within 3x of its own 1k time, list page 1 within 1.5x of the keyset floor at
every size; statistics at 1M within 2x of 10k and >= 50x faster than the raw percentile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

import pydbal
from bench import data
from bench.floor import COLUMNS, STATS, _init
from bench.floor import GET as FLOOR_GET
from pydbal import cursors
from pydbal import queries as q
from pydbal.migrate import migrate
from pydbal.server import dsn_with

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = {
    "tiny": ((1_000, 5_000), (10_000, 50_000), 40),
    "quick": ((1_000, 10_000, 100_000), (10_000, 1_000_000), 200),
    "full": ((1_000, 10_000, 100_000, 1_000_000), (10_000, 1_000_000), 300),
}
TENANT, NEIGHBOUR, STATS_TENANT = "grow", "neighbour", "stats"
DEPTH = 1000 * 20  # rows before a page 1,000 pages deep (limit 20)
BASE = datetime(2025, 1, 1, tzinfo=UTC)

FLOOR_KEYSET = (
    f"SELECT {COLUMNS} FROM dbal.workflows WHERE tenant_id = $1 AND archived_at IS NULL "
    "ORDER BY created_at DESC, id DESC LIMIT 20"
)

# N small workflows, loaded server-side with the row triggers off (distinct created_at, as a
# tenant grown over time has); the counters are then set as the migration fills them.
LOAD = """
INSERT INTO dbal.workflows (tenant_id, name, description, tags, created_by, nodes, edges,
                            created_at, updated_at)
SELECT $1, 'w' || g, 'workflow number ' || g || ' of the growth benchmark',
       CASE WHEN g % 1000 = 0 THEN ARRAY['rare', 'bench'] ELSE ARRAY['bench'] END, 'u-0',
       '[{"id": "t", "name": "Start", "type": "n8n-nodes-base.manualTrigger"}]', '{}',
       $4::timestamptz + g * interval '1 second', $4::timestamptz + g * interval '1 second'
  FROM generate_series($2::integer, $3::integer) g
"""
RECOUNT = """
INSERT INTO dbal.tenant_counters (tenant_id, live, archived)
SELECT tenant_id, count(*) FILTER (WHERE archived_at IS NULL),
       count(*) FILTER (WHERE archived_at IS NOT NULL)
  FROM dbal.workflows GROUP BY tenant_id
ON CONFLICT (tenant_id) DO UPDATE SET live = excluded.live, archived = excluded.archived
"""


async def interleaved(ops: dict[str, Any], n: int, blocks: int, warmup: int) -> Any:
    """n timed calls per operation in rotating blocks (as bench/run.py does, without importing
    the peer's dependencies): p50/p95 in ms."""
    samples: dict[str, list[float]] = {k: [] for k in ops}
    for op in ops.values():
        for i in range(warmup):
            await op(i)
    names = list(ops)
    for b in range(blocks):
        for name in names[b % len(names) :] + names[: b % len(names)]:
            for i in range(max(1, n // blocks)):
                t0 = time.perf_counter()
                await ops[name](i)
                samples[name].append(time.perf_counter() - t0)
    out = {}
    for k, v in samples.items():
        v.sort()
        out[k] = {"p50": statistics.median(v) * 1000, "p95": v[int(0.95 * (len(v) - 1))] * 1000}
    return out


def log(msg: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {msg}", flush=True)


async def load(conn: asyncpg.Connection, tenant: str, start: int, end: int) -> None:
    step = 200_000
    for lo in range(start, end + 1, step):
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(LOAD, tenant, lo, min(end, lo + step - 1), BASE)
    await conn.execute(RECOUNT)
    await conn.execute("VACUUM ANALYZE dbal.workflows")


async def growth(admin: asyncpg.Connection, dsn: str, points: tuple[int, ...], n: int) -> Any:
    db = await pydbal.connect(dsn, cache={"hot": False, "warm": False}, min_size=2, max_size=2)
    floor = await asyncpg.connect(dsn)
    await _init(floor)
    wf = db.tenant(TENANT, user_id="u-0", role="admin").workflows
    await load(admin, NEIGHBOUR, 1, 1000)
    rows: list[dict[str, Any]] = []
    loaded = 0
    try:
        for point in points:
            t = time.perf_counter()
            await load(admin, TENANT, loaded + 1, point)
            loaded = point
            log(f"tenant at {point:,} workflows ({time.perf_counter() - t:.1f}s)")
            # the row a page 1,000 deep starts after (created_at desc, id desc)
            depth = min(DEPTH, point - 20)
            mark = await admin.fetchrow(
                "SELECT id, created_at FROM dbal.workflows WHERE tenant_id = $1 "
                "ORDER BY created_at DESC, id DESC OFFSET $2 LIMIT 1",
                TENANT,
                depth - 1,
            )
            digest = cursors.filter_digest("{}")
            deep = cursors.encode(TENANT, "created_at", "desc", digest, mark[1], mark[0])
            check = await wf.list(after=deep)
            first = await wf.list()
            rare = await wf.list({"tags": ["rare"]})
            found = await wf.search("w123")
            assert len(check.items) == 20 and first.total == point and first.total_exact
            some = first.items[3].id
            ctx = (TENANT, "u-0", "admin")
            list_args = (*ctx, "{}", "created_at", True, 0, 20, None, None)
            ops = {
                "list page 1": lambda i: wf.list(),
                "api_list alone (direct)": lambda i, a=list_args: floor.fetch(q.LIST, *a),
                "keyset floor": lambda i: floor.fetch(FLOOR_KEYSET, TENANT),
                "cursor 1,000 pages deep": lambda i, c=deep: wf.list(after=c),
                "filtered list (rare tag)": lambda i: wf.list({"tags": ["rare"]}),
                "search w123": lambda i: wf.search("w123"),
                "get (uncached)": lambda i, w=some: wf.get(w),
                "api_get alone (direct)": lambda i, w=some, c=ctx: floor.fetchrow(q.GET, *c, w),
                "floor get": lambda i, w=some: floor.fetchrow(FLOOR_GET, TENANT, w),
            }
            res = await interleaved(ops, n, blocks=5, warmup=5)
            row = {
                "workflows": point,
                "ms": {k: round(v["p50"], 3) for k, v in res.items()},
                "p95": {k: round(v["p95"], 3) for k, v in res.items()},
                "rare total": [rare.total, rare.total_exact],
                "search hits": len(found),
            }
            rows.append(row)
            log(f"  {row['ms']}")
    finally:
        await floor.close()
        await db.close()
    return rows


WINDOWS = {
    "default (all, to now)": lambda now: (None, None),
    "7 days": lambda now: (now - timedelta(days=7), now),
    "last hour": lambda now: (now - timedelta(hours=1), now),
    "ending in the past": lambda now: (
        now - timedelta(days=12, hours=3, minutes=17),
        now - timedelta(days=2, minutes=41),
    ),
}


async def stats(admin: asyncpg.Connection, dsn: str, points: tuple[int, ...], n: int) -> Any:
    db = await pydbal.connect(dsn, cache={"hot": False, "warm": False}, min_size=1, max_size=1)
    floor = await asyncpg.connect(dsn)
    await _init(floor)
    scope = db.tenant(STATS_TENANT, user_id="u-0", role="admin").workflows
    wf = await scope.create(
        {"name": "stats", "nodes": [{"id": "t", "name": "S", "type": "n8n-nodes-base.set"}]}
    )
    now = datetime.now(UTC)
    out: list[dict[str, Any]] = []
    loaded = 0
    try:
        for point in points:
            t = time.perf_counter()
            await data.insert_executions(
                admin, [(STATS_TENANT, wf.id, f"s{point}", point - loaded)], now
            )
            loaded = point
            log(f"stats workflow at {point:,} executions ({time.perf_counter() - t:.1f}s)")
            for state in ("stale", "fresh"):
                if state == "fresh":
                    await admin.execute("ANALYZE dbal.workflow_executions")
                    await admin.execute("ANALYZE dbal.workflow_stats_hourly")
                    await admin.execute("ANALYZE dbal.workflow_stats_daily")
                ops: dict[str, Any] = {}
                for name, window in WINDOWS.items():
                    start, end = window(now + timedelta(minutes=1))
                    ops[name] = lambda i, s=start, e=end: scope.get_execution_stats(wf.id, s, e)
                res = await interleaved(ops, n // 4, blocks=2, warmup=2)
                entry = {
                    "executions": point,
                    "planner statistics": state,
                    "ms": {k: round(v["p50"], 3) for k, v in res.items()},
                }
                if state == "fresh":
                    f0, f1 = WINDOWS["default (all, to now)"](now)
                    lo, hi = f0 or now - timedelta(days=400), f1 or now + timedelta(minutes=1)
                    raw = await interleaved(
                        {
                            "raw percentile (all)": lambda i, a=lo, b=hi: floor.fetchrow(
                                STATS, STATS_TENANT, wf.id, a, b
                            )
                        },
                        5,
                        blocks=1,
                        warmup=1,
                    )
                    entry["raw percentile ms"] = round(raw["raw percentile (all)"]["p50"], 3)
                out.append(entry)
                log(f"  {state}: {entry['ms']} raw={entry.get('raw percentile ms')}")
    finally:
        await floor.close()
        await db.close()
    return out


def verdicts(g: list[dict[str, Any]], s: list[dict[str, Any]]) -> list[tuple[str, bool, str]]:
    v: list[tuple[str, bool, str]] = []
    base = g[0]["ms"]
    for op in ("list page 1", "cursor 1,000 pages deep", "filtered list (rare tag)", "search w123"):
        worst = max(r["ms"][op] / base[op] for r in g)
        v.append((f"{op}: within 3x of its 1k time", worst <= 3, f"worst {worst:.2f}x"))
    worst = max(r["ms"]["list page 1"] / r["ms"]["keyset floor"] for r in g)
    v.append(("list page 1 within 1.5x of the keyset floor", worst <= 1.5, f"worst {worst:.2f}x"))
    worst = max(r["ms"]["get (uncached)"] / r["ms"]["floor get"] for r in g)
    v.append(("uncached get within 1.5x of the floor", worst <= 1.5, f"worst {worst:.2f}x"))
    if s:
        small = {
            (e["planner statistics"]): e["ms"] for e in s if e["executions"] == s[0]["executions"]
        }
        big = [e for e in s if e["executions"] == s[-1]["executions"]]
        ratio = max(e["ms"][w] / small[e["planner statistics"]][w] for e in big for w in e["ms"])
        v.append(
            (
                f"stats at {s[-1]['executions']:,} within 2x of {s[0]['executions']:,}",
                ratio <= 2,
                f"worst {ratio:.2f}x",
            )
        )
        fresh = next(e for e in big if "raw percentile ms" in e)
        speed = fresh["raw percentile ms"] / fresh["ms"]["default (all, to now)"]
        v.append(
            (
                f"stats >= 50x faster than raw percentile at {s[-1]['executions']:,}",
                speed >= 50,
                f"{speed:.0f}x",
            )
        )
    return v


def chart(g: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    xs = [r["workflows"] for r in g]
    for op in g[0]["ms"]:
        ax.plot(xs, [r["ms"][op] for r in g], marker="o", label=op)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("workflows in the tenant")
    ax.set_ylabel("p50 latency, ms (uncached)")
    ax.set_title("pydbal reads against tenant size (issue 13)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(size: str, g: list[dict[str, Any]], s: list[dict[str, Any]]) -> str:
    ops = list(g[0]["ms"])
    lines = [
        f"# Flat reads (issue 13), size {size}",
        "",
        "p50 ms, caches off, one tenant growing beside a 1k neighbour.",
        "",
        "| workflows | " + " | ".join(ops) + " |",
        "|---" * (len(ops) + 1) + "|",
    ]
    for r in g:
        lines.append(
            f"| {r['workflows']:,} | " + " | ".join(f"{r['ms'][o]:.2f}" for o in ops) + " |"
        )
    if s:
        wins = list(s[0]["ms"])
        lines += [
            "",
            "Execution statistics, p50 ms:",
            "",
            "| executions | planner stats | " + " | ".join(wins) + " | raw percentile |",
            "|---" * (len(wins) + 3) + "|",
        ]
        for e in s:
            lines.append(
                f"| {e['executions']:,} | {e['planner statistics']} | "
                + " | ".join(f"{e['ms'][w]:.2f}" for w in wins)
                + f" | {e.get('raw percentile ms', '')} |"
            )
    lines += ["", "| target | held | measured |", "|---|---|---|"]
    for name, ok, what in verdicts(g, s):
        lines.append(f"| {name} | {'held' if ok else 'MISSED'} | {what} |")
    return "\n".join(lines) + "\n"


async def run(
    size: str, dsn: str, keep: bool, skip_stats: bool, out: Path = RESULTS
) -> dict[str, Any]:
    points, exec_points, n = SIZES[size]
    name = f"pydbal_bench_flat_{secrets.token_hex(3)}"
    admin0 = await asyncpg.connect(dsn)
    await admin0.execute(f'CREATE DATABASE "{name}"')
    await admin0.close()
    target = dsn_with(dsn, database=name)
    try:
        await migrate(target)
        admin = await asyncpg.connect(target)
        g = await growth(admin, target, points, n)
        s = [] if skip_stats else await stats(admin, target, exec_points, n)
        await admin.close()
    finally:
        if not keep:
            admin0 = await asyncpg.connect(dsn)
            await admin0.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin0.close()
    result = {
        "size": size,
        "growth": g,
        "stats": s,
        "verdicts": [{"target": a, "held": b, "measured": c} for a, b, c in verdicts(g, s)],
        "measured_at": datetime.now(UTC).isoformat(),
    }
    write(out, size, result)
    return result


def write(out: Path, size: str, result: dict[str, Any]) -> None:
    out.mkdir(exist_ok=True)
    g, s = result["growth"], result["stats"]
    (out / f"flat-{size}.json").write_text(json.dumps(result, indent=1, default=str))
    text = report(size, g, s)
    (out / f"flat-{size}.md").write_text(text)
    try:
        chart(g, out / f"flat-growth-{size}.png")
    except ImportError:
        log("matplotlib is not installed: no chart")
    print(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.flat", description=__doc__.split("\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="quick")
    ap.add_argument(
        "--dsn",
        default=os.environ.get("PYDBAL_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--no-stats", action="store_true")
    args = ap.parse_args(argv)
    asyncio.run(run(args.size, args.dsn, args.keep, args.no_stats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
