"""Locks, record_execution, statistics, executions, audit and the executing() helper."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dbhelpers import expire_leases

import pydbal
from pydbal import ErrorCode, Tenant

from .conftest import TENANT_A, cyclic_definition, raises_code, row, valid_definition


async def test_acquire_renew_release(app: pydbal.Database, acme: Tenant, raw: Any) -> None:
    wf = await acme.workflows.create(valid_definition("L"))
    lock = await acme.workflows.acquire_lock(wf.id, timeout_ms=5000)
    assert isinstance(lock, pydbal.Lock)
    assert lock.token >= 1 and lock.expires_at.tzinfo is not None
    r = await row(raw, wf.id)
    assert r is not None and r["is_locked"] and r["locked_by"] == "alice"
    got = await acme.workflows.get(wf.id)
    assert got is not None and got.is_locked and got.locked_by == "alice"
    # not re-entrant, and another user cannot take it
    assert await acme.workflows.acquire_lock(wf.id) is None
    bob = app.tenant(TENANT_A, user_id="bob", role="user")
    assert await bob.workflows.acquire_lock(wf.id) is None

    renewed = await acme.workflows.renew_lock(wf.id, lock, timeout_ms=60000)
    assert renewed is not None and renewed.token == lock.token
    assert renewed.expires_at > lock.expires_at
    # someone else cannot renew it
    assert await bob.workflows.renew_lock(wf.id, lock) is None

    assert await acme.workflows.release_lock(wf.id, renewed) is True
    assert await acme.workflows.release_lock(wf.id) is False  # nothing to release
    assert await acme.workflows.renew_lock(wf.id, lock) is None  # lost once released
    again = await bob.workflows.acquire_lock(wf.id)
    assert again is not None and again.token == lock.token + 1  # fencing token grows
    with raises_code(ErrorCode.LOCK_NOT_OWNED):
        await acme.workflows.release_lock(wf.id, lock)  # stale token
    with raises_code(ErrorCode.WORKFLOW_NOT_FOUND):
        await acme.workflows.acquire_lock(uuid.uuid4())


async def test_lock_expires(app: pydbal.Database, acme: Tenant, raw: Any) -> None:
    wf = await acme.workflows.create(valid_definition("exp"))
    lock = await acme.workflows.acquire_lock(wf.id, timeout_ms=60_000)
    assert lock is not None
    await expire_leases(raw, wf.id)  # the lease's end moves into the past: no waiting on the clock
    got = await acme.workflows.get(wf.id)
    assert got is not None and got.is_locked is False and got.locked_by is None
    assert await acme.workflows.renew_lock(wf.id, lock) is None
    bob = app.tenant(TENANT_A, user_id="bob", role="user")
    assert await bob.workflows.acquire_lock(wf.id) is not None


async def test_lock_refused_for_disabled_and_invalid(acme: Tenant) -> None:
    off = await acme.workflows.create(valid_definition("off", enabled=False))
    with raises_code(ErrorCode.WORKFLOW_DISABLED):
        await acme.workflows.acquire_lock(off.id)
    bad = await acme.workflows.create(cyclic_definition("bad"))
    with raises_code(ErrorCode.VALIDATION_STATUS_INVALID):
        await acme.workflows.acquire_lock(bad.id)


async def test_locked_workflow_cannot_be_changed_by_another_user(
    app: pydbal.Database, acme: Tenant, raw: Any
) -> None:
    wf = await acme.workflows.create(valid_definition("held"))
    bob = app.tenant(TENANT_A, user_id="bob", role="user")
    lock = await bob.workflows.acquire_lock(wf.id)
    assert lock is not None
    before = await row(raw, wf.id)
    with raises_code(ErrorCode.WORKFLOW_LOCKED) as info:
        await acme.workflows.update(wf.id, {"description": "x"})
    assert info.value.details.get("locked_by") == "bob"
    assert info.value.details.get("locked_at")
    with raises_code(ErrorCode.WORKFLOW_LOCKED):
        await acme.workflows.delete(wf.id)
    with raises_code(ErrorCode.WORKFLOW_LOCKED):
        await acme.workflows.set_enabled(wf.id, False)
    assert await row(raw, wf.id) == before


async def test_record_execution_outcomes_and_counters(acme: Tenant) -> None:
    wf = await acme.workflows.create(valid_definition("rec"))
    first = await acme.workflows.record_execution(wf.id, "success", 10.0)
    assert isinstance(first, pydbal.RecordedExecution)
    assert first.outcome == "recorded" and first.execution_id
    dup = await acme.workflows.record_execution(wf.id, "success", 10.0, first.execution_id)
    assert dup.outcome == "duplicate" and dup.execution_id == first.execution_id
    pending = await acme.workflows.record_execution(wf.id, "pending", None, "run-2")
    assert pending.outcome == "recorded"
    done = await acme.workflows.record_execution(wf.id, "failure", 30.0, "run-2")
    assert done.outcome == "completed"
    late = await acme.workflows.record_execution(wf.id, "pending", None, "run-2")
    assert late.outcome == "duplicate"
    with raises_code(ErrorCode.CONFLICT):
        await acme.workflows.record_execution(wf.id, "success", 1.0, "run-2")

    got = await acme.workflows.get(wf.id)
    assert got is not None
    assert got.execution_count == 2
    assert got.average_execution_time == pytest.approx(20.0)
    assert got.last_execution_status == "failure"
    assert got.last_executed_at is not None and got.last_executed_at.tzinfo is not None

    with raises_code(ErrorCode.VALIDATION_ERROR):
        await acme.workflows.record_execution(wf.id, "exploded", 1.0)
    with raises_code(ErrorCode.VALIDATION_ERROR):
        await acme.workflows.record_execution(wf.id, "success", "fast")  # type: ignore[arg-type]
    with raises_code(ErrorCode.VALIDATION_ERROR):
        await acme.workflows.record_execution(wf.id, "success", -1.0)
    with raises_code(ErrorCode.VALIDATION_ERROR):
        await acme.workflows.record_execution(
            wf.id, "success", 1.0, started_at=datetime(2024, 1, 1)
        )
    with raises_code(ErrorCode.WORKFLOW_NOT_FOUND):
        await acme.workflows.record_execution(uuid.uuid4(), "success", 1.0)


async def test_record_execution_with_lock_token(app: pydbal.Database, acme: Tenant) -> None:
    wf = await acme.workflows.create(valid_definition("tok"))
    lock = await acme.workflows.acquire_lock(wf.id)
    assert lock is not None
    rec = await acme.workflows.record_execution(wf.id, "success", 3.0, lock=lock)
    assert rec.outcome == "recorded"
    bob = app.tenant(TENANT_A, user_id="bob", role="admin")
    with raises_code(ErrorCode.WORKFLOW_LOCKED):
        await bob.workflows.record_execution(wf.id, "success", 3.0)
    with raises_code(ErrorCode.LOCK_NOT_OWNED):
        await bob.workflows.record_execution(wf.id, "success", 3.0, lock=lock)
    assert await acme.workflows.release_lock(wf.id, lock)
    with raises_code(ErrorCode.LOCK_NOT_OWNED):
        await acme.workflows.record_execution(wf.id, "success", 3.0, lock=lock)


async def test_stats_and_executions(acme: Tenant) -> None:
    wf = await acme.workflows.create(valid_definition("stats"))
    now = datetime.now(UTC)
    for i, (status, ms) in enumerate(
        [("success", 10.0), ("success", 20.0), ("failure", 30.0), ("timeout", 40.0)]
    ):
        await acme.workflows.record_execution(
            wf.id, status, ms, f"e{i}", started_at=now - timedelta(minutes=10 - i)
        )
    await acme.workflows.record_execution(wf.id, "pending", None, "e9")
    stats = await acme.workflows.get_execution_stats(wf.id)
    assert isinstance(stats, pydbal.ExecutionStats)
    assert (stats.total, stats.success, stats.failure, stats.timeout, stats.pending) == (
        5,
        2,
        1,
        1,
        1,
    )
    assert stats.average_ms == pytest.approx(25.0)
    assert stats.min_ms == pytest.approx(10.0) and stats.max_ms == pytest.approx(40.0)
    assert stats.p50_ms is not None and 10.0 * 0.95 <= stats.p50_ms <= 40.0 * 1.05
    assert stats.last_executed_at is not None and stats.last_executed_at.tzinfo is not None
    window = await acme.workflows.get_execution_stats(
        wf.id, now - timedelta(minutes=8, seconds=30), now - timedelta(minutes=6, seconds=30)
    )
    assert (window.total, window.failure, window.timeout) == (2, 1, 1)  # e2, e3

    runs = await acme.workflows.executions(wf.id)
    assert [r.execution_id for r in runs] == ["e9", "e3", "e2", "e1", "e0"]
    assert all(r.started_at.tzinfo is not None for r in runs)
    assert runs[1].duration_ms == pytest.approx(40.0) and runs[1].status == "timeout"
    assert [r.execution_id for r in await acme.workflows.executions(wf.id, status="success")] == [
        "e1",
        "e0",
    ]
    assert len(await acme.workflows.executions(wf.id, limit=2)) == 2
    assert [
        r.execution_id
        for r in await acme.workflows.executions(
            wf.id, start=now - timedelta(minutes=9, seconds=30), end=now - timedelta(minutes=7)
        )
    ] == ["e2", "e1"]
    with raises_code(ErrorCode.VALIDATION_ERROR):
        await acme.workflows.executions(wf.id, status="weird")
    with raises_code(ErrorCode.WORKFLOW_NOT_FOUND):
        await acme.workflows.executions(uuid.uuid4())
    with raises_code(ErrorCode.WORKFLOW_NOT_FOUND):
        await acme.workflows.get_execution_stats(uuid.uuid4())


async def test_audit_rows_for_every_change(acme: Tenant) -> None:
    wf = await acme.workflows.create(valid_definition("aud"))
    await acme.workflows.update(wf.id, {"description": "x"})
    lock = await acme.workflows.acquire_lock(wf.id)
    assert lock is not None
    await acme.workflows.record_execution(wf.id, "success", 1.0, lock=lock)
    await acme.workflows.release_lock(wf.id, lock)
    entries = await acme.workflows.audit(wf.id)
    assert all(isinstance(e, pydbal.AuditEntry) for e in entries)
    assert all(e.tenant_id == TENANT_A and e.user_id == "alice" for e in entries)
    assert all(e.at.tzinfo is not None for e in entries)
    ops = [e.operation for e in entries]
    for op in ("lock_acquire", "execution", "lock_release"):
        assert op in ops, ops
    assert len(ops) >= 5  # create + update + lock + execution + release
    assert ops.index("lock_release") < ops.index("lock_acquire")  # newest first
    other = await acme.workflows.create(valid_definition("aud2"))
    everything = await acme.workflows.audit()
    assert {e.workflow_id for e in everything} >= {wf.id, other.id}
    assert len(await acme.workflows.audit(limit=1)) == 1
    await acme.workflows.delete(other.id)
    assert len(await acme.workflows.audit()) > len(everything)


# --- executing() -------------------------------------------------------------------------------


async def test_executing_success_records_duration_and_releases(acme: Tenant) -> None:
    wf = await acme.workflows.create(valid_definition("run"))
    async with acme.workflows.executing(wf.id) as run:
        got = await acme.workflows.get(wf.id)
        assert got is not None and got.is_locked and got.locked_by == "alice"
        await asyncio.sleep(0.05)
    assert run.recorded is not None and run.recorded.outcome == "recorded"
    runs = await acme.workflows.executions(wf.id)
    assert len(runs) == 1 and runs[0].status == "success"
    assert runs[0].execution_id == run.execution_id
    assert runs[0].duration_ms is not None and runs[0].duration_ms >= 45
    got = await acme.workflows.get(wf.id)
    assert got is not None and got.is_locked is False and got.execution_count == 1


async def test_executing_failure_is_recorded_and_reraised(acme: Tenant) -> None:
    wf = await acme.workflows.create(valid_definition("boom"))

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with acme.workflows.executing(wf.id):
            raise Boom("bad thing")
    runs = await acme.workflows.executions(wf.id)
    assert len(runs) == 1 and runs[0].status == "failure"
    assert runs[0].error is not None and "bad thing" in runs[0].error
    assert runs[0].duration_ms is not None
    got = await acme.workflows.get(wf.id)
    assert got is not None and got.is_locked is False
    assert got.last_execution_status == "failure"


async def test_executing_timeout_is_recorded_as_timeout(acme: Tenant) -> None:
    wf = await acme.workflows.create(valid_definition("too slow"))
    with pytest.raises(TimeoutError):
        async with acme.workflows.executing(wf.id, deadline_ms=50):
            await asyncio.sleep(5)
    runs = await acme.workflows.executions(wf.id)
    assert [r.status for r in runs] == ["timeout"]
    assert runs[0].duration_ms is not None and runs[0].duration_ms >= 40
    got = await acme.workflows.get(wf.id)
    assert got is not None and got.is_locked is False and got.last_execution_status == "timeout"


async def test_executing_with_a_lost_lease_does_not_record_success(
    app: pydbal.Database, acme: Tenant
) -> None:
    wf = await acme.workflows.create(valid_definition("lost lease"))
    other = app.tenant(TENANT_A, user_id="bob", role="admin")
    with raises_code(ErrorCode.LOCK_NOT_OWNED):
        async with acme.workflows.executing(wf.id, timeout_ms=100) as run:
            run_lock = run.lock
            await other.workflows.release_lock(wf.id)  # an admin breaks the lease ...
            assert await other.workflows.acquire_lock(wf.id) is not None  # ... and takes it
    assert run_lock.token >= 1
    assert await acme.workflows.executions(wf.id) == []  # the stale holder wrote nothing


async def test_executing_renews_a_short_lease(acme: Tenant, raw: Any) -> None:
    wf = await acme.workflows.create(valid_definition("slow"))
    async with acme.workflows.executing(wf.id, timeout_ms=1000) as run:
        first_end = await raw.fetchval(
            "SELECT lock_expires_at FROM dbal.workflows WHERE id = $1", wf.id
        )
        # wait (on the database's clock, up to 20 s) until the first lease's end has passed: only
        # renewal can keep the lock now. A 1 s lease renewed every third of it tolerates stalls of
        # ~600 ms, so a loaded machine does not make this test fail.
        for _ in range(400):
            if await raw.fetchval("SELECT clock_timestamp() > $1::timestamptz", first_end):
                break
            await asyncio.sleep(0.05)
        held = await raw.fetchrow(
            "SELECT locked_by, lock_expires_at FROM dbal.workflows WHERE id = $1", wf.id
        )
        assert held["locked_by"] == "alice" and held["lock_expires_at"] > first_end
    assert run.lost is False
    assert run.recorded is not None and run.recorded.outcome == "recorded"
    got = await acme.workflows.get(wf.id)
    assert got is not None and got.is_locked is False


async def test_executing_refusals(app: pydbal.Database, acme: Tenant) -> None:
    off = await acme.workflows.create(valid_definition("off", enabled=False))
    with raises_code(ErrorCode.WORKFLOW_DISABLED) as info:
        async with acme.workflows.executing(off.id):
            pytest.fail("the block must not run")
    assert int(info.value.code) == 4042
    bad = await acme.workflows.create(cyclic_definition("bad"))
    with raises_code(ErrorCode.VALIDATION_STATUS_INVALID) as info:
        async with acme.workflows.executing(bad.id):
            pytest.fail("the block must not run")
    assert int(info.value.code) == 4243
    held = await acme.workflows.create(valid_definition("held"))
    bob = app.tenant(TENANT_A, user_id="bob", role="user")
    lock = await bob.workflows.acquire_lock(held.id)
    assert lock is not None
    with raises_code(ErrorCode.WORKFLOW_LOCKED) as info:
        async with acme.workflows.executing(held.id):
            pytest.fail("the block must not run")
    assert int(info.value.code) == 4231
    assert info.value.details["locked_by"] == "bob"
    assert info.value.details["locked_at"]
    # bob's lock is untouched
    got = await acme.workflows.get(held.id)
    assert got is not None and got.locked_by == "bob"
    assert await acme.workflows.executions(held.id) == []
    with raises_code(ErrorCode.WORKFLOW_NOT_FOUND):
        async with acme.workflows.executing(uuid.uuid4()):
            pytest.fail("the block must not run")


async def test_executing_as_role_user(app: pydbal.Database, acme: Tenant) -> None:
    wf = await acme.workflows.create(valid_definition("any role"))
    user = app.tenant(TENANT_A, user_id="ursula", role="user")
    async with user.workflows.executing(wf.id) as run:
        pass
    assert run.recorded is not None
    runs = await acme.workflows.executions(wf.id)
    assert runs[0].executed_by == "ursula"


class _BlockError(Exception):
    pass


async def test_executing_logs_a_failed_record_and_raises_the_blocks_error(
    acme: Tenant, raw: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 10: the block's own error comes out even when recording it fails (the workflow was
    archived meanwhile, so the record is refused), and the failed record is logged, not lost."""
    wf = await acme.workflows.create(valid_definition("archived mid-run"))
    with caplog.at_level("WARNING", logger="pydbal.workflows"), pytest.raises(_BlockError):
        async with acme.workflows.executing(wf.id):
            await raw.execute(
                "UPDATE dbal.workflows SET archived_at = now(), archived_by = 'x',"
                " is_locked = false, locked_by = NULL, locked_at = NULL, lock_expires_at = NULL"
                " WHERE id = $1",
                wf.id,
            )
            raise _BlockError("the block failed")
    assert any("recording the failure failed" in r.getMessage() for r in caplog.records)
    assert await raw.fetchval("SELECT count(*) FROM dbal.workflow_executions") == 0


async def test_executing_does_not_swallow_base_exceptions(acme: Tenant, raw: Any) -> None:
    """KeyboardInterrupt / SystemExit pass through untouched: nothing recorded as a failure."""
    wf = await acme.workflows.create(valid_definition("interrupted"))
    with pytest.raises(KeyboardInterrupt):
        async with acme.workflows.executing(wf.id):
            raise KeyboardInterrupt
    assert await raw.fetchval("SELECT count(*) FROM dbal.workflow_executions") == 0
    assert (await row(raw, wf.id))["is_locked"] is False  # the lock is still released
