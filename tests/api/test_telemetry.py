"""OpenTelemetry: spans and metrics asserted with the SDK's in-memory exporters, on a real database.

Skipped (with the reason) when the ``otel`` extra is not installed; the ``test`` extra installs it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import pydbal
from pydbal import ErrorCode, TelemetryOptions
from pydbal.instrument import add_count, add_gauge

from .conftest import TENANT_A, TENANT_B, raises_code, valid_definition

otel_sdk = pytest.importorskip(
    "opentelemetry.sdk.trace", reason="the otel extra is not installed: pip install 'pydbal[otel]'"
)
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode  # noqa: E402


class Otel:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def options(self, tenant: str = "raw") -> TelemetryOptions:
        return TelemetryOptions(
            tenant=tenant,  # type: ignore[arg-type]
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
        )

    def spans(self, prefix: str = "pydbal.") -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name.startswith(prefix)]

    def clear(self) -> None:
        self.exporter.clear()

    def metrics(self) -> dict[str, list[Any]]:
        """metric name -> its data points."""
        data = self.reader.get_metrics_data()
        out: dict[str, list[Any]] = {}
        assert data is not None
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    out.setdefault(m.name, []).extend(m.data.data_points)
        return out


@pytest.fixture
def otel() -> Iterator[Otel]:
    o = Otel()
    yield o
    o.tracer_provider.shutdown()
    o.meter_provider.shutdown()


@pytest.fixture
async def traced(db: Any, otel: Otel) -> AsyncIterator[pydbal.Database]:
    async with pydbal.connect(
        db.app_dsn, max_size=4, telemetry=otel.options(), cache={"revalidate": False}
    ) as database:
        yield database


async def test_a_span_per_operation_with_tenant_rows_and_cache_tier(
    traced: pydbal.Database, otel: Otel
) -> None:
    acme = traced.tenant(TENANT_A, user_id="alice", role="admin")
    wf = await acme.workflows.create(valid_definition("one"))
    await acme.workflows.create(valid_definition("two"))
    otel.clear()
    assert await acme.workflows.get(wf.id) is not None  # hot miss: database
    assert await acme.workflows.get(wf.id) is not None  # hot hit
    page = await acme.workflows.list()
    assert page.total == 2
    spans = otel.spans()
    assert [s.name for s in spans] == ["pydbal.get", "pydbal.get", "pydbal.list"]
    miss, hit, listed = (dict(s.attributes or {}) for s in spans)
    assert miss["pydbal.tenant"] == TENANT_A
    assert miss["pydbal.operation"] == "get"
    assert (miss["pydbal.cache.tier"], miss["pydbal.cache.hit"]) == ("hot", False)
    assert (hit["pydbal.cache.tier"], hit["pydbal.cache.hit"]) == ("hot", True)
    assert miss["pydbal.rows"] == hit["pydbal.rows"] == 1
    assert (listed["pydbal.cache.tier"], listed["pydbal.cache.hit"]) == ("warm", False)
    assert listed["pydbal.rows"] == 2
    assert all(s.status.status_code != StatusCode.ERROR for s in spans)


async def test_errors_carry_the_code_and_nested_operations_are_one_span(
    traced: pydbal.Database, otel: Otel
) -> None:
    acme = traced.tenant(TENANT_A, user_id="alice", role="admin")
    wf = await acme.workflows.create(valid_definition("x"))
    otel.clear()
    with raises_code(ErrorCode.CONFLICT):
        await acme.workflows.create(valid_definition("x"))
    with raises_code(ErrorCode.WORKFLOW_NOT_FOUND):
        await acme.workflows.update("00000000-0000-0000-0000-000000000000", {"name": "y"})
    (conflict, missing) = otel.spans()
    assert conflict.status.status_code == StatusCode.ERROR
    assert conflict.attributes is not None and missing.attributes is not None
    assert conflict.attributes["pydbal.error.code"] == int(ErrorCode.CONFLICT)
    assert missing.attributes["pydbal.error.code"] == int(ErrorCode.WORKFLOW_NOT_FOUND)
    assert any(e.name == "exception" for e in conflict.events)
    otel.clear()
    # upsert calls find_first and then update internally: one span, not three
    await acme.workflows.upsert("x", valid_definition("x"), {"description": "d"})
    assert [s.name for s in otel.spans()] == ["pydbal.upsert"]
    assert wf.id is not None


async def test_tenant_hashed_or_omitted(db: Any, otel: Otel) -> None:
    for mode in ("hashed", "omit"):
        async with pydbal.connect(
            db.app_dsn, max_size=2, telemetry=otel.options(mode), cache={"revalidate": False}
        ) as database:
            otel.clear()
            await database.tenant(TENANT_A, user_id="a", role="user").workflows.list()
            await database.tenant(TENANT_B, user_id="b", role="user").workflows.list()
            a, b = (dict(s.attributes or {}) for s in otel.spans())
            if mode == "omit":
                assert "pydbal.tenant" not in a and "pydbal.tenant" not in b
            else:
                assert a["pydbal.tenant"] != b["pydbal.tenant"]
                assert TENANT_A not in str(a["pydbal.tenant"])
                assert len(str(a["pydbal.tenant"])) == 16


async def test_executing_is_a_span_enclosing_the_operations_of_its_block(
    traced: pydbal.Database, otel: Otel
) -> None:
    acme = traced.tenant(TENANT_A, user_id="alice", role="admin")
    wf = await acme.workflows.create(valid_definition("run"))
    otel.clear()
    async with acme.workflows.executing(wf.id, timeout_ms=60000):
        await acme.workflows.history(wf.id)
    spans = otel.spans()
    outer = next(s for s in spans if s.name == "pydbal.executing")
    inner = [s for s in spans if s is not outer]
    assert {s.name for s in inner} >= {
        "pydbal.acquire_lock",
        "pydbal.history",
        "pydbal.record_execution",
        "pydbal.release_lock",
    }
    assert outer.context is not None
    assert all(s.parent is not None and s.parent.span_id == outer.context.span_id for s in inner)


async def test_asyncpg_spans_nest_under_the_operation_without_duplicates(
    db: Any, otel: Otel
) -> None:
    instrumentation = pytest.importorskip(
        "opentelemetry.instrumentation.asyncpg",
        reason="opentelemetry-instrumentation-asyncpg is not installed",
    )
    instrumentor = instrumentation.AsyncPGInstrumentor()
    instrumentor.instrument(tracer_provider=otel.tracer_provider)
    try:
        async with pydbal.connect(
            db.app_dsn, max_size=2, telemetry=otel.options(), cache={"revalidate": False}
        ) as database:
            acme = database.tenant(TENANT_A, user_id="alice", role="admin")
            wf = await acme.workflows.create(valid_definition("nested"))
            otel.clear()
            await acme.workflows.get(wf.id)  # uncached after the write: one statement
            await acme.workflows.get(wf.id)  # hot hit: no statement
    finally:
        instrumentor.uninstrument()
    all_spans = list(otel.exporter.get_finished_spans())
    ours = [s for s in all_spans if s.name.startswith("pydbal.")]
    sql = [s for s in all_spans if not s.name.startswith("pydbal.")]
    assert [s.name for s in ours] == ["pydbal.get", "pydbal.get"]
    first = ours[0]
    assert first.context is not None
    assert len(sql) == 1, [s.name for s in sql]
    assert sql[0].parent is not None and sql[0].parent.span_id == first.context.span_id


async def test_metrics_latency_cache_pool_and_hooks(db: Any, otel: Otel) -> None:
    async with pydbal.connect(
        db.app_dsn,
        "redis://127.0.0.1:1/0",  # configured, never answering
        max_size=3,
        telemetry=otel.options(),
        cache={"revalidate": False, "redis_connect_timeout": 0.2},
    ) as database:
        acme = database.tenant(TENANT_A, user_id="alice", role="admin")
        wf = await acme.workflows.create(valid_definition("m"))
        await acme.workflows.get(wf.id)
        await acme.workflows.get(wf.id)
        with raises_code(ErrorCode.CONFLICT):
            await acme.workflows.create(valid_definition("m"))
        queue = [7]
        add_gauge(database, "pydbal.recorder.queue_depth", lambda: queue[0])
        add_count(database, "pydbal.recorder.refusals", 2, {"reason": "full"})
        m = otel.metrics()
    durations = {
        (p.attributes["pydbal.operation"], p.attributes["pydbal.outcome"]): p.count
        for p in m["pydbal.operation.duration"]
    }
    assert durations[("get", "ok")] == 2
    assert list(m["pydbal.operation.duration"][0].explicit_bounds)[:2] == [0.0001, 0.00025]
    assert durations[("create", "ok")] == 1
    assert durations[("create", "error")] == 1
    error_point = next(
        p for p in m["pydbal.operation.duration"] if p.attributes["pydbal.outcome"] == "error"
    )
    assert error_point.attributes["pydbal.error.code"] == int(ErrorCode.CONFLICT)
    hits = {p.attributes["pydbal.cache.tier"]: p.value for p in m["pydbal.cache.hits"]}
    misses = {p.attributes["pydbal.cache.tier"]: p.value for p in m["pydbal.cache.misses"]}
    assert hits["hot"] == 1 and misses["hot"] == 1
    assert [p.value for p in m["pydbal.pool.max"]] == [3]
    assert m["pydbal.pool.size"][0].value >= 1
    assert [p.value for p in m["pydbal.pool.in_use"]] == [0]
    assert [p.value for p in m["pydbal.pool.waiting"]] == [0]
    assert [p.value for p in m["pydbal.redis.available"]] == [0]
    assert [p.value for p in m["pydbal.recorder.queue_depth"]] == [7]
    assert [(p.value, dict(p.attributes)) for p in m["pydbal.recorder.refusals"]] == [
        (2, {"reason": "full"})
    ]


async def test_hooks_are_no_ops_without_telemetry(app: pydbal.Database) -> None:
    add_gauge(app, "pydbal.recorder.queue_depth", lambda: 1)
    add_count(app, "pydbal.recorder.refusals")
    assert app._telemetry is None


def test_without_telemetry_opentelemetry_is_never_imported(db: Any) -> None:
    code = f"""
import asyncio, sys
import pydbal
async def main():
    async with pydbal.connect({db.app_dsn!r}, max_size=1, cache={{"revalidate": False}}) as d:
        t = d.tenant("acme", user_id="u", role="admin")
        await t.workflows.list()
asyncio.run(main())
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry") or m == "pydbal.telemetry")
print(loaded)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
