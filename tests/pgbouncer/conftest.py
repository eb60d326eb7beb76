"""Fixtures of the PgBouncer tests: ``bouncer`` (a session's PgBouncer in transaction mode) and
the API tests' fixtures (``app``, ``su``, ``open_db``) re-pointed through it with
``pgbouncer=True``. Skipped, with the reason, when the ``pgbouncer`` binary is absent."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from api.conftest import acme, globex, raw  # noqa: F401 - fixtures used by the imported tests
from cache.conftest import redis_server  # noqa: F401

import pydbal

from .bouncer import BINARY, PgBouncer, server_address
from conftest import APP_LOGIN

if BINARY is None:  # pragma: no cover
    pytest.skip(
        "pgbouncer is not installed (Debian: apt-get install pgbouncer)", allow_module_level=True
    )


def _superuser(pg_dsn: str) -> str:
    from urllib.parse import unquote, urlsplit

    return unquote(urlsplit(pg_dsn).username or "postgres")


@pytest.fixture(scope="session")
def bouncer(pg_dsn: str) -> Iterator[PgBouncer]:
    if not pg_dsn.startswith(("postgresql://", "postgres://")):
        pytest.skip("the PgBouncer harness needs a URL DSN")
    server_address(pg_dsn)
    pgb = PgBouncer(pg_dsn, [_superuser(pg_dsn), APP_LOGIN], pool_size=4)
    pgb.start()
    try:
        yield pgb
    finally:
        pgb.stop()


# lock-expiry tests use leases shorter than the default minimum, as in tests/api/conftest.py
SHORT_LEASES = {"lease_min_ms": 1}


@pytest.fixture
async def app(db: Any, bouncer: PgBouncer) -> AsyncIterator[pydbal.Database]:
    async with pydbal.connect(
        bouncer.dsn(db.app_dsn), max_size=4, pgbouncer=True, limits=SHORT_LEASES
    ) as database:
        yield database


@pytest.fixture
async def su(db: Any, bouncer: PgBouncer) -> AsyncIterator[pydbal.Database]:
    async with pydbal.connect(
        bouncer.dsn(db.dsn), max_size=4, pgbouncer=True, limits=SHORT_LEASES
    ) as database:
        yield database


@pytest.fixture
async def open_db(db: Any, bouncer: PgBouncer) -> AsyncIterator[Callable[..., Any]]:
    opened: list[pydbal.Database] = []

    async def _open(redis_url: str | None = None, **options: Any) -> pydbal.Database:
        options.setdefault("revalidate", False)
        database = await pydbal.connect(
            bouncer.dsn(db.app_dsn), redis_url, cache=options, pgbouncer=True, limits=SHORT_LEASES
        )
        opened.append(database)
        return database

    yield _open
    for database in opened:
        await database.close()
