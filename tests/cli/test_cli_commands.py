"""The operator CLI end to end on a real database: exit codes, summaries and output.

Commands run through ``pydbal.cli.main`` in a worker thread (each builds its own event loop), a
few as real subprocesses.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from dbhelpers import expire_leases
from factories import dangling_definition, valid_definition

import pydbal
from pydbal.cli import main
from pydbal.formats import parse_import
from pydbal.validation import validate_definition

from conftest import RUN_ID, TestDatabase

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpus")


def definition(name: str, *, valid: bool = True) -> dict[str, Any]:
    """A workflow file's content: valid, or with an edge to a missing node."""
    build = valid_definition if valid else dangling_definition
    return build(name, tags=["t1"], description=name)


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


# --- validate (offline) ----------------------------------------------------------------------


async def test_validate_exit_codes_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(definition("good")))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(definition("bad", valid=False)))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert await cli("validate", str(good)) == 0
    assert "ok" in capsys.readouterr().out
    assert await cli("validate", str(good), str(bad)) == 1
    out = capsys.readouterr().out
    assert "INVALID" in out and "Nowhere" in out
    assert await cli("validate", str(broken)) == 1
    assert "REFUSED" in capsys.readouterr().out
    assert await cli("validate", "--json", str(tmp_path)) == 1
    entries = json.loads(capsys.readouterr().out)
    assert sorted((Path(e["file"]).name, e["valid"]) for e in entries) == [
        ("bad.json", False),
        ("broken.json", False),
        ("good.json", True),
    ]


