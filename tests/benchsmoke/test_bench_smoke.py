"""Smoke test of the benchmark suite: the tiny size end to end (< 60 s), report in a temp dir.

Opt-in like every benchmark: ``pytest -m bench tests/benchsmoke/test_bench_smoke.py``. Needs the
``bench`` extra (SQLAlchemy, matplotlib); skipped without it."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("matplotlib")

pytestmark = pytest.mark.bench


async def test_tiny_size_runs_and_reports(pg_dsn: str, tmp_path: Path) -> None:
    from bench.run import run

    results = await run("tiny", pg_dsn, seed=7, keep=False, out=tmp_path)

    report = (tmp_path / "REPORT-tiny.md").read_text()
    assert "## Targets of the issue" in report
    for png in ("latency.png", "growth.png", "throughput.png"):
        assert (tmp_path / png).stat().st_size > 1000
    ops = results["ops"]
    assert {"pydbal", "floor", "peer"} <= set(ops["get by id (uncached)"]["systems"])
    assert {"pydbal", "floor"} <= set(ops["record_execution (concurrency 16)"]["systems"])
    recorder = ops["record executions, batched recorder (16 producers)"]["systems"]
    assert {"pydbal", "floor"} <= set(recorder) and recorder["pydbal"]["rate"] > 0
    assert any(t["target"].startswith("batched recorder ≥ 10") for t in results["targets"])
    # the bulk-loaded executions keep the roll-ups right, and pydbal's stats agree with the raw rows
    growth = results["growth_exec"]
    assert all(c["ok"] for c in growth["checks"])
    for agreement in growth["agreement"]:
        assert agreement["total"][0] == agreement["total"][1]
    assert len(results["targets"]) >= 8
