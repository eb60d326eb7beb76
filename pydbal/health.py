"""``await db.health()``: what a readiness probe needs, in one call that never raises.

- **unreachable**: the database did not answer ``SELECT`` of the schema version within the
  timeout (a pooled connection could not be had, or the statement failed);
- **degraded**: it answered, but something is off: the schema version is not the one this pydbal
  needs, Redis is configured and not answering, a background task died, or ``close()`` began;
- **healthy**: none of these.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from pydbal import migrate as migrations
from pydbal import queries as q

if TYPE_CHECKING:
    from pydbal.database import Database

Status = Literal["healthy", "degraded", "unreachable"]
EXIT_CODES: dict[str, int] = {"healthy": 0, "degraded": 1, "unreachable": 2}


class DatabaseHealth(BaseModel):
    reachable: bool
    latency_ms: float | None = None
    error: str | None = None


class SchemaHealth(BaseModel):
    version: str | None
    expected: str
    ok: bool


class RedisHealth(BaseModel):
    configured: bool
    available: bool | None
    errors: int
    outages: int


class PoolHealth(BaseModel):
    size: int
    idle: int
    in_use: int
    waiting: int
    min: int
    max: int
    in_flight: int


class Health(BaseModel):
    """The answer of ``Database.health()``; ``problems`` says why it is not healthy."""

    status: Status
    database: DatabaseHealth
    schema_version: SchemaHealth
    redis: RedisHealth
    pool: PoolHealth
    background: dict[str, bool]
    closing: bool
    problems: list[str]

    @property
    def exit_code(self) -> int:
        """0 healthy, 1 degraded, 2 unreachable (``pydbal status`` exits with it)."""
        return EXIT_CODES[self.status]


async def check(db: Database, probe_timeout: float) -> Health:
    problems: list[str] = []
    expected = migrations.SCHEMA_VERSION
    version: str | None = None
    started = time.perf_counter()
    try:
        async with asyncio.timeout(probe_timeout):
            version = await db.fetchval(q.SCHEMA_VERSION)
    except Exception as exc:  # unreachable, refused, timed out, pool closed: all are answers
        reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
        if isinstance(exc, TimeoutError):
            reason = f"no answer within {probe_timeout:g} s"
        database = DatabaseHealth(reachable=False, error=reason)
        problems.append(f"database unreachable ({reason})")
    else:
        latency = (time.perf_counter() - started) * 1000
        database = DatabaseHealth(reachable=True, latency_ms=round(latency, 3))
    schema = SchemaHealth(version=version, expected=expected, ok=version == expected)
    if database.reachable and not schema.ok:
        problems.append(f"schema is {version or 'not installed'}, pydbal needs {expected}")
    redis = RedisHealth(**db.cache.redis)
    if redis.configured and not redis.available:
        problems.append("redis is not answering (served from the database meanwhile)")
    background = db.cache.background()
    problems.extend(
        f"background task {name} is not running"
        for name, ok in background.items()
        if not ok and not db.closing
    )
    if db.closing:
        problems.append("the database is closing")
    status: Status
    if not database.reachable:
        status = "unreachable"
    elif problems:
        status = "degraded"
    else:
        status = "healthy"
    return Health(
        status=status,
        database=database,
        schema_version=schema,
        redis=redis,
        pool=PoolHealth(**db.pool_stats()),
        background=background,
        closing=db.closing,
        problems=problems,
    )
