"""The read-only gate of ``pydbal sql``: each unsafe kind of statement refused with its reason,
ordinary analytics accepted and run correctly as a real analyst login, unsafe DSNs refused."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from pydbal.cli import main
from pydbal.sqlgate import RefusedLogin, RefusedQuery, check, run_query

from .conftest import Analyst, Seed
from conftest import RUN_ID, TestDatabase

# (kind, statement, words the reason must contain)
REFUSED = [
    ("insert", "INSERT INTO dbal.workflows (name) VALUES ('x')", "INSERT modifies data"),
    ("update", "UPDATE dbal.workflows SET name = 'x'", "UPDATE modifies data"),
    ("delete", "DELETE FROM dbal.workflows", "DELETE modifies data"),
    ("merge", "MERGE INTO t USING u ON t.a = u.a WHEN MATCHED THEN DELETE", "MERGE"),
    ("create", "CREATE TABLE x (a int)", "DDL"),
    ("create as", "CREATE TABLE x AS SELECT 1", "DDL"),
    ("drop", "DROP VIEW dbal_analytics.workflows", "DDL"),
    ("alter", "ALTER TABLE dbal.workflows DISABLE ROW LEVEL SECURITY", "DDL"),
    ("truncate", "TRUNCATE dbal.audit_log", "TRUNCATE is DDL"),
    ("grant", "GRANT SELECT ON dbal.workflows TO public", "DDL"),
    ("comment", "COMMENT ON TABLE dbal.workflows IS 'x'", "DDL"),
    ("set", "SET dbal.tenant_id = 'initech'", "SET changes session settings"),
    ("set role", "SET ROLE pydbal_app", "SET changes session settings"),
    ("reset", "RESET ALL", "RESET changes session settings"),
    ("set_config", "SELECT set_config('dbal.tenant_id', 'initech', false)", "set_config()"),
    (
        "qualified set_config",
        "SELECT pg_catalog.set_config('dbal.tenant_id', 'x', true)",
        "set_config()",
    ),
    ("copy", "COPY dbal.workflows TO STDOUT", "COPY"),
    ("for update", "SELECT * FROM dbal_analytics.workflows FOR UPDATE", "locking clauses"),
    ("for share", "SELECT * FROM dbal_analytics.workflows FOR SHARE", "locking clauses"),
    (
        "nested for update",
        "SELECT * FROM (SELECT id FROM dbal_analytics.workflows FOR NO KEY UPDATE) s",
        "locking clauses",
    ),
    (
        "dml in cte",
        "WITH d AS (DELETE FROM dbal.workflows RETURNING id) SELECT * FROM d",
        "inside the query",
    ),
    (
        "insert in cte",
        "WITH i AS (INSERT INTO t VALUES (1) RETURNING *) SELECT 1",
        "inside the query",
    ),
    ("select into", "SELECT * INTO stolen FROM dbal_analytics.workflows", "SELECT … INTO"),
    ("explain analyze", "EXPLAIN ANALYZE DELETE FROM dbal.workflows", "EXPLAIN"),
    ("call", "CALL partman.run_maintenance_proc()", "CALL is a command"),
    ("do", "DO $$ BEGIN PERFORM 1; END $$", "DO is a command"),
    ("show", "SHOW ALL", "SHOW is a command"),
    ("lock", "LOCK TABLE dbal.workflows", "LOCK is a command"),
    ("vacuum", "VACUUM dbal.workflows", "VACUUM is a command"),
    ("prepare", "PREPARE p AS SELECT 1", "PREPARE is a command"),
    ("begin", "BEGIN", "transaction control"),
    ("commit", "COMMIT", "transaction control"),
    ("listen", "LISTEN channel", "only a single SELECT query is allowed, not LISTEN"),
    ("two statements", "SELECT 1; DELETE FROM dbal.workflows", "2 statements"),
    ("empty", "  ", "no statement"),
    ("pydbal function", "SELECT * FROM dbal.execution_stats(NULL)", "dbal.execution_stats()"),
    ("pydbal entry point", "SELECT * FROM dbal.api_list('initech')", "dbal.api_list()"),
    ("other schema", "SELECT public.lower('x')", "public.lower()"),
    ("nextval", "SELECT nextval('s')", "nextval()"),
    ("pg_sleep", "SELECT pg_sleep(100)", "pg_sleep()"),
    ("current_setting", "SELECT current_setting('dbal.tenant_id')", "current_setting()"),
    ("file read", "SELECT pg_read_file('/etc/passwd')", "pg_read_file()"),
    ("dblink", "SELECT * FROM dblink('x', 'y') AS t(a int)", "dblink()"),
    ("unknown function", "SELECT pg_terminate_backend(1)", "pg_terminate_backend()"),
    ("not on allow list", "SELECT lo_export(1, '/tmp/x')", "allow list"),
    ("quoted name", "SELECT \"SET_CONFIG\"('a', 'b', false)", "set_config()"),
    ("unparsable", "SELECT FROM WHERE (", "cannot parse"),
    # issue 9: relations that reveal other tenants' activity or counts, and the base tables
    ("stat xact", "SELECT idx_tup_fetch FROM pg_stat_xact_user_tables", "statistics"),
    ("stat all", "SELECT n_live_tup FROM pg_catalog.pg_stat_all_tables", "statistics"),
    ("statio", "SELECT * FROM pg_statio_user_tables", "statistics"),
    ("pg_stats", "SELECT most_common_vals FROM pg_stats", "statistics"),
    ("pg_locks", "SELECT * FROM pg_locks", "lock views"),
    ("reltuples", "SELECT reltuples FROM pg_class WHERE relname = 'workflows'", "row estimates"),
    ("pg_class star", "SELECT * FROM pg_class", "row estimates"),
    (
        "stats in a subquery",
        "SELECT (SELECT sum(idx_tup_fetch) FROM pg_stat_xact_user_tables), count(*)"
        " FROM dbal_analytics.workflows",
        "statistics",
    ),
    ("base table", "SELECT name FROM dbal.workflows", "read the dbal_analytics views"),
]


@pytest.mark.parametrize(
    ("statement", "reason"), [(s, r) for _, s, r in REFUSED], ids=[k for k, _, _ in REFUSED]
)
def test_refuses_each_unsafe_kind_with_its_reason(statement: str, reason: str) -> None:
    with pytest.raises(RefusedQuery) as caught:
        check(statement)
    assert reason in caught.value.reason


def test_at_least_twenty_distinct_refusals() -> None:
    reasons = set()
    for _, statement, _ in REFUSED:
        with pytest.raises(RefusedQuery) as caught:
            check(statement)
        reasons.add(caught.value.reason)
    assert len(reasons) >= 20


ANALYTICS = {
    "join": """
        SELECT w.tenant_id, w.name, count(e.execution_id) AS runs
          FROM dbal_analytics.workflows w
          JOIN dbal_analytics.executions e ON e.tenant_id = w.tenant_id AND e.workflow_id = w.id
         GROUP BY w.tenant_id, w.name ORDER BY w.tenant_id, w.name""",
    "cte": """
        WITH per_tenant AS (
            SELECT tenant_id, sum(total) AS total FROM dbal_analytics.daily_stats GROUP BY 1)
        SELECT tenant_id, total FROM per_tenant ORDER BY tenant_id""",
    "window": """
        SELECT tenant_id, execution_id,
               row_number() OVER (PARTITION BY tenant_id ORDER BY duration_ms DESC, execution_id)
                   AS rn,
               avg(duration_ms) OVER (PARTITION BY tenant_id) AS tenant_avg
          FROM dbal_analytics.executions ORDER BY tenant_id, rn""",
    "aggregates": """
        SELECT tenant_id, count(*) AS n, min(duration_ms) AS lo, max(duration_ms) AS hi,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS median,
               count(*) FILTER (WHERE status = 'failure') AS failures,
               round(avg(duration_ms)::numeric, 1) AS mean
          FROM dbal_analytics.executions GROUP BY tenant_id ORDER BY tenant_id""",
    "json": """
        SELECT name, jsonb_array_length(nodes) AS n_nodes, nodes -> 0 ->> 'type' AS first_type,
               coalesce(description, '-') AS description, date_trunc('day', created_at) AS day
          FROM dbal_analytics.workflows ORDER BY name""",
}


@pytest.mark.parametrize("name", sorted(ANALYTICS))
def test_accepts_ordinary_analytics(name: str) -> None:
    assert check(ANALYTICS[name]).upper().startswith(("SELECT", "WITH"))


def test_transpiles_from_another_dialect() -> None:
    sql = check(
        "SELECT TOP 2 name, ISNULL(description, '') FROM dbal_analytics.workflows", read="tsql"
    )
    assert "LIMIT 2" in sql and "COALESCE" in sql.upper()


@pytest.fixture
async def analyst(seeded: Seed, make_analyst: Any) -> Analyst:
    result: Analyst = await make_analyst("acme", "globex")
    return result


async def test_runs_analytics_correctly_as_an_analyst(analyst: Analyst) -> None:
    join = await run_query(analyst.dsn, check(ANALYTICS["join"]))
    assert join.columns == ["tenant_id", "name", "runs"]
    assert join.rows == [
        ("acme", "acme-wf-0", 3),
        ("acme", "acme-wf-1", 3),
        ("globex", "globex-wf-0", 3),
        ("globex", "globex-wf-1", 3),
    ]
    cte = await run_query(analyst.dsn, check(ANALYTICS["cte"]))
    assert cte.rows == [("acme", 6), ("globex", 6)]
    window = await run_query(analyst.dsn, check(ANALYTICS["window"]))
    assert len(window.rows) == 12
    assert [r[2] for r in window.rows[:6]] == [1, 2, 3, 4, 5, 6]
    assert all(r[3] == pytest.approx(20.0) for r in window.rows)
    agg = await run_query(analyst.dsn, check(ANALYTICS["aggregates"]))
    assert [r[:6] for r in agg.rows] == [
        ("acme", 6, 10.0, 30.0, 20.0, 2),
        ("globex", 6, 10.0, 30.0, 20.0, 2),
    ]
    js = await run_query(analyst.dsn, check(ANALYTICS["json"]))
    assert [r[0] for r in js.rows] == ["acme-wf-0", "acme-wf-1", "globex-wf-0", "globex-wf-1"]
    assert js.rows[0][1:3] == (2, "n8n-nodes-base.manualTrigger")


async def test_runs_read_only_with_a_timeout(analyst: Analyst) -> None:
    with pytest.raises(asyncpg.QueryCanceledError):
        await run_query(analyst.dsn, "SELECT pg_sleep(5)", timeout_s=0.2)
    # even past the gate, the transaction is READ ONLY
    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        await run_query(analyst.dsn, "CREATE TEMP TABLE t (a int)", timeout_s=5)


async def test_refuses_superuser_app_owner_and_bypassrls_dsns(db: TestDatabase) -> None:
    with pytest.raises(RefusedLogin, match="superuser"):
        await run_query(db.dsn, "SELECT 1")
    with pytest.raises(RefusedLogin, match="application role"):
        await run_query(db.app_dsn, "SELECT 1")
    admin = await db.connect(as_app=False)
    owner_login, bypass_login = f"pydbal_own_{RUN_ID}", f"pydbal_byp_{RUN_ID}"
    await admin.execute(f"CREATE ROLE {owner_login} LOGIN IN ROLE pydbal_owner")
    await admin.execute(f"CREATE ROLE {bypass_login} LOGIN BYPASSRLS")
    try:
        from pydbal.server import dsn_with

        with pytest.raises(RefusedLogin, match="owner role"):
            await run_query(dsn_with(db.dsn, user=owner_login), "SELECT 1")
        with pytest.raises(RefusedLogin, match="BYPASSRLS"):
            await run_query(dsn_with(db.dsn, user=bypass_login), "SELECT 1")
    finally:
        await admin.execute(f"DROP ROLE {owner_login}")
        await admin.execute(f"DROP ROLE {bypass_login}")


def _cli(argv: list[str]) -> int:
    return main(argv)


async def test_cli_sql_refuses_unsafe_dsns_and_statements(
    db: TestDatabase, analyst: Analyst, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await asyncio.to_thread(_cli, ["sql", "--dsn", db.dsn, "SELECT 1"]) == 2
    assert "superuser" in capsys.readouterr().err
    assert await asyncio.to_thread(_cli, ["sql", "--dsn", db.app_dsn, "SELECT 1"]) == 2
    assert "application role" in capsys.readouterr().err
    code = await asyncio.to_thread(
        _cli, ["sql", "--dsn", analyst.dsn, "DELETE FROM dbal.workflows"]
    )
    assert code == 1
    assert "refused: DELETE modifies data" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
async def test_cli_sql_prints_table_csv_json(
    analyst: Analyst, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    query = "SELECT tenant_id, count(*) AS n FROM dbal_analytics.workflows GROUP BY 1 ORDER BY 1"
    code = await asyncio.to_thread(_cli, ["sql", "--dsn", analyst.dsn, "--format", fmt, query])
    out = capsys.readouterr().out
    assert code == 0
    if fmt == "json":
        import json

        assert json.loads(out) == [{"tenant_id": "acme", "n": 2}, {"tenant_id": "globex", "n": 2}]
    elif fmt == "csv":
        assert out.splitlines() == ["tenant_id,n", "acme,2", "globex,2"]
    else:
        assert "tenant_id | n" in out and "(2 rows)" in out


async def test_cli_sql_reads_a_file_and_transpiles(
    analyst: Analyst, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "q.sql"
    path.write_text("SELECT TOP 1 name FROM dbal_analytics.workflows ORDER BY name")
    argv = ["sql", "--dsn", analyst.dsn, "--file", str(path), "--from", "tsql", "--format", "csv"]
    assert await asyncio.to_thread(_cli, argv) == 0
    assert capsys.readouterr().out.splitlines() == ["name", "acme-wf-0"]


@pytest.mark.parametrize("timeout", ["nan", "inf", "-inf", "0", "-1", "86401"])
def test_cli_sql_refuses_odd_timeouts_in_one_line(
    timeout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["sql", "--dsn", "postgresql://nobody@127.0.0.1:1/x", f"--timeout={timeout}", "SELECT 1"]
    assert _cli(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--timeout" in err and "Traceback" not in err


def test_cli_sql_refuses_deep_nesting_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    query = "SELECT " + "(" * 5000 + "1" + ")" * 5000
    argv = ["sql", "--dsn", "postgresql://nobody@127.0.0.1:1/x", query]
    assert _cli(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nested too deeply" in err
    with pytest.raises(RefusedQuery):
        check("SELECT 1 + " * 200_000 + "1")  # over a million characters: refused unparsed
