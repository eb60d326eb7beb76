"""What tracing and the sync facade cost per call: ``python bench/bench_overhead.py --dsn DSN``.

DSN is a superuser DSN: a scratch database is created, migrated and dropped. Two reads, timed
in the same run, interleaved in rounds so that drift affects every row alike:

- ``get`` served by the hot cache (no I/O: the overhead is most visible here) and
- ``get`` uncached (one statement: the overhead next to a real round trip).

Rows: **baseline** (the method without pydbal's operation wrapper, ``Workflows.get.__wrapped__``),
**tracing off** (what every caller runs without ``telemetry=``: the wrapper and its null check),
**tracing on** (the OpenTelemetry SDK with a span processor that drops spans: the cost of
creating, filling and ending the span and recording the histogram), **sync facade** (the same
call made from a plain thread through ``pydbal.connect_sync``, tracing off). Not part of the
test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

import pydbal
from pydbal.migrate import migrate
from pydbal.server import dsn_with
from pydbal.workflows import Workflows

NODES = [{"id": f"n{i}", "name": f"Node {i}", "type": "action.http"} for i in range(10)]
EDGES = {f"Node {i}": {"main": [[{"node": f"Node {i + 1}"}]]} for i in range(9)}


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def _telemetry() -> pydbal.TelemetryOptions:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Drop()))
    return pydbal.TelemetryOptions(tracer_provider=provider, meter_provider=MeterProvider())


async def _time_async(fn: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        await fn()
        out.append((time.perf_counter_ns() - t0) / 1000.0)
    return out


def _time_sync(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1000.0)
    return out


async def run(dsn: str, n: int, rounds: int) -> list[tuple[str, str, list[float]]]:
    name = f"pydbal_bench_overhead_{os.getpid()}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    scratch = dsn_with(dsn, database=name)
    opened: list[pydbal.Database] = []
    sync_dbs: list[pydbal.SyncDatabase] = []
    try:
        await migrate(scratch)
        hot = {"revalidate": False, "hot_ttl": 3600.0, "warm": False}
        cold = {"revalidate": False, "hot": False, "warm": False}
        plain_hot = await pydbal.connect(scratch, max_size=2, cache=hot)
        plain_cold = await pydbal.connect(scratch, max_size=2, cache=cold)
        traced_hot = await pydbal.connect(scratch, max_size=2, cache=hot, telemetry=_telemetry())
        traced_cold = await pydbal.connect(scratch, max_size=2, cache=cold, telemetry=_telemetry())
        opened += [plain_hot, plain_cold, traced_hot, traced_cold]
        setup = plain_cold.tenant("bench", user_id="u", role="admin").workflows
        wid = (await setup.create({"name": "wf", "nodes": NODES, "edges": EDGES})).id
        sync_hot = await asyncio.to_thread(pydbal.connect_sync, scratch, max_size=2, cache=hot)
        sync_cold = await asyncio.to_thread(pydbal.connect_sync, scratch, max_size=2, cache=cold)
        sync_dbs += [sync_hot, sync_cold]

        def scope(db: pydbal.Database) -> Workflows:
            return db.tenant("bench", user_id="u", role="admin").workflows

        raw_get = Workflows.get.__wrapped__  # type: ignore[attr-defined]
        ph, pc, th, tc = (scope(d) for d in opened)
        sh = sync_hot.tenant("bench", user_id="u", role="admin").workflows
        sc = sync_cold.tenant("bench", user_id="u", role="admin").workflows

        async def in_thread(fn: Callable[[], Any]) -> list[float]:
            # a plain thread with no event loop, as in a WSGI worker
            result: list[list[float]] = []
            t = threading.Thread(target=lambda: result.append(_time_sync(fn, n)))
            t.start()
            await asyncio.to_thread(t.join)
            return result[0]

        cases: list[tuple[str, str, Callable[[], Awaitable[list[float]]]]] = [
            (
                "get, hot hit",
                "baseline (no wrapper)",
                lambda: _time_async(lambda: raw_get(ph, wid), n),
            ),
            ("get, hot hit", "tracing off", lambda: _time_async(lambda: ph.get(wid), n)),
            ("get, hot hit", "tracing on", lambda: _time_async(lambda: th.get(wid), n)),
            ("get, hot hit", "sync facade", lambda: in_thread(lambda: sh.get(wid))),
            (
                "get, uncached",
                "baseline (no wrapper)",
                lambda: _time_async(lambda: raw_get(pc, wid), n),
            ),
            ("get, uncached", "tracing off", lambda: _time_async(lambda: pc.get(wid), n)),
            ("get, uncached", "tracing on", lambda: _time_async(lambda: tc.get(wid), n)),
            ("get, uncached", "sync facade", lambda: in_thread(lambda: sc.get(wid))),
        ]
        samples: dict[tuple[str, str], list[float]] = {(o, p): [] for o, p, _ in cases}
        for _ in range(rounds):
            for op, path, timed in cases:
                samples[(op, path)] += await timed()
        return [(op, path, samples[(op, path)]) for op, path, _ in cases]
    finally:
        for s in sync_dbs:
            await asyncio.to_thread(s.close)
        for d in opened:
            await d.close()
        admin = await asyncpg.connect(dsn)
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


def report(rows: list[tuple[str, str, list[float]]]) -> str:
    lines = [
        "| operation | path | p50 µs | mean µs | p50 minus baseline µs |",
        "|---|---|---:|---:|---:|",
    ]
    base: dict[str, float] = {}
    for op, path, xs in rows:
        p50 = _pct(xs, 50)
        base.setdefault(op, p50)
        lines.append(
            f"| {op} | {path} | {p50:.1f} | {statistics.fmean(xs):.1f} | {p50 - base[op]:+.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("PYDBAL_TEST_DSN"))
    parser.add_argument("-n", type=int, default=2000, help="timed calls per row and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (when installed)")
    args = parser.parse_args()
    if not args.dsn:
        parser.error("--dsn (a superuser DSN) is required")
    if args.uvloop:
        import uvloop

        uvloop.install()
    rows = asyncio.run(run(args.dsn, args.n, args.rounds))
    print(f"{args.n * args.rounds} timed calls per row, {args.rounds} interleaved rounds")
    print(report(rows))


if __name__ == "__main__":
    main()
