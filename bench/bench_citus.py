"""One tenant's calls through a Citus coordinator vs a single node, in one run.

``python bench/bench_citus.py --single postgresql://postgres@127.0.0.1:5432/postgres \\
    --citus postgresql://postgres@127.0.0.1:9700/postgres``

Each target gets a scratch database (on Citus: on every node, citus created, the workers added,
then ``pydbal migrate`` installs distributed) with ``--tenants`` tenants of ``--workflows``
workflows each. Measured on an app login, with the statements pydbal sends
(``pydbal.queries``; no Python cache in the way):

- ``get``, ``list`` (first page of 20, by name) and ``record_execution`` (one call per
  execution): median and p95 of ``--n`` sequential calls, and calls/s of 16 concurrent
  connections over as many tenants;
- ``record_execution`` batched: one ``dbal.record_executions`` statement of ``--batch-size``
  new executions of one tenant (over its workflows): median and p95 per statement of ``--n``
  / 10 statements (at least 20), and the same per execution; and the batched recorder
  (``db.recorder()``, its defaults) fed by 16 producers over as many tenants, ``--seconds``
  long, then flushed: executions/s stored;
- ``create_many``: 1,000 workflows through ``pydbal`` (one transaction, one statement), median
  of ``--batches`` runs.

Prints a Markdown table (the numbers of docs/scale-out.md come from it). Not part of the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

import pydbal
from pydbal import queries as q
from pydbal.migrate import migrate
from pydbal.server import dsn_with

LOGIN = "pydbal_bench_app"
CONCURRENCY = 16
INSERT_ONE = (
    "SELECT w.id FROM dbal.api_insert($1::text, 'bench', 'admin', p_names => ARRAY[$2::text], "
    "p_descriptions => ARRAY[NULL::text], p_nodes => ARRAY[$3::jsonb], "
    "p_edges => ARRAY['{}'::jsonb], p_variables => ARRAY['{}'::jsonb], "
    "p_config => ARRAY['{}'::jsonb], p_tags => ARRAY['[]'::jsonb], "
    "p_categories => ARRAY['user'], p_enabled => ARRAY[true], "
    "p_validation_status => ARRAY['valid'], p_validation_errors => ARRAY[NULL::jsonb], "
    "p_validator_version => 1, p_rename => false) w"
)
NODES = '[{"id": "t", "name": "Start", "type": "n8n-nodes-base.manualTrigger"}]'


def _node(dsn: str, host: str, port: int, database: str) -> str:
    split = urlsplit(dsn_with(dsn, database=database))
    user = split.netloc.rpartition("@")[0]
    return urlunsplit(split._replace(netloc=f"{user}@{host}:{port}" if user else f"{host}:{port}"))


async def _nodes(dsn: str) -> list[tuple[str, int]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT nodename, nodeport FROM pg_dist_node WHERE noderole = 'primary' "
            "ORDER BY groupid"
        )
    finally:
        await conn.close()
    return [(r["nodename"], int(r["nodeport"])) for r in rows]


async def _create(dsn: str, name: str, citus: bool) -> str:
    nodes = await _nodes(dsn) if citus else []
    for host, port in nodes or [(None, None)]:
        admin = await asyncpg.connect(dsn if host is None else _node(dsn, host, port, "postgres"))
        try:
            await admin.execute(f"CREATE DATABASE {name}")
            await admin.execute(
                f"DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{LOGIN}') "
                f"THEN CREATE ROLE {LOGIN} LOGIN; END IF; END$$"
            )
            # on every node: a membership granted later on the coordinator is not propagated
            for role in ("pydbal_owner", "pydbal_app", "pydbal_analyst"):
                await admin.execute(
                    f"DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') "
                    f"THEN CREATE ROLE {role} NOLOGIN; END IF; END$$"
                )
            await admin.execute(f"GRANT pydbal_app TO {LOGIN}")
        finally:
            await admin.close()
        if host is not None:
            conn = await asyncpg.connect(_node(dsn, host, port, name))
            try:
                await conn.execute("CREATE EXTENSION citus")
            finally:
                await conn.close()
    db = dsn_with(dsn, database=name)
    if citus:
        conn = await asyncpg.connect(db)
        try:
            (chost, cport), workers = nodes[0], nodes[1:]
            await conn.execute("SELECT citus_set_coordinator_host($1, $2)", chost, cport)
            for host, port in workers:
                await conn.execute("SELECT citus_add_node($1, $2)", host, port)
        finally:
            await conn.close()
    await migrate(db)
    return db


async def _drop(dsn: str, name: str, citus: bool) -> None:
    nodes = await _nodes(dsn) if citus else [(None, None)]
    for host, port in nodes:
        admin = await asyncpg.connect(dsn if host is None else _node(dsn, host, port, "postgres"))
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await admin.close()


def _stats(times: list[float]) -> tuple[float, float]:
    times = sorted(times)
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)]


async def _timed(call: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    await call()  # warm: connection to the worker, plans
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def _throughput(
    app_dsn: str, make: Callable[[Any, int], Callable[[], Awaitable[Any]]], seconds: float
) -> float:
    conns = [await asyncpg.connect(app_dsn) for _ in range(CONCURRENCY)]
    count = 0
    try:
        calls = [make(c, i) for i, c in enumerate(conns)]
        for call in calls:
            await call()
        deadline = time.perf_counter() + seconds

        async def worker(call: Callable[[], Awaitable[Any]]) -> None:
            nonlocal count
            while time.perf_counter() < deadline:
                await call()
                count += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in calls))
        elapsed = time.perf_counter() - t0
    finally:
        for c in conns:
            await c.close()
    return count / elapsed


async def measure(db: str, args: argparse.Namespace) -> dict[str, Any]:
    app_dsn = dsn_with(db, user=LOGIN)
    conn = await asyncpg.connect(app_dsn)
    tenants = [f"tenant-{i:03d}" for i in range(args.tenants)]
    wfs: dict[str, list[uuid.UUID]] = {}
    try:
        for t in tenants:
            wfs[t] = [
                await conn.fetchval(INSERT_ONE, t, f"wf-{i}", NODES) for i in range(args.workflows)
            ]
        t0, w0 = tenants[0], wfs[tenants[0]][0]
        ctx = (t0, "bench", "admin")
        out: dict[str, Any] = {}
        out["get"] = _stats(await _timed(lambda: conn.fetch(q.GET, *ctx, w0), args.n))
        out["list"] = _stats(
            await _timed(
                lambda: conn.fetch(q.LIST, *ctx, None, "name", False, 0, 20, None, None), args.n
            )
        )
        out["record_execution"] = _stats(
            await _timed(
                lambda: conn.fetch(
                    q.RECORD_EXECUTION,
                    *ctx,
                    w0,
                    "success",
                    5.0,
                    str(uuid.uuid4()),
                    None,
                    datetime.now(UTC),
                    None,
                ),
                args.n,
            )
        )

        def get_of(c: Any, i: int) -> Callable[[], Awaitable[Any]]:
            t = tenants[i % len(tenants)]
            return lambda: c.fetch(q.GET, t, "bench", "admin", wfs[t][0])

        def record_of(c: Any, i: int) -> Callable[[], Awaitable[Any]]:
            t = tenants[i % len(tenants)]
            return lambda: c.fetch(
                q.RECORD_EXECUTION,
                t,
                "bench",
                "admin",
                wfs[t][i % len(wfs[t])],
                "success",
                5.0,
                str(uuid.uuid4()),
                None,
                datetime.now(UTC),
                None,
            )

        out["get_per_s"] = await _throughput(app_dsn, get_of, args.seconds)
        out["record_per_s"] = await _throughput(app_dsn, record_of, args.seconds)

        size = args.batch_size

        def batch() -> Awaitable[Any]:
            return conn.fetch(
                q.RECORD_EXECUTIONS,
                *ctx,
                [wfs[t0][i % len(wfs[t0])] for i in range(size)],
                ["success"] * size,
                [5.0] * size,
                [str(uuid.uuid4()) for _ in range(size)],
                [None] * size,
                [datetime.now(UTC)] * size,
                [None] * size,
            )

        out["record_executions"] = _stats(await _timed(batch, max(20, args.n // 10)))
    finally:
        await conn.close()

    async with pydbal.connect(app_dsn) as api:
        scopes = [api.tenant(t, user_id="bench", role="admin") for t in tenants[:CONCURRENCY]]
        stored = 0
        async with api.recorder() as rec:
            deadline = time.perf_counter() + args.seconds

            async def produce(k: int) -> None:
                scope = scopes[k % len(scopes)]
                ids = wfs[scope.tenant_id]
                i = 0
                while time.perf_counter() < deadline:
                    await rec.record(scope, ids[i % len(ids)], "success", 5.0)
                    i += 1
                    if i % 100 == 0:
                        await asyncio.sleep(0)

            t0 = time.perf_counter()
            await asyncio.gather(*(produce(k) for k in range(CONCURRENCY)))
            report = await rec.flush()
            elapsed = time.perf_counter() - t0
            stored = report.stored_count
            assert not report.refused and not report.failed, report
        out["recorder_per_s"] = stored / elapsed

    times = []
    async with pydbal.connect(app_dsn) as api:
        scope = api.tenant("bulk", user_id="bench", role="admin")
        for b in range(args.batches):
            items = [{"name": f"b{b}-{i}", "nodes": [], "edges": {}} for i in range(1000)]
            t0 = time.perf_counter()
            assert await scope.workflows.create_many(items) == 1000
            times.append((time.perf_counter() - t0) * 1000)
    out["create_many_1000"] = _stats(times)
    return out


async def main(args: argparse.Namespace) -> None:
    name = f"pydbal_bench_citus_{secrets.token_hex(3)}"
    results: dict[str, dict[str, Any]] = {}
    for label, dsn, citus in (("single node", args.single, False), ("citus", args.citus, True)):
        db = await _create(dsn, name, citus)
        try:
            results[label] = await measure(db, args)
        finally:
            await _drop(dsn, name, citus)
    print(
        f"\n{args.tenants} tenants x {args.workflows} workflows; {args.n} sequential calls; "
        f"{CONCURRENCY} connections for {args.seconds:g} s; create_many x {args.batches}\n"
    )
    print("| operation | single node | Citus (coordinator + 2 workers) | ratio |")
    print("|---|---|---|---|")
    s, c = results["single node"], results["citus"]
    for op in ("get", "list", "record_execution", "record_executions", "create_many_1000"):
        print(
            f"| {op} median / p95 (ms) | {s[op][0]:.3f} / {s[op][1]:.3f} | "
            f"{c[op][0]:.3f} / {c[op][1]:.3f} | {c[op][0] / s[op][0]:.2f}x |"
        )
    op, n = "record_executions", args.batch_size
    print(
        f"| record_executions per execution, median (ms) | {s[op][0] / n:.4f} | "
        f"{c[op][0] / n:.4f} | {c[op][0] / s[op][0]:.2f}x |"
    )
    for op in ("get_per_s", "record_per_s", "recorder_per_s"):
        print(f"| {op} ({CONCURRENCY} conns) | {s[op]:.0f} | {c[op]:.0f} | {c[op] / s[op]:.2f}x |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--single", required=True, help="superuser DSN of a single node")
    parser.add_argument("--citus", required=True, help="superuser DSN of a Citus coordinator")
    parser.add_argument("--tenants", type=int, default=64)
    parser.add_argument("--workflows", type=int, default=20)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument(
        "--batch-size", type=int, default=100, help="executions per record_executions statement"
    )
    asyncio.run(main(parser.parse_args()))
