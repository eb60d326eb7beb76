"""``pydbal status`` as a probe (exit 0 healthy, 1 degraded, 2 unreachable, JSON for each) and
``pydbal import`` stopped by SIGTERM/SIGINT: what was imported is reported and stored whole."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from .test_cli_commands import cli, definition
from conftest import TestDatabase

BOGUS_DSN = "postgresql://postgres@127.0.0.1:1/nothing"


async def test_status_json_healthy(db: TestDatabase, capsys: pytest.CaptureFixture[str]) -> None:
    assert await cli("status", "--dsn", db.dsn, "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["status"] == "healthy" and info["problems"] == []
    health = info["health"]
    assert health["database"]["reachable"] is True and health["database"]["latency_ms"] > 0
    assert health["schema_version"]["ok"] is True
    assert health["pool"]["max"] == 1
    assert await cli("status", "--dsn", db.dsn) == 0
    assert "health:         healthy (database" in capsys.readouterr().out


async def test_status_degraded_when_redis_does_not_answer(
    db: TestDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli("status", "--dsn", db.dsn, "--json", "--redis", "redis://127.0.0.1:1/0") == 1
    info = json.loads(capsys.readouterr().out)
    assert info["status"] == "degraded"
    assert info["health"]["redis"] == {
        "configured": True,
        "available": False,
        "errors": info["health"]["redis"]["errors"],
        "outages": 1,
    }
    assert any("redis" in p for p in info["problems"])


async def test_status_degraded_when_the_schema_is_not_current(
    db: TestDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = await asyncpg.connect(db.dsn)
    try:
        await conn.execute(
            "DELETE FROM dbal.schema_migrations "
            "WHERE name = (SELECT max(name) FROM dbal.schema_migrations)"
        )
    finally:
        await conn.close()
    assert await cli("status", "--dsn", db.dsn, "--json") == 1
    info = json.loads(capsys.readouterr().out)
    assert info["status"] == "degraded" and info["health"] is None
    assert any("pydbal needs" in p for p in info["problems"])


async def test_status_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    assert await cli("status", "--dsn", BOGUS_DSN, "--json") == 2
    info = json.loads(capsys.readouterr().out)
    assert info["status"] == "unreachable" and info["problems"]
    assert await cli("status", "--dsn", BOGUS_DSN) == 2
    assert "cannot connect" in capsys.readouterr().err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_import_stops_cleanly_on_a_signal(db: TestDatabase, tmp_path: Path, sig: int) -> None:
    files = 1500
    for i in range(files):
        (tmp_path / f"{i:05d}.json").write_text(json.dumps(definition(f"wf {i}")))
    env = {**os.environ, "PYDBAL_DSN": db.dsn}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pydbal", "import", "--tenant", "acme", str(tmp_path), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )

    async def stored() -> int:
        conn = await asyncpg.connect(db.dsn)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM dbal.workflows"))
        finally:
            await conn.close()

    deadline = time.monotonic() + 60
    while asyncio.run(stored()) < 20:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig, (proc.returncode, out, err)
    summary: dict[str, Any] = json.loads(out)
    assert summary["interrupted"] == signal.Signals(sig).name
    count = asyncio.run(stored())
    assert summary["valid"] == summary["files"] == count  # reported = stored, one per file
    assert 20 <= count < files
    assert summary["notImported"] == files - count
    assert "stopping after the current file" in err
