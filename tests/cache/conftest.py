"""Fixtures of the cache tests: a private Redis server per test, pydbal connections to a fresh
database, and helpers to count the statements a connection sends."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

import pydbal

if shutil.which("redis-server") is None:  # pragma: no cover
    pytest.skip("redis-server is not installed", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A private redis-server that a test may stop, restart, pause (SIGSTOP) and resume."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.resume()
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGCONT)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def open_db(db: Any) -> AsyncIterator[Callable[..., Any]]:
    """``await open_db(redis_url, **cache_options)``: a pydbal Database on the test database
    (as the app login), closed after the test. Re-validation is off unless asked for."""
    opened: list[pydbal.Database] = []

    async def _open(redis_url: str | None = None, **options: Any) -> pydbal.Database:
        options.setdefault("revalidate", False)
        # short leases (lock expiry is part of freshness): see tests/api/conftest.py
        database = await pydbal.connect(
            db.app_dsn, redis_url, cache=options, limits={"lease_min_ms": 1}
        )
        opened.append(database)
        return database

    yield _open
    for database in opened:
        await database.close()


class QueryCounter:
    """Counts the statements one Database sends through fetch/fetchrow/fetchval."""

    def __init__(self, database: pydbal.Database) -> None:
        self.queries: list[str] = []
        for name in ("fetch", "fetchrow", "fetchval"):
            original = getattr(database, name)

            def wrap(original: Any = original) -> Any:
                async def call(query: str, *args: Any) -> Any:
                    self.queries.append(query)
                    return await original(query, *args)

                return call

            setattr(database, name, wrap())

    def count(self, needle: str) -> int:
        return sum(needle in q for q in self.queries)
