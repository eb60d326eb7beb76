# ruff: noqa: RUF001
"""The bulk and transfer rows of ``python -m bench`` alone: create_many, export and import for
pydbal, the floor and the SQLAlchemy peer, in rounds of rotating order (issue 13).

    PYTHONPATH=. python -m bench.transfer --size quick --rounds 3 --dsn postgresql://...

The rows are those of ``bench.run`` (same data generator, same calls, same sizes): create_many of
``Size.create_many`` inputs into a fresh tenant, export of ``Size.export`` loaded workflows,
import of pydbal's export bytes into a fresh tenant. Each round measures every system once per
operation; the table gives the median and the best round and the ratios of the medians.
``--profile`` writes a cProfile of pydbal's calls (one round) to ``--out``."""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import secrets
import statistics
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench import data
from bench.floor import Floor
from bench.peer import Peer
from bench.pydbal_ops import UNCACHED, Pydbal, open_db
from bench.run import EXPORT_TENANT, SIZES, find_server

OPS = ("create_many", "export", "import")


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    from pydbal.migrate import migrate
    from pydbal.server import dsn_with

    size = SIZES[args.size]
    out: dict[str, Any] = {}
    with find_server(args.dsn) as (admin_dsn, _source):
        dbname = f"pydbal_bench_transfer_{secrets.token_hex(3)}"
        admin = await asyncpg.connect(admin_dsn)
        await admin.execute(f"CREATE DATABASE {dbname}")
        await admin.close()
        dsn = dsn_with(admin_dsn, database=dbname)
        try:
            await migrate(dsn)
            conn = await asyncpg.connect(dsn)
            shapes = data.load_shapes()
            gen = data.Generator(shapes, data.tenant_ids(size.tenants), seed=args.seed)
            floor, peer = Floor(dsn), Peer(dsn)
            await floor.start(4)
            await peer.start(4)
            db, _ = await open_db(dsn, 4, UNCACHED)
            pd = Pydbal(db)
            systems: dict[str, Any] = {"pydbal": pd, "floor": floor, "peer": peer}
            n_cm = args.create_many or size.create_many
            n_ex = args.export or size.export
            cm_rows = [gen.create_input(r) for r in gen.rows_for("cm", n_cm)]
            export_rows = gen.rows_for(EXPORT_TENANT, n_ex)
            await data.copy_workflows(conn, gen, export_rows)
            await conn.execute("ANALYZE dbal.workflows")
            ids = [r.id for r in sorted(export_rows, key=lambda r: r.name)]
            secs: dict[str, dict[str, list[float]]] = {op: {k: [] for k in systems} for op in OPS}
            prof = cProfile.Profile() if args.profile else None
            names = list(systems)
            blob = b""
            for rnd in range(args.rounds):
                order = names[rnd % 3 :] + names[: rnd % 3]
                for k in order:
                    s = systems[k]
                    tenant = f"cm-{k}-{rnd}"
                    if prof and k == "pydbal":
                        prof.enable()
                    t0 = time.perf_counter()
                    await s.create_many(tenant, cm_rows)
                    secs["create_many"][k].append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    if k == "pydbal":
                        got = await pd.export(EXPORT_TENANT, ids)
                        blob = got
                    else:
                        await s.export(EXPORT_TENANT, len(ids))
                    secs["export"][k].append(time.perf_counter() - t0)
                    if prof and k == "pydbal":
                        prof.disable()
                for k in order:
                    s = systems[k]
                    if prof and k == "pydbal":
                        prof.enable()
                    t0 = time.perf_counter()
                    await s.import_(f"im-{k}-{rnd}", blob)
                    secs["import"][k].append(time.perf_counter() - t0)
                    if prof and k == "pydbal":
                        prof.disable()
            for op in OPS:
                n = n_cm if op == "create_many" else n_ex
                out[op] = {
                    k: {
                        "median_rate": n / statistics.median(v),
                        "best_rate": n / min(v),
                        "seconds": v,
                    }
                    for k, v in secs[op].items()
                }
            out["sizes"] = {"create_many": n_cm, "export": n_ex, "rounds": args.rounds}
            if prof:
                args.out.mkdir(parents=True, exist_ok=True)
                path = args.out / "transfer.prof"
                prof.dump_stats(path)
                pstats.Stats(str(path)).sort_stats("cumulative").print_stats(40)
            await db.close()
            await floor.close()
            await peer.close()
            await conn.close()
        finally:
            admin = await asyncpg.connect(admin_dsn)
            await admin.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
            await admin.close()
    return out


def table(res: dict[str, Any]) -> str:
    lines = [
        "| operation | pydbal /s | floor /s | peer /s | pydbal ÷ peer | pydbal ÷ floor |",
        "|---|---|---|---|---|---|",
    ]
    for op in OPS:
        r = res[op]
        p, f, e = (r[k]["median_rate"] for k in ("pydbal", "floor", "peer"))
        n = res["sizes"]["create_many" if op == "create_many" else "export"]
        lines.append(
            f"| {op}({n}) | {p:,.0f} | {f:,.0f} | {e:,.0f} | {p / e:.2f}× | {p / f:.2f}× |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.transfer", description=__doc__)
    ap.add_argument("--size", choices=sorted(SIZES), default="quick")
    ap.add_argument("--dsn")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--create-many", type=int, default=0, help="override the size's count")
    ap.add_argument("--export", type=int, default=0, help="override the size's count")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-transfer"))
    args = ap.parse_args(argv)
    try:
        import uvloop

        res = uvloop.run(_run(args))
    except ImportError:
        res = asyncio.run(_run(args))
    print(table(res))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "transfer.json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
