"""Hot hit vs warm hit vs uncached, in one run: ``python bench/bench_cache.py --dsn DSN``.

DSN is a superuser DSN of a PostgreSQL server: a scratch database is created, migrated and
dropped. A private redis-server is started on a free port (or pass --redis URL). Prints p50/p95
per path and the speed-up of each cached path over the uncached one. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

import pydbal
from pydbal.migrate import migrate
from pydbal.server import dsn_with

NODES = [
    {"id": f"n{i}", "name": f"Node {i}", "type": "action.http", "parameters": {"url": f"/x/{i}"}}
    for i in range(10)
]
EDGES = {f"Node {i}": {"main": [[{"node": f"Node {i + 1}"}]]} for i in range(9)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _timed(fn: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    for _ in range(min(200, n)):  # warm up (and fill the cache)
        await fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        await fn()
        out.append((time.perf_counter_ns() - t0) / 1000.0)
    return out


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


async def run(dsn: str, redis_url: str, n: int) -> None:
    name = f"pydbal_bench_cache_{os.getpid()}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    try:
        scratch = dsn_with(dsn, database=name)
        await migrate(scratch)
        common: dict[str, Any] = {"revalidate": False}
        uncached = await pydbal.connect(scratch, cache={**common, "hot": False, "warm": False})
        hot = await pydbal.connect(scratch, cache={**common, "hot_ttl": 3600.0, "warm": False})
        warm_redis = await pydbal.connect(scratch, redis_url, cache={**common, "hot": False})
        warm_mem = await pydbal.connect(scratch, cache={**common, "hot": False})
        # copies off: hits return the cached objects themselves (no per-hit copy)
        shared = {**common, "copies": False}
        hot_shared = await pydbal.connect(
            scratch, cache={**shared, "hot_ttl": 3600.0, "warm": False}
        )
        warm_redis_shared = await pydbal.connect(scratch, redis_url, cache={**shared, "hot": False})
        warm_mem_shared = await pydbal.connect(scratch, cache={**shared, "hot": False})
        dbs = (uncached, hot, warm_redis, warm_mem, hot_shared, warm_redis_shared, warm_mem_shared)
        try:
            ws = uncached.tenant("bench", user_id="u", role="admin").workflows
            await ws.create_many(
                [{"name": f"wf {i}", "nodes": NODES, "edges": EDGES} for i in range(200)]
            )
            wid = (await ws.list(limit=1)).items[0].id

            def scope(db: pydbal.Database) -> Any:
                return db.tenant("bench", user_id="u", role="admin").workflows

            u, h, wr, wm, hs, wrs, wms = (scope(d) for d in dbs)
            rows = [
                ("get", "uncached", await _timed(lambda: u.get(wid), n)),
                ("get", "hot hit", await _timed(lambda: h.get(wid), n)),
                ("get", "hot hit, copies off", await _timed(lambda: hs.get(wid), n)),
                ("list (20)", "uncached", await _timed(lambda: u.list(limit=20), n)),
                ("list (20)", "warm hit, redis", await _timed(lambda: wr.list(limit=20), n)),
                ("list (20)", "warm hit, in-process", await _timed(lambda: wm.list(limit=20), n)),
                ("list (20)", "warm, redis, no copies", await _timed(lambda: wrs.list(), n)),
                ("list (20)", "warm, in-proc, no copies", await _timed(lambda: wms.list(), n)),
                ("stats", "uncached", await _timed(lambda: u.get_execution_stats(wid), n)),
                ("stats", "warm hit, redis", await _timed(lambda: wr.get_execution_stats(wid), n)),
            ]
            assert hot.cache_stats()["hot"]["hits"] >= n
            assert warm_redis.cache_stats()["warm"]["hits"] >= 2 * n
            base: dict[str, float] = {}
            print(f"{n} timed calls per row; µs per call (uvloop: {_uvloop()})")
            print(
                f"{'operation':<10} {'path':<25} {'p50':>9} {'p95':>9} {'mean':>9} {'speed-up':>9}"
            )
            for op, path, xs in rows:
                p50 = _pct(xs, 50)
                if path == "uncached":
                    base[op] = p50
                ratio = base[op] / p50
                print(
                    f"{op:<10} {path:<25} {p50:>9.1f} {_pct(xs, 95):>9.1f} "
                    f"{statistics.fmean(xs):>9.1f} {ratio:>8.1f}x"
                )
        finally:
            for d in dbs:
                await d.close()
    finally:
        admin = await asyncpg.connect(dsn)
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


def _uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("PYDBAL_TEST_DSN"), required=False)
    parser.add_argument("--redis", default=None, help="a Redis URL (default: a private server)")
    parser.add_argument("-n", type=int, default=2000, help="timed calls per row")
    args = parser.parse_args()
    if not args.dsn:
        parser.error("--dsn (a superuser DSN) is required")
    if args.redis is None and shutil.which("redis-server") is None:
        parser.error("redis-server not found: pass --redis URL")
    if _uvloop():
        import uvloop

        uvloop.install()
    proc = None
    redis_url = args.redis
    if redis_url is None:
        port = _free_port()
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        redis_url = f"redis://127.0.0.1:{port}/0"
        time.sleep(0.3)
    try:
        asyncio.run(run(args.dsn, redis_url, args.n))
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