def test_validate_as_a_subprocess(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(definition("good")))
    done = subprocess.run(
        [sys.executable, "-m", "pydbal", "validate", "--json", str(good)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["valid"] is True


def test_every_subcommand_has_help() -> None:
    from pydbal.cli import build_parser

    parser = build_parser()
    actions = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    choices: dict[str, Any] = actions[0].choices  # type: ignore[attr-defined]
    for name in ("export", "import", "validate", "locks", "stats", "partitions", "analysts", "sql"):
        assert name in choices
        assert choices[name].format_help()


async def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        await cli("export", "--tenant", "acme", "--out", "x")  # neither --id nor --all
    assert caught.value.code == 2
    assert await cli("sql", "--dsn", "postgresql://nobody@127.0.0.1:1/x", "SELECT 1") == 2


# --- import / export ---------------------------------------------------------------------------


def _expected_corpus_summary() -> tuple[int, int, int, int]:
    files = sorted(p for p in CORPUS.rglob("*.json") if p.is_file())
    valid = invalid = refused = 0
    for path in files:
        try:
            definitions = parse_import(path.read_bytes(), source_name=path.name)
        except pydbal.DBALError:
            refused += 1
            continue
        for d in definitions:
            report = validate_definition(d.nodes, d.edges, d.variables, d.config)
            if report.valid:
                valid += 1
            else:
                invalid += 1
    return len(files), valid, invalid, refused


async def test_import_of_the_whole_corpus_reports_valid_invalid_refused(
    db: TestDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    if not CORPUS.is_dir():
        pytest.skip("shared corpus not present")
    files, valid, invalid, refused = _expected_corpus_summary()
    assert refused > 0
    code = await cli(
        "import",
        "--dsn",
        db.dsn,
        "--tenant",
        "corpus",
        "--json",
        "--progress",
        "--user",
        "op",
        str(CORPUS),
    )
    captured = capsys.readouterr()
    assert code == 1
    summary = json.loads(captured.out)
    assert (summary["files"], summary["valid"], summary["invalid"], summary["refused"]) == (
        files,
        valid,
        invalid,
        refused,
    )
    assert sum(summary["refusedReasons"].values()) == refused
    assert all(f["reason"] for f in summary["refusedFiles"])
    assert f"{files}/{files}" in captured.err  # the progress bar reached the end
    conn = await db.connect(as_app=False)
    stored = await conn.fetch(
        "SELECT validation_status, count(*) AS n FROM dbal.workflows WHERE tenant_id = 'corpus' "
        "GROUP BY 1"
    )
    counts = {r["validation_status"]: r["n"] for r in stored}
    assert counts.get("valid", 0) == valid and counts.get("invalid", 0) == invalid
    who = await conn.fetchval(
        "SELECT DISTINCT user_id FROM dbal.audit_log WHERE tenant_id = 'corpus'"
    )
    assert who == "op"


async def test_import_dry_run_stores_nothing_and_human_summary(
    db: TestDatabase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.json").write_text(json.dumps([definition("a1"), definition("a2")]))
    (tmp_path / "b.json").write_text(json.dumps(definition("b", valid=False)))
    (tmp_path / "c.json").write_text("[]")
    code = await cli("import", "--dsn", db.dsn, "--tenant", "t", "--dry-run", str(tmp_path))
    out = capsys.readouterr().out
    assert code == 1
    assert "3 file(s): would store 2 valid and 1 invalid workflow(s); refused 1 file(s)" in out
    assert "the array holds no workflow" in out
    conn = await db.connect(as_app=False)
    assert await conn.fetchval("SELECT count(*) FROM dbal.workflows") == 0
    (tmp_path / "b.json").unlink()
    (tmp_path / "c.json").unlink()
    assert await cli("import", "--dsn", db.dsn, "--tenant", "t", str(tmp_path)) == 0
    assert await conn.fetchval("SELECT count(*) FROM dbal.workflows") == 2


_FIELDS = ("name", "description", "nodes", "edges", "variables", "config", "tags", "category")


async def _definitions(db: TestDatabase, tenant: str) -> list[tuple[Any, ...]]:
    async with pydbal.connect(db.dsn) as conn:
        t = conn.tenant(tenant, user_id="reader", role="admin")
        page = await t.workflows.list(limit=100)
        rows = [
            tuple(json.dumps(getattr(w, f), sort_keys=True) for f in _FIELDS) for w in page.items
        ]
    return sorted(rows)


@pytest.mark.parametrize("target", ["folder", "array.json"])
async def test_export_then_import_into_another_tenant_gives_equal_definitions(
    db: TestDatabase, tmp_path: Path, target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with pydbal.connect(db.dsn) as conn:
        t = conn.tenant("src", user_id="author", role="admin")
        for k in range(3):
            await t.workflows.create(definition(f"wf {k}"))
        await t.workflows.create(definition("broken one", valid=False))
    out = tmp_path / target
    assert await cli("export", "--dsn", db.dsn, "--tenant", "src", "--all", "--out", str(out)) == 0
    assert "exported 4 workflow(s)" in capsys.readouterr().out
    if target == "folder":
        assert len(list(out.glob("*.json"))) == 4
    else:
        assert len(json.loads(out.read_text())) == 4
    code = await cli("import", "--dsn", db.dsn, "--tenant", "dst", "--json", str(out))
    summary = json.loads(capsys.readouterr().out)
    assert code == 1  # one workflow is invalid
    assert (summary["valid"], summary["invalid"], summary["refused"]) == (3, 1, 0)
    assert await _definitions(db, "dst") == await _definitions(db, "src")


async def test_export_by_id_and_unknown_ids(
    db: TestDatabase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with pydbal.connect(db.dsn) as conn:
        wf = await conn.tenant("src", user_id="a", role="admin").workflows.create(definition("x"))
    out = tmp_path / "one.json"
    missing = "00000000-0000-0000-0000-000000000000"
    argv = ["export", "--dsn", db.dsn, "--tenant", "src", "--id", str(wf.id), missing]
    assert await cli(*argv, "--out", str(out)) == 1
    assert "failed" in capsys.readouterr().err
    bundles = json.loads(out.read_text())
    assert [b["workflow"]["name"] for b in bundles] == ["x"]


# --- locks, stats, partitions, status ------------------------------------------------------------


async def test_locks_list_and_sweep(db: TestDatabase, capsys: pytest.CaptureFixture[str]) -> None:
    async with pydbal.connect(db.dsn) as conn:
        t = conn.tenant("acme", user_id="worker", role="admin")
        long = await t.workflows.create(definition("long"))
        short = await t.workflows.create(definition("short"))
        assert await t.workflows.acquire_lock(long.id, timeout_ms=600_000) is not None
        assert await t.workflows.acquire_lock(short.id, timeout_ms=60_000) is not None
    assert await cli("locks", "list", "--dsn", db.dsn, "--tenant", "acme", "--json") == 0
    locked = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in locked} == {"long", "short"}
    await expire_leases(await db.connect(as_app=False), short.id)  # no waiting on the clock
    assert await cli("locks", "list", "--dsn", db.dsn, "--tenant", "acme") == 0
    out = capsys.readouterr().out
    assert "long" in out and "short" not in out
    assert await cli("locks", "sweep", "--dsn", db.dsn, "--user", "night-op") == 0
    assert "released 1 expired lock(s)" in capsys.readouterr().out
    conn2 = await db.connect(as_app=False)
    row = await conn2.fetchrow(
        "SELECT user_id, user_role FROM dbal.audit_log WHERE operation = 'lock_expired'"
    )
    assert (row["user_id"], row["user_role"]) == ("night-op", "supergod")
    assert await cli("locks", "sweep", "--dsn", db.app_dsn) == 2  # not a superuser


async def test_stats_by_name_and_id_with_a_per_day_chart(
    db: TestDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import UTC, datetime, timedelta

    async with pydbal.connect(db.dsn) as conn:
        t = conn.tenant("acme", user_id="worker", role="admin")
        wf = await t.workflows.create(definition("nightly report"))
        now = datetime.now(UTC)
        for day, n in ((2, 1), (1, 3), (0, 4)):
            for k in range(n):
                status = "failure" if (day, k) == (0, 0) else "success"
                await t.workflows.record_execution(
                    wf.id,
                    status,
                    100.0 + k,
                    execution_id=f"{day}-{k}",
                    started_at=now - timedelta(days=day, minutes=1),
                )
    assert await cli("stats", "--dsn", db.dsn, "--tenant", "acme", "nightly report") == 0
    out = capsys.readouterr().out
    assert "runs      8: 7 success, 1 failure" in out
    assert "success   87.5%" in out
    assert "p95" in out and "per day" in out
    assert any(ch in out for ch in "▁▂▃▄▅▆▇█")
    assert "(1 failed)" in out
    argv = ["stats", "--dsn", db.dsn, "--tenant", "acme", str(wf.id), "--since", "2d", "--json"]
    assert await cli(*argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["total"] for d in data["perDay"]][-2:] == [3, 4]
    assert data["workflow"]["name"] == "nightly report"
    assert await cli("stats", "--dsn", db.dsn, "--tenant", "globex", "nightly report") == 1
    assert await cli("stats", "--dsn", db.dsn, "--tenant", "acme", "x", "--since", "soon") == 2


async def test_partitions_list_and_maintain(
    db: TestDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli("partitions", "list", "--dsn", db.dsn, "--json") == 0
    parts = json.loads(capsys.readouterr().out)
    parents = {p["parent"] for p in parts}
    assert {"dbal.workflow_executions", "dbal.audit_log"} <= parents
    assert all(p["bounds"] for p in parts)
    assert await cli("partitions", "maintain", "--dsn", db.dsn) == 0
    out = capsys.readouterr().out
    assert "maintenance done" in out or "not installed" in out


async def test_status_self_check_passes_on_a_fresh_database(
    db: TestDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli("status", "--dsn", db.dsn) == 0
    out = capsys.readouterr().out
    assert "self-check:" in out and "[FAIL]" not in out
    assert out.count("[pass]") >= 5
    assert await cli("status", "--dsn", db.dsn, "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["self_check"] and all(c["ok"] for c in info["self_check"])


async def test_status_self_check_notices_a_partition_grant(
    db: TestDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = await db.connect(as_app=False)
    child = await conn.fetchval(
        "SELECT inhrelid::regclass::text FROM pg_inherits "
        "WHERE inhparent = 'dbal.workflow_executions'::regclass LIMIT 1"
    )
    await conn.execute(f"GRANT SELECT ON {child} TO pydbal_analyst")
    assert await cli("status", "--dsn", db.dsn) == 1
    failed = "[FAIL] no privileges on partitions for the app and analyst roles"
    assert f"{failed}: pydbal_analyst on {child}" in capsys.readouterr().out


# --- analysts (operator side) --------------------------------------------------------------------


async def test_analysts_grant_list_revoke(
    db: TestDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    login = f"pydbal_cli_an_{RUN_ID}"
    admin = await asyncpg.connect(db.dsn)
    await admin.execute(f"CREATE ROLE {login} LOGIN")
    try:
        argv = ["analysts", "grant", "--dsn", db.dsn, "--user", "op", login, "acme", "globex"]
        assert await cli(*argv) == 0
        assert "(2 new)" in capsys.readouterr().out
        assert await admin.fetchval("SELECT pg_has_role($1, 'pydbal_analyst', 'MEMBER')", login)
        assert await cli("analysts", "list", "--dsn", db.dsn, "--login", login, "--json") == 0
        grants = json.loads(capsys.readouterr().out)
        assert [(g["tenant"], g["grantedBy"]) for g in grants] == [("acme", "op"), ("globex", "op")]
        assert await cli("analysts", "revoke", "--dsn", db.dsn, login, "globex") == 0
        assert await cli("analysts", "revoke", "--dsn", db.dsn, login, "globex") == 1
        capsys.readouterr()
        assert await cli("analysts", "list", "--dsn", db.dsn) == 0
        out = capsys.readouterr().out
        assert "acme" in out and "globex" not in out
        assert await cli("analysts", "grant", "--dsn", db.dsn, "pydbal_nobody_here", "acme") == 1
        assert "does not exist" in capsys.readouterr().err
        assert await cli("analysts", "list", "--dsn", db.app_dsn) == 2  # not a superuser
    finally:
        await admin.execute(f"DROP ROLE {login}")
        await admin.close()


def test_status_as_a_subprocess(db: TestDatabase) -> None:
    env = {**os.environ, "PYDBAL_DSN": db.dsn}
    done = subprocess.run(
        [sys.executable, "-m", "pydbal", "status"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[pass] RLS enabled and forced on every tenant table" in done.stdout


def test_help_is_written_for_users(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 10: no maintainer's note (``_COMMANDS``) in what users read; the exit codes are."""
    from pydbal.cli import main

    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "_COMMANDS" not in text and "subcommand, registered" not in text
    assert "pydbal" in text and "migrate" in text and "purge" in text
    assert "Exit codes: 0" in text
