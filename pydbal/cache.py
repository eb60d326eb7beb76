"""Caching tiers (hot in-process, warm Redis/in-process). This first version caches nothing:
every call goes to its loader. The interface is what pydbal.workflows uses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pydbal.database import Database

T = TypeVar("T")


class Cache:
    def __init__(self, redis_url: str | None = None, **options: Any) -> None:
        self.redis_url = redis_url
        self.options = options

    async def start(self, db: Database) -> None:
        return None

    async def close(self) -> None:
        return None

    def stats(self) -> dict[str, dict[str, int]]:
        return {}

    async def workflow(
        self, tenant: str, workflow_id: str, loader: Callable[[], Awaitable[T]]
    ) -> T:
        return await loader()

    async def warm(
        self,
        tenant: str,
        kind: str,
        key: str,
        loader: Callable[[], Awaitable[T]],
        *,
        workflow_id: str | None = None,
    ) -> T:
        return await loader()

    async def invalidate(
        self,
        tenant: str,
        workflow_ids: Iterable[str] = (),
        *,
        lists: bool = True,
        all_workflows: bool = False,
    ) -> None:
        return None
