"""The batched recorder: exact counts under 16 producers with duplicates and stale tokens,
back-pressure, flush on exit and on cancellation, and a server restart in the middle of batches.

All writes go through the app login (``app``); counts are read back as the superuser (``raw``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

import pydbal
from pydbal import ErrorCode, Tenant
from pydbal.recorder import Refused

from .conftest import TENANT_A, valid_definition

PG_BIN = Path("/usr/lib/postgresql/15/bin")


async def _counts(raw: Any, workflow_ids: list[Any]) -> dict[str, Any]:
    ids = [uuid.UUID(str(w)) for w in workflow_ids]
    return {
        "rows": await raw.fetchval(
            "SELECT count(*) FROM dbal.workflow_executions WHERE workflow_id = ANY($1)", ids
        ),
        "keys": await raw.fetchval(
            "SELECT count(*) FROM dbal.execution_keys WHERE workflow_id = ANY($1)", ids
        ),
        "pending": await raw.fetchval(
            "SELECT count(*) FROM dbal.workflow_executions WHERE workflow_id = ANY($1)"
            " AND status = 'pending'",
            ids,
        ),
        "counters": await raw.fetchval(
            "SELECT sum(execution_count) FROM dbal.workflows WHERE id = ANY($1)", ids
        ),
        "hourly": await raw.fetchval(
            "SELECT sum(success + failure + pending + timeout) FROM dbal.workflow_stats_hourly"
            " WHERE workflow_id = ANY($1)",
            ids,
        ),
        "daily": await raw.fetchval(
            "SELECT sum(success + failure + pending + timeout) FROM dbal.workflow_stats_daily"
            " WHERE workflow_id = ANY($1)",
            ids,
        ),
    }


async def test_sixteen_producers_exact_counts(app: pydbal.Database, acme: Tenant, raw: Any) -> None:
    free = [await acme.workflows.create(valid_definition(f"free{i}")) for i in range(3)]
    held = await acme.workflows.create(valid_definition("held"))
    old = await acme.workflows.acquire_lock(held.id, timeout_ms=60000)
    assert old is not None
    await acme.workflows.release_lock(held.id, old)
    lock = await acme.workflows.acquire_lock(held.id, timeout_ms=60000)
    assert lock is not None and lock.token == old.token + 1  # `old` is now a stale token
    refusals: list[Refused] = []
    per_producer = 120
    expected_new = expected_dup = expected_stale = expected_completed = 0
    plans: list[list[tuple[Any, ...]]] = []
    for p in range(16):
        plan: list[tuple[Any, ...]] = []
        for i in range(per_producer):
            eid = f"p{p}-{i}"
            wf = free[(p + i) % 3]
            if i % 10 == 9:  # a repeat of this producer's previous id, same status: duplicate
                plan.append((free[(p + i - 1) % 3].id, "success", 1.0, f"p{p}-{i - 1}", None))
                expected_dup += 1
            elif i % 10 == 5:  # pending now, completed by the next item (often in one batch)
                plan.append((held.id, "pending", None, eid, lock))
                plan.append((held.id, "failure", 5.0, eid, lock))
                expected_new += 1
                expected_completed += 1
            elif i % 10 == 7:  # a stale token: refused, and only this item
                plan.append((held.id, "success", 2.0, eid, old))
                expected_stale += 1
            else:
                plan.append((wf.id, "success", float(i), eid, None))
                expected_new += 1
        plans.append(plan)
    async with app.recorder(
        batch_size=64, max_delay=0.005, max_queue=256, on_error=refusals.append
    ) as rec:

        async def produce(plan: list[tuple[Any, ...]]) -> None:
            for n, (wid, status, ms, eid, lk) in enumerate(plan):
                await rec.record(acme, wid, status, ms, execution_id=eid, lock=lk)
                if n % 7 == 0:
                    await asyncio.sleep(0)  # interleave the producers

        await asyncio.gather(*(produce(plan) for plan in plans))
        report = await rec.flush()
    outcomes: dict[str, int] = {}
    for s in report.stored:
        outcomes[s.outcome] = outcomes.get(s.outcome, 0) + 1
    assert outcomes == {
        "recorded": expected_new,
        "duplicate": expected_dup,
        "completed": expected_completed,
    }
    assert report.stored_count == expected_new + expected_dup + expected_completed
    assert len(report.refused) == expected_stale == len(refusals)
    assert {r.code for r in report.refused} == {ErrorCode.LOCK_NOT_OWNED}
    assert not report.failed
    counts = await _counts(raw, [w.id for w in [*free, held]])
    assert counts == {
        "rows": expected_new,
        "keys": expected_new,
        "pending": 0,
        "counters": expected_new,
        "hourly": expected_new,
        "daily": expected_new,
    }
    done = await raw.fetchval(
        "SELECT count(*) FROM dbal.workflow_executions WHERE workflow_id = $1 AND status ="
        " 'failure'",
        held.id,
    )
    assert done == expected_completed
    # a second flush reports nothing new; recording the same ids again changes nothing
    assert (await rec.flush()).stored == []
    async with app.recorder() as again:
        for plan in plans[:2]:
            for wid, status, ms, eid, lk in plan:
                if lk is None:
                    again.record(acme, wid, status, ms, execution_id=eid)
        rep = await again.flush()
    assert {s.outcome for s in rep.stored} == {"duplicate"}
    assert await _counts(raw, [w.id for w in [*free, held]]) == counts


async def test_refusals_are_per_item(app: pydbal.Database, acme: Tenant, raw: Any) -> None:
    wf = await acme.workflows.create(valid_definition("one"))
    missing = uuid.uuid4()
    async with app.recorder(max_delay=60) as rec:
        rec.record(acme, wf.id, "success", 1.0, execution_id="a")
        rec.record(acme, missing, "success", 1.0, execution_id="b")
        rec.record(acme, wf.id, "failure", 1.0, execution_id="a")  # another final status
        rec.record(
            acme,
            wf.id,
            "success",
            1.0,
            execution_id="c",
            started_at=datetime.now(UTC) + timedelta(hours=1),
        )
        rec.record(acme, wf.id, "timeout", 3.0, execution_id="d")
        with pytest.raises(pydbal.DBALError):
            rec.record(acme, wf.id, "bogus", 1.0)  # checked at once, never queued
        report = await rec.flush()
    assert [(s.item.execution_id, s.outcome) for s in report.stored] == [
        ("a", "recorded"),
        ("d", "recorded"),
    ]
    assert [(r.item.execution_id, r.code) for r in report.refused] == [
        ("b", ErrorCode.WORKFLOW_NOT_FOUND),
        ("a", ErrorCode.CONFLICT),
        ("c", ErrorCode.VALIDATION_ERROR),
    ]
    got = await acme.workflows.get(wf.id)
    assert got is not None and got.execution_count == 2


async def test_back_pressure_never_drops(app: pydbal.Database, acme: Tenant, raw: Any) -> None:
    wf = await acme.workflows.create(valid_definition("bp"))
    async with app.recorder(batch_size=5, max_queue=5, max_delay=60) as rec:
        first = [rec.record(acme, wf.id, "success", 1.0) for _ in range(5)]
        assert all(a.admitted for a in first)
        extra = [rec.record(acme, wf.id, "success", 1.0) for _ in range(7)]
        assert not any(a.admitted for a in extra)  # queue full: these wait for room
        ids = [await a for a in [*first, *extra]]  # returns once each entered the queue
        report = await rec.flush()
    assert len(set(ids)) == 12 and report.stored_count == 12
    assert (
        await raw.fetchval(
            "SELECT count(*) FROM dbal.workflow_executions WHERE workflow_id = $1", wf.id
        )
        == 12
    )


async def test_exit_flushes(app: pydbal.Database, acme: Tenant, raw: Any) -> None:
    wf = await acme.workflows.create(valid_definition("exit"))
    async with app.recorder(max_delay=3600, batch_size=1000) as rec:
        for i in range(10):
            rec.record(acme, wf.id, "success", float(i))
        assert rec.queued == 10
        count = await raw.fetchval(
            "SELECT count(*) FROM dbal.workflow_executions WHERE workflow_id = $1", wf.id
        )
        assert count == 0  # nothing written yet: max_delay is an hour
    assert rec.queued == 0
    assert (
        await raw.fetchval(
            "SELECT count(*) FROM dbal.workflow_executions WHERE workflow_id = $1", wf.id
        )
        == 10
    )
    with pytest.raises(RuntimeError):
        rec.record(acme, wf.id, "success", 1.0)


async def test_exit_by_exception_flushes(app: pydbal.Database, acme: Tenant, raw: Any) -> None:
    wf = await acme.workflows.create(valid_definition("boom"))
    with pytest.raises(ZeroDivisionError):
        async with app.recorder(max_delay=3600) as rec:
            rec.record(acme, wf.id, "failure", 1.0)
            1 / 0  # noqa: B018
    assert (
        await raw.fetchval(
            "SELECT count(*) FROM dbal.workflow_executions WHERE workflow_id = $1", wf.id
        )
        == 1
    )


async def test_cancellation_of_owner_flushes(app: pydbal.Database, acme: Tenant, raw: Any) -> None:
    wf = await acme.workflows.create(valid_definition("cancel"))
    queued = asyncio.Event()

    async def owner() -> None:
        async with app.recorder(max_delay=3600) as rec:
            for i in range(25):
                rec.record(acme, wf.id, "success", float(i))
            queued.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(owner())
    await queued.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (
        await raw.fetchval(
            "SELECT count(*) FROM dbal.workflow_executions WHERE workflow_id = $1", wf.id
        )
        == 25
    )


async def test_executing_batched(app: pydbal.Database, acme: Tenant, raw: Any) -> None:
    wf = await acme.workflows.create(valid_definition("run"))

    async def one() -> str:
        async with acme.workflows.executing(wf.id, record="batched") as run:
            await asyncio.sleep(0)
        return run.execution_id

    ids = [await one() for _ in range(3)]
    with pytest.raises(ValueError):
        async with acme.workflows.executing(wf.id, record="batched"):
            raise ValueError("x")
    rows = await raw.fetch(
        "SELECT execution_id, status FROM dbal.workflow_executions WHERE workflow_id = $1", wf.id
    )
    assert sorted(r["execution_id"] for r in rows if r["status"] == "success") == sorted(ids)
    assert [r["status"] for r in rows].count("failure") == 1
    got = await acme.workflows.get(wf.id)
    assert got is not None and not got.is_locked and got.execution_count == 4
    assert app._recorder is not None
    await app.close()
    assert app._recorder is None


# -- a server restart in the middle of batches ------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateServer:
    """A PostgreSQL 15 of our own in a temporary directory (never the shared server)."""

    def __init__(self, base: Path) -> None:
        self.data = base / "data"
        self.port = _free_port()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust")

    def start(self) -> None:
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
        log = str(self.data.parent / "server.log")
        self._run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", log, "-o", opts, "-w", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")


@pytest.fixture
def private_server() -> Iterator[PrivateServer]:
    if not (PG_BIN / "pg_ctl").exists():
        pytest.skip("PostgreSQL 15 binaries are not installed")
    base = Path(tempfile.mkdtemp(prefix="pydbal-outage-", dir="/tmp"))
    os.chmod(base, 0o777)
    server = PrivateServer(base)
    server.init()
    try:
        server.start()
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
async def outage_db(
    private_server: PrivateServer,
) -> AsyncIterator[tuple[pydbal.Database, PrivateServer]]:
    from pydbal.migrate import migrate

    await migrate(private_server.dsn)
    async with pydbal.connect(private_server.dsn, max_size=4, command_timeout=10) as database:
        yield database, private_server


async def test_restart_mid_batch_loses_and_doubles_nothing(
    outage_db: tuple[pydbal.Database, PrivateServer], caplog: pytest.LogCaptureFixture
) -> None:
    database, server = outage_db
    acme = database.tenant(TENANT_A, user_id="alice", role="admin")
    wf = await acme.workflows.create(valid_definition("outage"))
    failures: list[Refused] = []
    total = 3000
    async with database.recorder(
        batch_size=200, max_delay=0.002, max_queue=400, retry_for=60, on_error=failures.append
    ) as rec:

        async def produce(k: int) -> None:
            for i in range(total // 4):
                await rec.record(acme, wf.id, "success", 1.0, execution_id=f"{k}-{i}")
                if i % 50 == 0:
                    await asyncio.sleep(0.001)

        producers = asyncio.gather(*(produce(k) for k in range(4)))
        before = await rec.flush()  # some batches are acknowledged before the outage
        await asyncio.sleep(0.05)
        await asyncio.to_thread(server.stop, "immediate")  # a crash: batches in flight fail
        await asyncio.sleep(0.5)
        await asyncio.to_thread(server.start)
        await producers
        after = await rec.flush()
    assert "retrying" in caplog.text  # the crash did hit batches being written
    assert failures == [] and not after.failed
    acknowledged = [s.item.execution_id for s in [*before.stored, *after.stored]]
    assert len(acknowledged) == total and len(set(acknowledged)) == total
    conn = await asyncpg.connect(server.dsn)
    try:
        rows = await conn.fetchval(
            "SELECT count(*) FROM dbal.workflow_executions WHERE workflow_id = $1", wf.id
        )
        distinct = await conn.fetchval(
            "SELECT count(DISTINCT execution_id) FROM dbal.workflow_executions"
        )
        counter = await conn.fetchval(
            "SELECT execution_count FROM dbal.workflows WHERE id = $1", wf.id
        )
        hourly = await conn.fetchval(
            "SELECT sum(success) FROM dbal.workflow_stats_hourly WHERE workflow_id = $1", wf.id
        )
    finally:
        await conn.close()
    assert rows == distinct == counter == hourly == total


async def test_outage_beyond_bound_is_reported(
    outage_db: tuple[pydbal.Database, PrivateServer],
) -> None:
    database, server = outage_db
    acme = database.tenant(TENANT_A, user_id="alice", role="admin")
    wf = await acme.workflows.create(valid_definition("down"))
    failures: list[Refused] = []
    rec = database.recorder(max_delay=0, retry_for=0.5, on_error=failures.append)
    await asyncio.to_thread(server.stop, "fast")
    for i in range(3):
        rec.record(acme, wf.id, "success", 1.0, execution_id=f"x{i}")
    report = await rec.close()
    assert [r.item.execution_id for r in report.failed] == ["x0", "x1", "x2"]
    assert len(failures) == 3 and all(r.failed and r.code is None for r in failures)
