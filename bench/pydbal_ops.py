"""pydbal's side: the public API, as a user calls it (tenant scopes, role admin)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson

import pydbal

UNCACHED = {"hot": False, "warm": False}


async def open_db(dsn: str, pool_size: int, cache: dict[str, Any] | None) -> tuple[Any, str]:
    """pydbal.connect with the given cache options; falls back to the defaults when this
    version's cache does not take them. Returns (db, what was used)."""
    try:
        db = await pydbal.connect(
            dsn, min_size=pool_size, max_size=pool_size, auto_migrate=False, cache=cache
        )
        return db, f"cache={cache!r}" if cache is not None else "default cache"
    except TypeError as exc:
        db = await pydbal.connect(dsn, min_size=pool_size, max_size=pool_size, auto_migrate=False)
        return db, f"default cache (cache options refused: {exc})"


def cache_hits(db: Any) -> int:
    try:
        stats = db.cache_stats() or {}
    except Exception:
        return 0
    return sum(int(v.get("hits", 0)) for v in stats.values() if isinstance(v, dict))


class Pydbal:
    name = "pydbal"

    def __init__(self, db: Any, user: str = "u-0") -> None:
        self.db = db
        self.user = user
        self._scopes: dict[str, Any] = {}

    def wf(self, tenant: str) -> Any:
        scope = self._scopes.get(tenant)
        if scope is None:
            scope = self._scopes[tenant] = self.db.tenant(tenant, user_id=self.user, role="admin")
        return scope.workflows

    async def close(self) -> None:
        await self.db.close()

    async def get(self, tenant: str, wid: uuid.UUID) -> Any:
        return await self.wf(tenant).get(wid)

    async def list(self, tenant: str) -> Any:
        return await self.wf(tenant).list(
            {"enabled": True}, {"field": "updated_at", "direction": "desc"}, page=1, limit=20
        )

    async def search(self, tenant: str, text: str) -> Any:
        return await self.wf(tenant).search(text, 10)

    async def create(self, tenant: str, inp: dict[str, Any]) -> Any:
        return await self.wf(tenant).create(inp)

    async def create_many(self, tenant: str, inputs: list[dict[str, Any]]) -> int:
        return int(await self.wf(tenant).create_many(inputs))

    async def update(self, tenant: str, wid: uuid.UUID, description: str) -> Any:
        return await self.wf(tenant).update(wid, {"description": description})

    async def lock_cycle(self, tenant: str, wid: uuid.UUID) -> bool:
        w = self.wf(tenant)
        lock = await w.acquire_lock(wid)
        if lock is None:
            return False
        await w.release_lock(wid, lock)
        return True

    async def record(self, tenant: str, wid: uuid.UUID, ms: float) -> None:
        await self.wf(tenant).record_execution(wid, "success", ms)

    async def stats(self, tenant: str, wid: uuid.UUID, start: datetime, end: datetime) -> Any:
        return await self.wf(tenant).get_execution_stats(wid, start, end)

    async def export(self, tenant: str, ids: list[uuid.UUID]) -> bytes:
        w = self.wf(tenant)
        export_json = getattr(w, "export_json", None)  # the bundles as JSON bytes (issue 13)
        if export_json is not None:
            return bytes(await export_json(ids))
        bundles = [b.model_dump(mode="json", by_alias=True) for b in await w.export_many(ids)]
        return orjson.dumps(bundles)

    async def import_(self, tenant: str, data: bytes) -> int:
        return len(await self.wf(tenant).import_many(data))
