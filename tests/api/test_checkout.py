"""Database's connection checkout (pydbal/statements.py ``_checkout``/``_checkin``): connections
stay checked out of the pool between statements, yet never more than max_size, nobody waits
forever, and errors, cancellations and open transactions send a connection back to the pool."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import pydbal
from pydbal import DBALError

from .conftest import TENANT_A, valid_definition


@pytest.mark.parametrize("size", [1, 2])
async def test_many_concurrent_calls_share_a_small_pool(db: Any, size: int) -> None:
    async with pydbal.connect(
        db.app_dsn, min_size=1, max_size=size, cache={"hot": False, "warm": False}
    ) as app:
        wfs = app.tenant(TENANT_A, user_id="alice", role="admin").workflows
        wf = await wfs.create(valid_definition("shared"))

        async def read(i: int) -> Any:
            if i % 7 == 0:
                async with app.transaction() as conn:
                    return await conn.fetchval("SELECT 1")
            if i % 5 == 0:
                with pytest.raises(DBALError):
                    await app.fetchval("SELECT 1/0")
                return None
            return await wfs.get(wf.id)

        results = await asyncio.wait_for(asyncio.gather(*(read(i) for i in range(60))), 30)
        assert sum(1 for r in results if r is not None and r != 1) == 60 - 9 - 12 + 2
        assert app._held <= size and len(app._idle) <= size


async def test_cancelled_calls_give_their_connection_back(db: Any) -> None:
    async with pydbal.connect(
        db.app_dsn, min_size=1, max_size=1, cache={"hot": False, "warm": False}
    ) as app:
        slow = asyncio.ensure_future(app.fetchval("SELECT pg_sleep(5)"))
        await asyncio.sleep(0.2)
        waiting = asyncio.ensure_future(app.fetchval("SELECT 2"))  # waits for the one connection
        await asyncio.sleep(0.05)
        waiting.cancel()
        slow.cancel()
        for task in (slow, waiting):
            with pytest.raises(asyncio.CancelledError):
                await task
        assert await asyncio.wait_for(app.fetchval("SELECT 3"), 10) == 3
        assert app._held <= 1


async def test_a_transaction_left_by_an_error_is_not_reused(db: Any) -> None:
    async with pydbal.connect(
        db.app_dsn, min_size=1, max_size=1, cache={"hot": False, "warm": False}
    ) as app:
        with pytest.raises(RuntimeError):
            async with app.transaction() as conn:
                await conn.execute("SELECT set_config('dbal.tenant_id', 'x', true)")
                raise RuntimeError("boom")
        assert await app.fetchval("SELECT current_setting('dbal.tenant_id', true)") in ("", None)
        assert await app.fetchval("SELECT 1") == 1
