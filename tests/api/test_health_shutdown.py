"""db.health() and close(): with Redis unreachable, the database unreachable (a proxy the test
cuts, never the shared server), a dead background task, a schema mismatch; close() draining
in-flight calls, bounded when they do not finish, running its hooks, under load."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

import pydbal
from pydbal import DatabaseClosedError
from pydbal.server import dsn_with

from .conftest import TENANT_A, count_rows, valid_definition

BOGUS_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


class Proxy:
    """A TCP forwarder to the test server that the test can cut (the database "goes away")."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.listen_port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.listen_port = self.server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            writer.close()
            return
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.transport.abort()
        self.writers.clear()


@pytest.fixture
async def proxied(db: Any) -> AsyncIterator[tuple[Proxy, str]]:
    from urllib.parse import urlsplit

    split = urlsplit(db.app_dsn)
    if not split.hostname or split.hostname.startswith("/"):
        pytest.skip("the proxy needs a TCP DSN")
    proxy = Proxy(split.hostname, split.port or 5432)
    await proxy.start()
    dsn = f"postgresql://{split.username}@127.0.0.1:{proxy.listen_port}{split.path}"
    yield proxy, dsn
    with contextlib.suppress(Exception):
        await proxy.cut()


# --- health ------------------------------------------------------------------------------------


async def test_healthy(db: Any) -> None:
    async with pydbal.connect(db.app_dsn, max_size=3) as database:
        h = await database.health()
        assert h.status == "healthy", h.problems
        assert h.exit_code == 0 and h.problems == []
        assert h.database.reachable and h.database.latency_ms is not None
        assert 0 < h.database.latency_ms < 2000
        assert h.schema_version.ok and h.schema_version.version == h.schema_version.expected
        assert h.redis.configured is False
        assert h.pool.max == 3 and h.pool.size >= 1 and h.pool.in_use == 0
        assert h.background == {"revalidator": True}
        assert h.closing is False


async def test_redis_unreachable_is_degraded(db: Any) -> None:
    async with pydbal.connect(
        db.app_dsn, BOGUS_REDIS, cache={"redis_connect_timeout": 0.2}
    ) as database:
        # operations still work, from the database
        acme = database.tenant(TENANT_A, user_id="alice", role="admin")
        await acme.workflows.create(valid_definition("r"))
        assert (await acme.workflows.list()).total == 1
        h = await database.health()
        assert h.status == "degraded" and h.exit_code == 1
        assert h.redis.configured and h.redis.available is False
        assert any("redis" in p for p in h.problems)
        assert h.database.reachable


async def test_database_unreachable(proxied: tuple[Proxy, str]) -> None:
    proxy, dsn = proxied
    async with pydbal.connect(dsn, max_size=2) as database:
        assert (await database.health()).status == "healthy"
        await proxy.cut()
        started = time.monotonic()
        h = await database.health(probe_timeout=1.0)
        assert time.monotonic() - started < 5
        assert h.status == "unreachable" and h.exit_code == 2
        assert h.database.reachable is False and h.database.error
        assert h.database.latency_ms is None


async def test_dead_background_task_and_schema_mismatch_are_degraded(db: Any, raw: Any) -> None:
    async with pydbal.connect(db.app_dsn) as database:
        revalidator = database.cache.revalidator
        assert revalidator is not None and revalidator._task is not None
        revalidator._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await revalidator._task
        h = await database.health()
        assert h.status == "degraded" and h.background == {"revalidator": False}
        assert any("revalidator" in p for p in h.problems)
    async with pydbal.connect(db.app_dsn, cache={"revalidate": False}) as database:
        await raw.execute(
            "DELETE FROM dbal.schema_migrations "
            "WHERE name = (SELECT max(name) FROM dbal.schema_migrations)"
        )
        h = await database.health()
        assert h.status == "degraded" and not h.schema_version.ok
        assert h.schema_version.version != h.schema_version.expected


