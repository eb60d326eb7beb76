"""Executions and statistics (sql/41_record_execution.sql, sql/42_execution_stats.sql).

The property test records random executions through dbal.record_execution as the application
login and compares dbal.execution_stats, over random windows, with a brute-force computation in
Python over what was recorded: counts exact, average/min/max to 1e-9, percentiles within 5 % of
the exact nearest-rank value (the documented bound of the log-scale histogram is 4.9 %).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from dbhelpers import (
    TENANT_A,
    context,
    create_workflow,
    expect_code,
    record,
    stats,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pydbal.errors import ErrorCode

from conftest import TestDatabase

FINAL = ("success", "failure", "timeout")
HOUR = timedelta(hours=1)


@dataclass
class Execution:
    id: str
    status: str  # the final status (or 'pending' when it never finished)
    duration: float
    started_at: datetime
    via_pending: bool  # recorded as 'pending' first, then completed
    repeat: bool  # sent again afterwards (must be a duplicate)


def _instant(base_hour: datetime, max_hours: int) -> st.SearchStrategy[datetime]:
    """A past instant: anywhere in the last ``max_hours``, or exactly on an hour boundary."""
    return st.one_of(
        st.floats(0, max_hours * 3600.0).map(lambda s: base_hour - timedelta(seconds=s)),
        st.integers(0, max_hours).map(lambda h: base_hour - h * HOUR),
    )


execution_specs = st.lists(
    st.tuples(
        st.sampled_from([*FINAL, "pending"]),
        st.floats(1.0, 100_000.0, allow_nan=False, allow_infinity=False),
        st.one_of(st.floats(0.0, 72 * 3600.0), st.integers(0, 72).map(lambda h: h * 3600.0)),
        st.booleans(),
        st.booleans(),
    ),
    min_size=0,
    max_size=40,
)
window_specs = st.lists(
    st.tuples(
        st.none() | st.floats(-1.0, 80 * 3600.0) | st.integers(0, 80).map(lambda h: h * 3600.0),
        st.none() | st.floats(-1.0, 80 * 3600.0) | st.integers(0, 80).map(lambda h: h * 3600.0),
    ),
    min_size=1,
    max_size=5,
)


def _nearest_rank(sorted_values: list[float], p: float) -> float:
    return sorted_values[max(math.ceil(p * len(sorted_values)), 1) - 1]


def brute_force(
    executions: list[Execution], start: datetime | None, end: datetime | None
) -> dict[str, Any]:
    inside = [
        e
        for e in executions
        if (start is None or e.started_at >= start) and (end is None or e.started_at < end)
    ]
    counts = {s: sum(e.status == s for e in inside) for s in (*FINAL, "pending")}
    durations = sorted(e.duration for e in inside if e.status != "pending")
    finished = counts["success"] + counts["failure"] + counts["timeout"]
    last = max(inside, key=lambda e: e.started_at, default=None)
    return {
        "total": len(inside),
        **counts,
        "success_rate": counts["success"] / finished if finished else None,
        "avg_ms": sum(durations) / len(durations) if durations else None,
        "min_ms": durations[0] if durations else None,
        "max_ms": durations[-1] if durations else None,
        "p50_ms": _nearest_rank(durations, 0.50) if durations else None,
        "p95_ms": _nearest_rank(durations, 0.95) if durations else None,
        "p99_ms": _nearest_rank(durations, 0.99) if durations else None,
        "last_executed_at": last.started_at if last else None,
        "last_status": last.status if last else None,
    }


def assert_stats_match(got: dict[str, Any], want: dict[str, Any], label: str) -> None:
    for key in (
        "total",
        "success",
        "failure",
        "timeout",
        "pending",
        "last_executed_at",
        "last_status",
    ):
        assert got[key] == want[key], (label, key, got, want)
    for key in ("success_rate", "avg_ms", "min_ms", "max_ms"):
        if want[key] is None:
            assert got[key] is None, (label, key, got)
        else:
            assert got[key] == pytest.approx(want[key], rel=1e-9), (label, key, got, want)
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        if want[key] is None:
            assert got[key] is None, (label, key, got)
        else:
            assert got[key] == pytest.approx(want[key], rel=0.05), (label, key, got, want)


async def record_all(conn: Any, workflow: uuid.UUID, executions: list[Execution]) -> None:
    """Record the executions the way workers do, checking every outcome."""
    for e in executions:  # first report: the final one, or 'pending' when it starts
        first = "pending" if e.via_pending else e.status
        _, outcome = await record(
            conn,
            workflow,
            first,
            None if first == "pending" else e.duration,
            execution_id=e.id,
            started_at=e.started_at,
        )
        assert outcome == "recorded"
    for e in executions:  # completion of those reported as pending first
        if e.via_pending and e.status != "pending":
            # started_at of the completing call is ignored: the pending one's stays
            _, outcome = await record(conn, workflow, e.status, e.duration, execution_id=e.id)
            assert outcome == "completed"
    for e in executions:  # retries of the final report, and a late 'pending'
        if e.repeat:
            _, outcome = await record(
                conn,
                workflow,
                e.status,
                None if e.status == "pending" else e.duration * 2,
                execution_id=e.id,
                started_at=e.started_at,
            )
            assert outcome == "duplicate", e
            if e.status != "pending":
                _, outcome = await record(conn, workflow, "pending", None, execution_id=e.id)
                assert outcome == "duplicate", e


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(specs=execution_specs, windows=window_specs, data=st.data())
async def test_execution_stats_match_brute_force(
    db: TestDatabase, specs: list[Any], windows: list[Any], data: st.DataObject
) -> None:
    conn = await db.connect()
    try:
        workflow = await create_workflow(conn)
        now = await conn.fetchval("SELECT clock_timestamp()")
        base_hour = now.replace(minute=0, second=0, microsecond=0) - HOUR
        executions: list[Execution] = []
        seen: set[datetime] = set()
        for status, duration, seconds_back, via_pending, repeat in specs:
            started = base_hour - timedelta(seconds=seconds_back)
            while started in seen:  # distinct start times: "last" is then well defined
                started -= timedelta(microseconds=1)
            seen.add(started)
            executions.append(
                Execution(f"x-{uuid.uuid4().hex}", status, duration, started, via_pending, repeat)
            )
        await record_all(conn, workflow, executions)

        for start_back, end_back in windows:
            start = None if start_back is None else base_hour - timedelta(seconds=start_back)
            end = None if end_back is None else base_hour - timedelta(seconds=end_back)
            got = await stats(conn, workflow, start, end)
            assert_stats_match(got, brute_force(executions, start, end), f"[{start}, {end})")

        async with context(conn, TENANT_A):
            row = await conn.fetchrow("SELECT * FROM dbal.workflows WHERE id = $1", workflow)
        finished = [e.duration for e in executions if e.status != "pending"]
        last = max(executions, key=lambda e: e.started_at, default=None)
        assert row["execution_count"] == len(executions)
        assert row["finished_execution_count"] == len(finished)
        if finished:
            assert row["average_execution_time"] == pytest.approx(
                sum(finished) / len(finished), rel=1e-9
            )
        else:
            assert row["average_execution_time"] is None
        assert row["last_executed_at"] == (last.started_at if last else None)
        assert row["last_execution_status"] == (last.status if last else None)
    finally:
        await conn.close()


async def test_an_execution_id_is_counted_once(db: TestDatabase) -> None:
    conn = await db.connect()
    workflow = await create_workflow(conn)
    other = await create_workflow(conn)
    assert await record(conn, workflow, "success", 10.0, execution_id="e1") == ("e1", "recorded")
    assert await record(conn, workflow, "success", 99.0, execution_id="e1") == ("e1", "duplicate")
    assert await record(conn, workflow, "pending", None, execution_id="e1") == ("e1", "duplicate")
    err = await expect_code(
        record(conn, workflow, "failure", 10.0, execution_id="e1"), ErrorCode.CONFLICT
    )
    assert err.details["status"] == "success"
    await expect_code(record(conn, other, "success", 10.0, execution_id="e1"), ErrorCode.CONFLICT)

    assert await record(conn, workflow, "pending", None, execution_id="e2") == ("e2", "recorded")
    assert await record(conn, workflow, "pending", None, execution_id="e2") == ("e2", "duplicate")
    assert await record(conn, workflow, "timeout", 30.0, execution_id="e2") == ("e2", "completed")
    assert await record(conn, workflow, "timeout", 30.0, execution_id="e2") == ("e2", "duplicate")
    await expect_code(
        record(conn, workflow, "success", 30.0, execution_id="e2"), ErrorCode.CONFLICT
    )

    s = await stats(conn, workflow)
    assert (s["total"], s["success"], s["timeout"], s["pending"], s["failure"]) == (2, 1, 1, 0, 0)
    assert s["avg_ms"] == pytest.approx(20.0)
    async with context(conn, TENANT_A):
        row = await conn.fetchrow(
            "SELECT execution_count, finished_execution_count, average_execution_time"
            " FROM dbal.workflows WHERE id = $1",
            workflow,
        )
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM dbal.workflow_executions WHERE workflow_id = $1", workflow
            )
            == 2
        )
    assert tuple(row.values()) == (2, 2, pytest.approx(20.0))
    assert (await stats(conn, other))["total"] == 0


@pytest.mark.parametrize(
    ("status", "duration"),
    [
        ("done", 1.0),
        (None, 1.0),
        ("success", -1.0),
        ("success", float("nan")),
        ("success", float("inf")),
        ("success", None),
        ("failure", None),
    ],
)
async def test_invalid_executions_are_refused(
    db: TestDatabase, status: str | None, duration: float | None
) -> None:
    conn = await db.connect()
    workflow = await create_workflow(conn)
    await expect_code(record(conn, workflow, status, duration), ErrorCode.VALIDATION_ERROR)
    assert (await stats(conn, workflow))["total"] == 0


async def test_started_at_in_the_future_is_refused(db: TestDatabase) -> None:
    conn = await db.connect()
    workflow = await create_workflow(conn)
    future = await conn.fetchval("SELECT clock_timestamp() + interval '10 minutes'")
    await expect_code(record(conn, workflow, started_at=future), ErrorCode.VALIDATION_ERROR)


async def test_stats_of_a_window_with_nothing_in_it(db: TestDatabase) -> None:
    conn = await db.connect()
    workflow = await create_workflow(conn)
    s = await stats(conn, workflow)
    assert s["total"] == 0 and s["success"] == 0
    assert s["avg_ms"] is None and s["p50_ms"] is None and s["last_status"] is None


@pytest.mark.parametrize(
    ("writer_tz", "reader_tz"), [("UTC", "Asia/Kolkata"), ("Asia/Kolkata", "UTC")]
)
async def test_stats_do_not_depend_on_the_session_time_zone(
    db: TestDatabase, writer_tz: str, reader_tz: str
) -> None:
    writer, reader = await db.connect(), await db.connect()
    await writer.execute(f"SET TimeZone = '{writer_tz}'")
    await reader.execute(f"SET TimeZone = '{reader_tz}'")
    workflow = await create_workflow(writer)
    now = await writer.fetchval("SELECT clock_timestamp()")
    hour = now.replace(minute=0, second=0, microsecond=0) - 3 * HOUR  # a whole UTC hour
    executions = [
        Execution(f"x{i}", "success", 10.0 * (i + 1), hour + timedelta(minutes=m), False, False)
        for i, m in enumerate((5, 15, 35, 45, 65, 95))
    ]
    await record_all(writer, workflow, executions)
    for start, end in [
        (hour - HOUR, hour + timedelta(minutes=40)),
        (hour + timedelta(minutes=20), hour + timedelta(minutes=100)),
        (None, hour + timedelta(minutes=50)),
        (hour + timedelta(minutes=10), None),
    ]:
        got = await stats(reader, workflow, start, end)
        assert_stats_match(got, brute_force(executions, start, end), f"[{start}, {end})")
