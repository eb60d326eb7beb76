"""Recorder benchmark: 16 producers recording executions, three ways, same run, same machine.

- per-call: ``await workflows.record_execution(...)`` from 16 concurrent tasks (one round trip
  each, the workflow row locked per call);
- recorder: ``await rec.record(...)`` from 16 tasks (``await`` only costs when the queue is
  full), then ``flush()``; throughput counts until everything is committed; the latency of the
  ``record()`` call itself is measured around each call;
- floor: hand-written ``INSERT … SELECT unnest(…)`` of the same rows (executions, execution keys)
  with the same hourly/daily roll-up upserts and counter update, as a superuser, batches of the
  recorder's size, one statement per batch (no RLS, no fencing, no per-item idempotency check).

    python bench/bench_recorder.py --dsn postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from typing import Any

import asyncpg

import pydbal
from bench.floor import FLOOR_BATCH
from pydbal.migrate import migrate
from pydbal.server import dsn_with

PRODUCERS = 16


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p * len(ordered)) - 1))]


async def main(dsn: str, per_call_n: int, batched_n: int, batch: int) -> dict[str, Any]:
    name = f"pydbal_bench_rec_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    target = dsn_with(dsn, database=name)
    results: dict[str, Any] = {}
    try:
        await migrate(target)
        async with pydbal.connect(target, max_size=20, maintenance=False) as db:
            acme = db.tenant("acme", user_id="bench", role="admin")
            nodes = [{"id": "t", "name": "T", "type": "n8n-nodes-base.manualTrigger"}]
            wfs = [
                (await acme.workflows.create({"name": f"w{i}", "nodes": nodes, "edges": {}})).id
                for i in range(PRODUCERS)
            ]

            # per call
            async def per_call(k: int) -> None:
                for i in range(per_call_n):
                    await acme.workflows.record_execution(wfs[k], "success", 5.0 + i % 50)

            t0 = time.perf_counter()
            await asyncio.gather(*(per_call(k) for k in range(PRODUCERS)))
            elapsed = time.perf_counter() - t0
            results["per_call"] = {
                "n": PRODUCERS * per_call_n,
                "rate": PRODUCERS * per_call_n / elapsed,
            }

            # recorder
            lat: list[float] = []
            async with db.recorder(batch_size=batch, max_delay=0.02, max_queue=8 * batch) as rec:

                async def producer(k: int) -> None:
                    for i in range(batched_n):
                        t = time.perf_counter_ns()
                        admission = rec.record(acme, wfs[k], "success", 5.0 + i % 50)
                        lat.append((time.perf_counter_ns() - t) / 1000)
                        if not admission.admitted:
                            await admission
                        elif i % 64 == 0:
                            await asyncio.sleep(0)

                t0 = time.perf_counter()
                await asyncio.gather(*(producer(k) for k in range(PRODUCERS)))
                report = await rec.flush()
                elapsed = time.perf_counter() - t0
            assert report.stored_count == PRODUCERS * batched_n, report.stored_count
            results["recorder"] = {
                "n": PRODUCERS * batched_n,
                "rate": PRODUCERS * batched_n / elapsed,
                "record_p50_us": statistics.median(lat),
                "record_p99_us": pct(lat, 0.99),
                "record_max_us": max(lat),
            }

        # floor: same rows, one hand-written statement per batch, 2 connections like the recorder
        conns = [await asyncpg.connect(target) for _ in range(2)]
        total = PRODUCERS * batched_n
        items = [
            (wfs[i % PRODUCERS], "success", 5.0 + i % 50, str(uuid.uuid4())) for i in range(total)
        ]
        # two writers over disjoint workflows (as the recorder's lanes): two writers updating
        # the same workflows' counters in no particular order would deadlock
        lanes = [[c for c in items if c[0].int % 2 == j] for j in range(2)]
        chunks = [[lane[i : i + batch] for i in range(0, len(lane), batch)] for lane in lanes]

        async def writer(conn: Any, mine: list[list[Any]]) -> None:
            for chunk in mine:
                await conn.execute(
                    FLOOR_BATCH,
                    "acme",
                    [c[0] for c in chunk],
                    [c[1] for c in chunk],
                    [c[2] for c in chunk],
                    [c[3] for c in chunk],
                )

        t0 = time.perf_counter()
        await asyncio.gather(*(writer(c, chunks[j]) for j, c in enumerate(conns)))
        elapsed = time.perf_counter() - t0
        for c in conns:
            await c.close()
        results["floor"] = {"n": total, "rate": total / elapsed}
        results["recorder_vs_per_call"] = results["recorder"]["rate"] / results["per_call"]["rate"]
        results["recorder_vs_floor"] = results["recorder"]["rate"] / results["floor"]["rate"]
    finally:
        admin = await asyncpg.connect(dsn)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return results


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--per-call", type=int, default=150, help="executions per producer")
    parser.add_argument("--batched", type=int, default=2000, help="executions per producer")
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    out = asyncio.run(main(args.dsn, args.per_call, args.batched, args.batch))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    cli()
