"""Through one PgBouncer server connection shared by several clients (transaction mode,
``default_pool_size = 1``): no request state survives its statement, and a named prepared
statement (asyncpg's statement cache left on) fails with a clear DBALError naming the fix."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from api.conftest import TENANT_A, TENANT_B, valid_definition

import pydbal
from pydbal import DBALError, ErrorCode
from pydbal.cache import bypass

from .bouncer import PgBouncer
from .conftest import _superuser
from conftest import APP_LOGIN

NO_CACHE = {"hot": False, "warm": False, "revalidate": False}
CONTEXT = (
    "SELECT current_setting('dbal.tenant_id', true) AS tenant, "
    "current_setting('dbal.user_id', true) AS user_id, "
    "current_setting('dbal.user_role', true) AS role, "
    "current_user::text AS cur, pg_backend_pid() AS pid"
)


@pytest.fixture
def single(pg_dsn: str) -> Iterator[PgBouncer]:
    """A PgBouncer with one server connection per database and user."""
    pgb = PgBouncer(pg_dsn, [_superuser(pg_dsn), APP_LOGIN], pool_size=1)
    pgb.start()
    try:
        yield pgb
    finally:
        pgb.stop()


async def test_session_state_never_leaks_between_pooled_clients(db: Any, single: PgBouncer) -> None:
    dsn = single.dsn(db.app_dsn)
    probe = await asyncpg.connect(dsn, statement_cache_size=0)
    rogue = await asyncpg.connect(dsn, statement_cache_size=0)
    try:
        # Vacuity guard: the two clients share one server session, so session-level state set
        # by one IS visible to the other. A leak of pydbal's context would show up here.
        await rogue.execute("SET dbal.tenant_id = 'leaked'")
        seen = await probe.fetchrow(CONTEXT)
        assert seen is not None and seen["tenant"] == "leaked"
        assert seen["pid"] == await rogue.fetchval("SELECT pg_backend_pid()")
        await rogue.execute("RESET dbal.tenant_id")

        async with (
            pydbal.connect(dsn, max_size=2, pgbouncer=True, cache=NO_CACHE) as one,
            pydbal.connect(dsn, max_size=2, pgbouncer=True, cache=NO_CACHE) as two,
        ):
            acme = one.tenant(TENANT_A, user_id="alice", role="admin").workflows
            globex = two.tenant(TENANT_B, user_id="gina", role="supergod").workflows
            secret = await acme.create(valid_definition("secret"))
            pids: set[int] = set()

            async def check_clean() -> None:
                row = await probe.fetchrow(CONTEXT)
                assert row is not None
                assert (row["tenant"] or "", row["user_id"] or "", row["role"] or "") == (
                    "",
                    "",
                    "",
                ), dict(row)
                assert row["cur"] == APP_LOGIN
                pids.add(row["pid"])

            for i in range(10):
                await acme.get(secret.id)
                await check_clean()
                assert await globex.get(secret.id) is None
                await check_clean()
                assert (await globex.list()).total == i
                assert await globex.search("secret") == []
                await check_clean()
                lock = await acme.acquire_lock(secret.id)
                assert lock is not None
                await check_clean()
                assert await acme.release_lock(secret.id, lock)
                await globex.create(valid_definition(f"g{i}"))
                await check_clean()
            assert (await acme.list()).total == 1
            assert (await globex.list()).total == 10

            # interleaved, concurrently, still one server session
            async def as_acme() -> None:
                for _ in range(20):
                    wf = await acme.get(secret.id)
                    assert wf is not None and wf.tenant_id == TENANT_A

            async def as_globex() -> None:
                for _ in range(20):
                    page = await globex.list(limit=100)
                    assert page.total == 10
                    assert all(w.tenant_id == TENANT_B for w in page.items)

            await asyncio.gather(as_acme(), as_globex(), as_acme(), as_globex())
            await check_clean()
            assert len(pids) == 1  # every probe really shared the clients' server session
    finally:
        await probe.close()
        await rogue.close()


async def test_a_named_prepared_statement_fails_with_the_fix_in_the_message(
    db: Any, bouncer: PgBouncer
) -> None:
    # Several clients, several server connections: a client's named statement, prepared on one
    # server connection, is soon executed on another that never saw it.
    dsn = bouncer.dsn(db.app_dsn)
    opened: list[pydbal.Database] = []

    async def load(scope: Any) -> None:
        with bypass():
            for i in range(100):
                await scope.list({"name": f"n{i % 7}"})
                await scope.get("00000000-0000-0000-0000-000000000000")

    with pytest.raises(DBALError) as info:
        try:
            for _ in range(4):  # the statement cache is on: asyncpg names its statements
                opened.append(await pydbal.connect(dsn, max_size=2, cache=NO_CACHE))
            scopes = [d.tenant(TENANT_A, user_id="u", role="admin").workflows for d in opened]
            await asyncio.gather(*(load(s) for s in scopes for _ in range(2)))
        finally:
            for d in opened:
                await d.close(grace=1.0)
    err = info.value
    assert err.code == ErrorCode.CONFIGURATION_ERROR, repr(err)
    assert "pgbouncer=True" in err.message and "PgBouncer" in err.message
    assert err.details["fix"] == "pgbouncer=True"


async def test_pgbouncer_true_passes_where_the_statement_cache_fails(
    db: Any, bouncer: PgBouncer
) -> None:
    dsn = bouncer.dsn(db.app_dsn)
    opened = [
        await pydbal.connect(dsn, max_size=2, pgbouncer=True, cache=NO_CACHE) for _ in range(4)
    ]
    try:
        writer = opened[0].tenant(TENANT_A, user_id="w", role="admin").workflows
        wf = await writer.create(valid_definition("shared"))

        async def load(database: pydbal.Database) -> None:
            scope = database.tenant(TENANT_A, user_id="u", role="admin").workflows
            for i in range(100):
                assert (await scope.list({"name": f"n{i % 7}"})).total == 0
                assert (await scope.get(wf.id)) is not None

        await asyncio.gather(*(load(d) for d in opened for _ in range(2)))
        health = await opened[0].health()
        assert health.status == "healthy", health.problems
    finally:
        for d in opened:
            await d.close()
