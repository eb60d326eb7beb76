"""The batched recorder: exact counts under 16 producers with duplicates and stale tokens,
back-pressure, flush on exit and on cancellation, and a server restart in the middle of batches.

All writes go through the app login (``app``); counts are read back as the superuser (``raw``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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
from pydbal.recorder import Recorder, Refused

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
    # items of one workflow are reported in order; `missing` may be in another lane
    refused = [(r.item.execution_id, r.code) for r in report.refused]
    assert [x for x in refused if x[0] != "b"] == [
        ("a", ErrorCode.CONFLICT),
        ("c", ErrorCode.VALIDATION_ERROR),
    ]
    assert ("b", ErrorCode.WORKFLOW_NOT_FOUND) in refused and len(refused) == 3
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


# --- the batch is recording one by one -----------------------------------------------------------


def _mixed_plan(
    wf: list[Any], held: Any, locked: Any, lock: Any, stale: Any, hours: list[datetime]
) -> list[tuple[Any, ...]]:
    """(workflow, status, ms, execution id, token, started_at, error): every path of a batch."""
    h = hours
    ghost = uuid.UUID(int=7)  # a workflow of no tenant
    return [
        (wf[0], "success", 12.345, "a1", None, h[0], None),
        (wf[1], "failure", 0.3, "a2", None, h[0], "boom"),
        (wf[0], "success", 12.345, "a1", None, h[0], None),  # in-batch duplicate
        (wf[0], "pending", None, "p1", None, h[1], "half"),  # pending ...
        (wf[0], "pending", None, "p1", None, h[1], None),  # ... repeated: duplicate
        (wf[2], "success", 3.0, "p1", None, h[1], None),  # other workflow: 409
        (wf[0], "timeout", 1e5 / 7, "p1", None, h[1], "late"),  # ... completed in the batch
        (wf[0], "success", 1.0, "p1", None, h[1], None),  # another final status: 409
        (wf[0], "pending", None, "p1", None, h[1], None),  # a late pending: duplicate
        (wf[1], "success", 7.77, "old-p", None, None, None),  # completes a pending of before
        (wf[1], "failure", 2.5, "old-p2", None, None, "x"),  # ... whose hourly row is gone
        (wf[2], "failure", 9.1, "old-f", None, None, None),  # recorded as success before: 409
        (wf[2], "success", 9.1, "old-f", None, None, None),  # the same status: duplicate
        (held, "success", 4.2, "s1", stale, h[2], None),  # stale token: refused (4233)
        (held, "success", 4.2, "s1", lock, h[2], None),  # the holder's token: recorded
        (held, "pending", None, "s2", lock, h[3], None),
        (locked, "success", 1.5, "l1", None, h[2], None),  # locked by bob: 4231
        (ghost, "success", 1.0, "g1", None, h[2], None),  # unknown workflow: 4041
        (wf[0], "paused", 1.0, "bad1", None, h[2], None),  # unknown status: 422
        (wf[0], "success", float("nan"), "bad2", None, h[2], None),  # NaN: 422
        (wf[0], "success", None, "bad3", None, h[2], None),  # final without duration: 422
        (wf[0], "success", -1.0, "bad4", None, h[2], None),  # negative: 422
        (wf[0], "success", 1.0, "x" * 256, None, h[2], None),  # id too long: 422
        (wf[0], "success", 1.0, "fut", None, h[-1] + timedelta(hours=3), None),  # future: 422
        (wf[0], "success", 1.0, "fut", None, h[2], None),  # the same id, valid: recorded
        (wf[0], "success", 0.0, "z0", None, h[2], None),  # bucket 0
        *[
            (
                wf[k % 3],
                ("success", "failure", "timeout")[k % 3],
                (k * 0.37) ** 1.5 + 0.1,
                f"m{k}",
                None,
                h[k % len(h)],
                None,
            )
            for k in range(40)
        ],
        (wf[1], "pending", None, "q1", None, h[4], None),  # the workflow's latest run ...
        (wf[1], "success", 8.0, "q1", None, h[4], None),  # ... completed: sets the status
        (wf[2], "success", 5.0, "tie", None, h[4], None),
        (wf[2], "failure", 5.0, "tie2", None, h[4], None),  # same started_at: the later wins
    ]


def _details(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else (value or {})


async def test_batch_equals_one_by_one(app: pydbal.Database, db: Any, raw: Any) -> None:
    """The same items, with the same history before, recorded one by one with record_execution
    (tenant acme) and as one record_executions batch (tenant globex): the outcomes, every
    counter, every roll-up row (histograms too), execution row, key and audit detail agree
    exactly (floating-point sums and the running mean to the last bit)."""
    from pydbal import queries as q
    from pydbal.errors import from_postgres

    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    hours = [now - timedelta(hours=n, minutes=7 * n) for n in (30, 26, 5, 3, 1)]
    setups = {}
    for tenant in ("acme", "globex"):
        scope = app.tenant(tenant, user_id="alice", role="admin")
        wf = [(await scope.workflows.create(valid_definition(f"w{i}"))).id for i in range(3)]
        held = (await scope.workflows.create(valid_definition("held"))).id
        locked = (await scope.workflows.create(valid_definition("locked"))).id
        bob = app.tenant(tenant, user_id="bob", role="admin")
        assert await bob.workflows.acquire_lock(locked, timeout_ms=600000) is not None
        stale = await scope.workflows.acquire_lock(held, timeout_ms=600000)
        assert stale is not None
        await scope.workflows.release_lock(held, stale)
        lock = await scope.workflows.acquire_lock(held, timeout_ms=600000)
        assert lock is not None
        # the same history before the batch
        await scope.workflows.record_execution(wf[1], "pending", None, "old-p", started_at=hours[0])
        await scope.workflows.record_execution(
            wf[1], "pending", None, "old-p2", started_at=hours[2]
        )
        await scope.workflows.record_execution(wf[2], "success", 9.1, "old-f", started_at=hours[3])
        await scope.workflows.record_execution(wf[0], "success", 2.2, "old-s", started_at=hours[4])
        setups[tenant] = (wf, held, locked, lock.token, stale.token)
        await raw.execute(
            "DELETE FROM dbal.workflow_stats_hourly WHERE tenant_id = $1 AND hour = $2",
            tenant,
            datetime.fromtimestamp(hours[2].timestamp() // 3600 * 3600, UTC),
        )

    conn = await db.connect()

    def plan_of(tenant: str) -> list[tuple[Any, ...]]:
        wf, held, locked, token, stale = setups[tenant]
        return _mixed_plan(wf, held, locked, token, stale, hours)

    one_by_one: list[tuple[Any, ...]] = []
    for wid, status, ms, eid, token, started, err in plan_of("acme"):
        try:
            row = await conn.fetchrow(
                q.RECORD_EXECUTION,
                "acme",
                "alice",
                "admin",
                wid,
                status,
                ms,
                eid,
                token,
                started,
                err,
            )
            one_by_one.append((row["execution_id"], row["outcome"], None, None, {}))
        except asyncpg.PostgresError as exc:
            mapped = from_postgres(exc)
            assert mapped is not None, exc
            one_by_one.append((eid, "refused", int(mapped.code), mapped.message, mapped.details))

    plan = plan_of("globex")
    rows = await conn.fetch(
        q.RECORD_EXECUTIONS,
        "globex",
        "alice",
        "admin",
        *[list(col) for col in zip(*plan, strict=True)],
    )
    assert [r["ord"] for r in rows] == list(range(1, len(plan) + 1))
    batch = [
        (r["execution_id"], r["outcome"], r["code"], r["message"], _details(r["details"]))
        for r in rows
    ]

    # the same workflow ids in both tenants' results
    names = {}
    for tenant in ("acme", "globex"):
        wf, held, locked, _, _ = setups[tenant]
        names.update({str(w): f"wf{i}" for i, w in enumerate(wf)})
        names.update({str(held): "held", str(locked): "locked"})

    def norm(value: Any) -> Any:
        if isinstance(value, dict):  # when bob took his lock differs between the tenants
            return {k: "<when>" if k == "locked_at" else norm(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(norm(v) for v in value)
        if isinstance(value, uuid.UUID | str) and str(value) in names:
            return names[str(value)]
        if isinstance(value, str) and value.startswith("{"):
            return norm(json.loads(value))
        return value

    assert norm(batch) == norm(one_by_one)
    outcomes = [b[1] for b in batch]
    assert outcomes.count("completed") == 4 and outcomes.count("duplicate") == 4
    assert {b[2] for b in batch} == {None, 409, 422, 4041, 4231, 4233}

    queries = {
        "workflows": "SELECT id, execution_count, finished_execution_count, average_execution_time,"
        " last_executed_at, last_execution_status, version, updated_at IS NOT NULL"
        " FROM dbal.workflows WHERE tenant_id = $1 ORDER BY name",
        "hourly": "SELECT workflow_id, hour, success, failure, pending, timeout, finished, sum_ms,"
        " min_ms, max_ms, hist FROM dbal.workflow_stats_hourly WHERE tenant_id = $1",
        "daily": "SELECT workflow_id, day, success, failure, pending, timeout, finished, sum_ms,"
        " min_ms, max_ms, hist FROM dbal.workflow_stats_daily WHERE tenant_id = $1",
        "executions": "SELECT workflow_id, execution_id, status, duration_ms, started_at,"
        " finished_at, executed_by, error FROM dbal.workflow_executions WHERE tenant_id = $1",
        "keys": "SELECT workflow_id, execution_id, started_at, status FROM dbal.execution_keys"
        " WHERE tenant_id = $1",
        "audit": "SELECT workflow_id, user_id, user_role, details FROM dbal.audit_log"
        " WHERE tenant_id = $1 AND operation = 'execution' ORDER BY id",
    }
    for name, sql in queries.items():
        got = {}
        for tenant in ("acme", "globex"):
            result = [norm(tuple(r)) for r in await raw.fetch(sql, tenant)]
            got[tenant] = result if name in ("workflows", "audit") else sorted(result, key=repr)
        assert got["globex"] == got["acme"], name
        assert got["acme"], name


@pytest.mark.single_node(
    reason="timing: through a Citus coordinator the first statement with array parameters on a "
    "new pool connection waits 1-3 s for asyncpg's type introspection (Citus' "
    "citus.override_table_visibility filters its pg_class reads), so the lane whose connection "
    "is new starts ~1 s late and the lanes' batches no longer overlap; the dispatcher under "
    "test is the same Python code (docs/scale-out.md, 'The batched recorder')"
)
async def test_lanes_write_in_parallel(
    app: pydbal.Database, acme: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One tenant's batches over different workflows (lanes) are in flight together, one batch
    per lane at a time, and the dispatcher does not starve a lane."""
    lanes: dict[int, Any] = {}
    n = 0
    while len(lanes) < 2:
        wf = await acme.workflows.create(valid_definition(f"lane{n}"))
        lanes.setdefault(wf.id.int % 2, wf)
        n += 1

    inflight: dict[int, int] = {0: 0, 1: 0}
    seen: list[tuple[int, int]] = []
    send = Recorder._send

    async def slow_send(self: Recorder, key: Any, items: Any) -> Any:
        inflight[key[3]] += 1
        seen.append((inflight[0], inflight[1]))
        try:
            await asyncio.sleep(0.05)
            return await send(self, key, items)
        finally:
            inflight[key[3]] -= 1

    monkeypatch.setattr(Recorder, "_send", slow_send)
    async with app.recorder(batch_size=10, max_delay=0.001, concurrency=2) as rec:
        for i in range(60):
            rec.record(acme, lanes[i % 2].id, "success", 1.0)
        report = await rec.flush()
    assert report.stored_count == 60 and not report.refused
    assert max(max(s) for s in seen) == 1  # one batch per lane
    assert (1, 1) in seen  # both lanes at once
    assert sum(1 for s in seen if s == (1, 1)) >= 4  # not only the first round