# --- close -------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def table_locked(db: Any) -> AsyncIterator[asyncpg.Connection]:
    """Every workflow statement blocks while this is open (ACCESS EXCLUSIVE on the table)."""
    conn = await asyncpg.connect(dsn_with(db.dsn))
    tx = conn.transaction()
    await tx.start()
    await conn.execute("LOCK TABLE dbal.workflows IN ACCESS EXCLUSIVE MODE")
    try:
        yield conn
    finally:
        with contextlib.suppress(Exception):
            await tx.rollback()
        await conn.close()


async def test_close_waits_for_in_flight_calls_and_refuses_new_ones(db: Any) -> None:
    database = await pydbal.connect(db.app_dsn, max_size=4)
    acme = database.tenant(TENANT_A, user_id="alice", role="admin").workflows
    order: list[str] = []

    async def flush() -> None:
        # runs after the in-flight calls finished and while the pool still works
        order.append(f"hook:{await database.fetchval('SELECT 1')}")

    database.on_close("flush", flush)
    async with table_locked(db) as locker:
        calls = [asyncio.create_task(acme.create(valid_definition(f"w{i}"))) for i in range(3)]
        await asyncio.sleep(0.3)
        assert database.pool_stats()["in_flight"] == 3
        closing = asyncio.create_task(database.close(grace=10))
        await asyncio.sleep(0.2)
        assert not closing.done()
        with pytest.raises(DatabaseClosedError):
            await acme.list()
        h = await database.health()
        assert h.closing and h.status == "degraded"
        await locker.execute("SELECT 1")
    done = await asyncio.gather(*calls)
    order.append("calls done")
    await asyncio.wait_for(closing, 10)
    assert [w.name for w in done] == ["w0", "w1", "w2"]
    assert order == ["calls done", "hook:1"]
    raw = await db.connect(as_app=False)
    assert await count_rows(raw, TENANT_A) == 3


async def test_close_never_hangs(db: Any) -> None:
    database = await pydbal.connect(db.app_dsn, max_size=2)
    acme = database.tenant(TENANT_A, user_id="alice", role="admin").workflows

    async def stuck_hook() -> None:
        await asyncio.sleep(3600)

    database.on_close("stuck", stuck_hook)
    async with table_locked(db):
        call = asyncio.create_task(acme.create(valid_definition("never")))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        await database.close(grace=0.5)
        elapsed = time.monotonic() - started
        assert elapsed < 5, elapsed
        with pytest.raises(Exception):  # noqa: B017 - its connection was terminated
            await call
    raw = await db.connect(as_app=False)
    assert await count_rows(raw, TENANT_A) == 0  # rolled back, nothing half-written


async def test_shutdown_under_load(db: Any) -> None:
    database = await pydbal.connect(db.app_dsn, max_size=4)
    acme = database.tenant(TENANT_A, user_id="alice", role="admin").workflows
    created: list[str] = []
    refused = 0
    other: list[BaseException] = []

    async def worker(n: int) -> None:
        nonlocal refused
        i = 0
        while True:
            i += 1
            try:
                wf = await acme.create(valid_definition(f"load {n}-{i}"))
                created.append(wf.name)
                assert await acme.get(wf.id) is not None
            except DatabaseClosedError:
                refused += 1
                return
            except BaseException as exc:
                other.append(exc)
                return

    workers = [asyncio.create_task(worker(n)) for n in range(8)]
    await asyncio.sleep(0.7)
    started = time.monotonic()
    await database.close(grace=10)
    assert time.monotonic() - started < 10
    await asyncio.wait_for(asyncio.gather(*workers), 5)
    assert other == []
    assert refused == 8  # every worker was stopped by the refusal, none by a broken call
    assert len(created) > 8
    raw = await db.connect(as_app=False)
    names = {r["name"] for r in await raw.fetch("SELECT name FROM dbal.workflows")}
    # every create that returned is stored; a create refused before it started stored nothing
    assert names == set(created)
