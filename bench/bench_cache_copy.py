"""What a cache hit costs with each way of keeping cached values immutable to callers:
``python bench/bench_cache_copy.py``. No database: a ``Cache`` (in-process warm store) is filled
by a loader returning a prepared value, and hits are timed with the snapshot the tiers take of
what they keep (``keep`` in pydbal.cache.hot and pydbal.cache.tiers) replaced by each candidate:

- ``shared``: the kept object itself, handed to every caller (what frozen models would cost;
  not safe: ``frozen=True`` does not freeze nested lists/dicts);
- ``shallow``: ``model_copy()`` per hit (what pydbal did for hot hits before: attributes safe,
  nested lists/dicts shared);
- ``keep``: :func:`pydbal.cache.codec.keep` (the choice: plain-data lists/dicts kept as marshal
  bytes, new at every depth on each hit);
- ``deep``: ``model_copy(deep=True)`` per hit (``copy.deepcopy``);
- ``pickle``: the value kept pickled, unpickled per hit;
- ``decode``: the value kept as its warm-store JSON, decoded by pydantic per hit.

Paths: a hot hit (``Cache.workflow``) of one workflow, and a warm hit (``Cache.warm``, served by
the memo of decoded values) of a page of 20; each for a small definition (1 node) and a ~12 KB
one. Prints µs per hit (median of the rounds). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import pickle
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pydbal.cache.hot as hot_module
import pydbal.cache.tiers as tiers_module
from pydbal.cache import Cache, decode, encode, keep
from pydbal.models import Page, Workflow

TENANT = "acme"


def workflow(nodes: int) -> Workflow:
    """A workflow of ``nodes`` nodes (1 → ~0.6 KB of JSON, 40 → ~12 KB)."""
    now = datetime.now(UTC)
    node_list = [
        {
            "id": f"n{i}",
            "name": f"Node {i}",
            "type": "action.http",
            "position": [i * 10, 20],
            "parameters": {
                "url": f"https://example.com/api/v1/items/{i}",
                "method": "POST",
                "headers": {"content-type": "application/json", "x-trace": f"t-{i}"},
                "body": {"items": [{"k": j, "v": f"value {j}"} for j in range(3)]},
            },
        }
        for i in range(nodes)
    ]
    edges = {f"n{i}": {"main": [[{"node": f"n{i + 1}", "index": 0}]]} for i in range(nodes - 1)}
    return Workflow.model_validate(
        {
            "id": uuid.uuid4(),
            "tenant_id": TENANT,
            "name": "bench",
            "nodes": node_list,
            "edges": edges,
            "enabled": True,
            "version": 1,
            "execution_count": 0,
            "created_at": now,
            "updated_at": now,
            "created_by": "u-1",
            "variables": {"region": "eu", "retries": 3},
            "config": {"settings": {"timezone": "UTC"}},
            "tags": ["bench", "copy"],
            "category": "user",
            "validation_status": "valid",
            "valid_until": None,
            "is_locked": False,
        }
    )


def _pickled(v: Any) -> Callable[[], Any]:
    data = pickle.dumps(v)
    return lambda: pickle.loads(data)  # our own bytes


def _decoded(v: Any) -> Callable[[], Any]:
    data = encode(v)
    assert data is not None
    return lambda: decode(data)


STRATEGIES: dict[str, Callable[[Any], Callable[[], Any]]] = {
    "shared": lambda v: lambda: v,
    "shallow": lambda v: v.model_copy,
    "keep": keep,
    "deep": lambda v: lambda: v.model_copy(deep=True),
    "pickle": _pickled,
    "decode": _decoded,
}


async def per_hit(read: Callable[[Cache], Awaitable[Any]], strategy: str, n: int) -> float:
    """µs per ``read(cache)`` hit, the tiers' snapshots taken with ``strategy``."""
    hot_module.keep = STRATEGIES[strategy]  # type: ignore[assignment]
    tiers_module.keep = STRATEGIES[strategy]  # type: ignore[assignment]
    cache = Cache(None, hot_ttl=3600.0, revalidate=False)
    try:
        await read(cache)  # the miss that fills the entry
        started = time.perf_counter()
        for _ in range(n):
            await read(cache)
        return (time.perf_counter() - started) / n * 1e6
    finally:
        await cache.close()
        hot_module.keep = keep
        tiers_module.keep = keep


async def main(n: int, rounds: int) -> None:
    print(f"{'path':<34}" + "".join(f"{name:>9}" for name in STRATEGIES))
    for label, nodes in (("small", 1), ("~12 KB", 40)):
        wf = workflow(nodes)
        page = Page[Workflow](items=[workflow(nodes) for _ in range(20)], total=20, has_more=False)
        size = len(encode(wf) or b"") / 1024

        async def load_wf(wf: Workflow = wf) -> Workflow:
            return wf

        async def load_page(page: Page[Workflow] = page) -> Page[Workflow]:
            return page

        paths: dict[str, Callable[[Cache], Awaitable[Any]]] = {
            f"hot hit, {label} ({size:.1f} KB)": lambda c, wid=str(wf.id), load=load_wf: c.workflow(
                TENANT, wid, load
            ),
            f"warm hit, page of 20 {label}": lambda c, load=load_page: c.warm(
                TENANT, "list", "k", load
            ),
        }
        for path, read in paths.items():
            cells = []
            for strategy in STRATEGIES:
                samples = [await per_hit(read, strategy, n) for _ in range(rounds)]
                cells.append(f"{statistics.median(samples):>9.1f}")
            print(f"{path:<34}" + "".join(cells), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("-n", type=int, default=500, help="hits per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.rounds))
