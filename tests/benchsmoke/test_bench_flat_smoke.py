"""Smoke test of bench/flat.py (issue 13): the tiny size end to end, report in a temp dir.

Opt-in like every benchmark: ``pytest -m bench tests/benchsmoke/test_bench_flat_smoke.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

pytestmark = pytest.mark.bench


async def test_flat_tiny_runs_and_reports(pg_dsn: str, tmp_path: Path) -> None:
    from bench.flat import run

    result = await run("tiny", pg_dsn, keep=False, skip_stats=False, out=tmp_path)
    assert (tmp_path / "flat-growth-tiny.png").stat().st_size > 1000
    assert "| target | held | measured |" in (tmp_path / "flat-tiny.md").read_text()
    assert [r["workflows"] for r in result["growth"]] == [1_000, 5_000]
    assert {v["target"].split(":")[0] for v in result["verdicts"]} >= {"list page 1", "search w123"}
    assert all(r["rare total"][1] for r in result["growth"])  # below the cap: exact
