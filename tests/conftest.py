"""Test harness: one server per session, one migrated template, a fresh database per test.

Server, first that works: ``$PYDBAL_TEST_DSN`` (a superuser DSN) → a Docker engine through
testcontainers (only when ``docker info`` answers) → an embedded server in a temporary directory.

Fixtures:

- ``pg_dsn`` (session): superuser DSN of the server.
- ``template_db`` (session): name of a database migrated once (the real schema when ``sql/`` and
  ``migrations/0001_initial.sql`` exist, else a small sample schema).
- ``db`` (function): a :class:`TestDatabase` copied from the template, dropped after the test.
- ``empty_db`` (function): a :class:`TestDatabase` with nothing installed (for migration tests).

Database names carry a per-run id, so two runs on one server do not collide.

Citus (marker ``citus``): with ``$PYDBAL_TEST_CITUS_DSN`` (a superuser DSN of a Citus
coordinator whose workers are added, e.g. ``.ci/citus.sh up``) the session runs only the tests
marked ``citus`` — the suites listed in ``CITUS_SUITES`` and ``tests/citus/`` — against the
coordinator. ``CREATE DATABASE … TEMPLATE`` is not propagated to the workers, so there the
template is one database per session, created on every node, migrated once (distributed, 4
shards per table) and reused by every test; after each test every dbal table is emptied
(``DELETE``, propagated to the shards). ``empty_db`` is not available there. Without the
variable, tests of ``tests/citus/`` skip with that reason and the other ``citus`` suites run on
the single node as usual.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from pydbal.migrate import close_public_temp, ensure_roles, migrate, resolve_roles, schema_dirs
from pydbal.server import dsn_with, embedded_server, stop_embedded

APP_LOGIN = "pydbal_test_app"
CITUS_DSN = os.environ.get("PYDBAL_TEST_CITUS_DSN") or None
#: Suites that run through a Citus coordinator too (marker ``citus``), besides tests/citus/.
CITUS_SUITES = (
    "security/test_isolation.py",
    "engine/test_locks.py",
    "engine/test_stats.py",
    "api/test_exec.py",
    "analysts/test_analyst_isolation.py",
    "api/test_crud.py",
    "api/test_reads.py",
    "api/test_transfer.py",
    "api/test_cross_tenant.py",
    "api/test_recorder.py",
)
#: api/test_recorder.py runs the batched recorder (dbal.record_executions, its Citus shape in
#: sql/citus/08_record_batch.sql) through the coordinator; its two outage tests use a private
#: single-node server of their own (initdb, stop, start) in either run.
CITUS_SHARD_COUNT = 4
#: Why tests calling an entry point with a NULL tenant do not run through Citus.
CITUS_NULL_TENANT = (
    "Citus 13.2.2 crashes the coordinator (SIGSEGV) planning a delegated call whose tenant "
    "argument is NULL: function_call_delegation.c hashes the NULL without a constisnull check "
    "(docs/scale-out.md, 'Known limits')"
)
RUN_ID = f"{secrets.token_hex(3)}_{os.getpid()}"
_counter = iter(range(1, 1_000_000))


def real_schema_available() -> bool:
    sql_dir, migrations_dir = schema_dirs()
    return any(sql_dir.glob("*.sql")) and (migrations_dir / "0001_initial.sql").is_file()


# --- a small sample schema, for testing the runner independently of the real one -------------

_SAMPLE_BASE = """\
CREATE SCHEMA IF NOT EXISTS dbal AUTHORIZATION @owner_role@;
GRANT USAGE ON SCHEMA dbal TO @app_role@, @analyst_role@;
CREATE TABLE dbal.items (
    tenant_id text NOT NULL,
    id bigint GENERATED ALWAYS AS IDENTITY,
    name text NOT NULL CHECK (name <> ''),
    PRIMARY KEY (tenant_id, id)
);
ALTER TABLE dbal.items OWNER TO @owner_role@;
ALTER TABLE dbal.items ENABLE ROW LEVEL SECURITY;
CREATE POLICY items_tenant ON dbal.items
    USING (tenant_id = NULLIF(current_setting('dbal.tenant', true), ''));
GRANT SELECT, INSERT ON dbal.items TO @app_role@;
GRANT SELECT ON dbal.items TO @analyst_role@;
CREATE FUNCTION dbal.item_count(p_tenant text) RETURNS bigint
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog AS $$
BEGIN
    RETURN (SELECT count(*) FROM dbal.items WHERE tenant_id = p_tenant);
END
$$;
ALTER FUNCTION dbal.item_count(text) OWNER TO @owner_role@;
REVOKE EXECUTE ON FUNCTION dbal.item_count(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dbal.item_count(text) TO @app_role@;
"""

_SAMPLE_ADD_NOTE = """\
ALTER TABLE dbal.items ADD COLUMN note text DEFAULT 'none';
CREATE INDEX items_note ON dbal.items (tenant_id, note);
"""


def write_sample_schema(base: Path) -> tuple[Path, Path]:
    """Write an equivalent ``sql/`` and ``migrations/`` pair under ``base``; return both dirs."""
    sql_dir, migrations_dir = base / "sql", base / "migrations"
    sql_dir.mkdir(parents=True)
    migrations_dir.mkdir(parents=True)
    (sql_dir / "00_items.sql").write_text(_SAMPLE_BASE + _SAMPLE_ADD_NOTE)
    (migrations_dir / "0001_initial.sql").write_text(_SAMPLE_BASE)
    (migrations_dir / "0002_item_note.sql").write_text(_SAMPLE_ADD_NOTE)
    return sql_dir, migrations_dir


def copy_real_schema(base: Path) -> tuple[Path, Path]:
    """Copy the real ``sql/`` and ``migrations/`` under ``base``: tests never edit the originals."""
    sql_dir, migrations_dir = schema_dirs()
    shutil.copytree(sql_dir, base / "sql")
    shutil.copytree(migrations_dir, base / "migrations")
    return base / "sql", base / "migrations"


# --- the citus marker -----------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "citus: runs through a Citus coordinator when PYDBAL_TEST_CITUS_DSN is set"
    )
    config.addinivalue_line(
        "markers",
        "single_node(reason): in a citus suite, a test of a single-node behaviour that a "
        "Citus coordinator does not have (skipped there, with the reason)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(__file__).resolve().parent
    for item in items:
        rel = Path(str(item.fspath)).resolve().relative_to(root).as_posix()
        if rel in CITUS_SUITES or rel.startswith("citus/"):
            item.add_marker(pytest.mark.citus)
        if rel.startswith("citus/") and not CITUS_DSN:
            item.add_marker(
                pytest.mark.skip(
                    reason="needs a Citus coordinator: set PYDBAL_TEST_CITUS_DSN (.ci/citus.sh up)"
                )
            )
        if CITUS_DSN and item.get_closest_marker("citus") is None:
            item.add_marker(
                pytest.mark.skip(reason="PYDBAL_TEST_CITUS_DSN is set: only `citus` tests run")
            )
        elif CITUS_DSN and item.get_closest_marker("single_node") is not None:
            marker = item.get_closest_marker("single_node")
            reason = marker.kwargs.get("reason", "") if marker is not None else ""
            item.add_marker(pytest.mark.skip(reason=f"single node only: {reason}"))


# --- the server ----------------------------------------------------------------------------------


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """Superuser DSN of the session's server."""
    env = CITUS_DSN or os.environ.get("PYDBAL_TEST_DSN")
    if env:
        yield env
        return
    if _docker_answers():
        container: Any = None
        try:
            from testcontainers.postgres import PostgresContainer

            container = PostgresContainer("postgres:15", driver=None).start()
            dsn = container.get_connection_url()
        except Exception as exc:  # no image, no network...: fall through to embedded
            if container is not None:
                with contextlib.suppress(Exception):
                    container.stop()
            print(f"testcontainers unavailable ({exc}); using an embedded server")
        else:
            yield dsn
            container.stop()
            return
    tmp = Path(tempfile.mkdtemp(prefix="pydbal-test-"))
    try:
        yield embedded_server(tmp, cleanup_mode="delete")
    finally:
        stop_embedded(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


async def _admin(pg_dsn: str) -> Any:
    return await asyncpg.connect(pg_dsn)


async def _ensure_app_login(conn: Any) -> None:
    """A LOGIN role with only the app role's rights (no password: trust auth). Idempotent."""
    roles = resolve_roles()
    await ensure_roles(conn, roles)
    create = f"""
DO $t$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_LOGIN}') THEN
        CREATE ROLE {APP_LOGIN} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE INHERIT;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END
$t$;
"""
    for statement in (create, f'GRANT "{roles.app}" TO {APP_LOGIN}'):
        try:
            await conn.execute(statement)
        except asyncpg.PostgresError as exc:
            if getattr(exc, "sqlstate", None) != "XX000":  # tuple concurrently updated
                raise
            await conn.execute(statement)


@pytest.fixture(scope="session")
async def app_login(pg_dsn: str) -> str:
    """Name of the LOGIN role granted the app role (created once per server)."""
    conn = await _admin(pg_dsn)
    try:
        await _ensure_app_login(conn)
    finally:
        await conn.close()
    return APP_LOGIN


@pytest.fixture(scope="session")
async def template_db(
    pg_dsn: str, app_login: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A database migrated once per session; per-test databases are copies of it."""
    if CITUS_DSN:
        async for citus_name in _citus_session_database(pg_dsn):
            yield citus_name
        return
    name = f"pydbal_tpl_{RUN_ID}"
    conn = await _admin(pg_dsn)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    try:
        if real_schema_available():
            await migrate(dsn_with(pg_dsn, database=name))
        else:
            sql_dir, migrations_dir = write_sample_schema(tmp_path_factory.mktemp("schema"))
            await migrate(
                dsn_with(pg_dsn, database=name), sql_dir=sql_dir, migrations_dir=migrations_dir
            )
        yield name
    finally:
        conn = await _admin(pg_dsn)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await conn.close()


@dataclass
class TestDatabase:
    """A database of one test: ``dsn`` logs in as the superuser, ``app_dsn`` as the app login."""

    __test__ = False  # not a test class, despite the name

    name: str
    dsn: str
    app_dsn: str
    _connections: list[Any] = field(default_factory=list, repr=False)

    async def connect(self, as_app: bool = True) -> Any:
        """An asyncpg connection (closed after the test), as the app login unless told not to."""
        conn = await asyncpg.connect(self.app_dsn if as_app else self.dsn)
        self._connections.append(conn)
        return conn

    async def close(self) -> None:
        for conn in self._connections:
            if not conn.is_closed():
                await conn.close()
        self._connections.clear()


async def _fresh_database(pg_dsn: str, template: str) -> AsyncIterator[TestDatabase]:
    name = f"pydbal_t_{RUN_ID}_{next(_counter)}"
    conn = await _admin(pg_dsn)
    try:
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    finally:
        await conn.close()
    dsn = dsn_with(pg_dsn, database=name)
    if real_schema_available():  # database privileges are not copied from the template
        copy = await _admin(dsn)
        try:
            await close_public_temp(copy, resolve_roles())
        finally:
            await copy.close()
    database = TestDatabase(name=name, dsn=dsn, app_dsn=dsn_with(dsn, user=APP_LOGIN))
    try:
        yield database
    finally:
        await database.close()
        conn = await _admin(pg_dsn)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await conn.close()


@pytest.fixture
async def db(pg_dsn: str, template_db: str) -> AsyncIterator[TestDatabase]:
    """A fresh copy of the migrated template database (on Citus: the session's, emptied)."""
    if CITUS_DSN:
        async for database in _citus_database(pg_dsn, template_db):
            yield database
        return
    async for database in _fresh_database(pg_dsn, template_db):
        yield database


@pytest.fixture
async def empty_db(pg_dsn: str, app_login: str) -> AsyncIterator[TestDatabase]:
    """A fresh database with nothing installed (copied from template0)."""
    if CITUS_DSN:
        pytest.skip("no empty database per test on Citus (CREATE DATABASE is per node)")
    async for database in _fresh_database(pg_dsn, "template0"):
        yield database


# --- Citus ---------------------------------------------------------------------------------------


async def citus_nodes(pg_dsn: str) -> list[tuple[str, int]]:
    """(host, port) of every primary node of the coordinator at ``pg_dsn``, coordinator first."""
    conn = await _admin(pg_dsn)
    try:
        rows = await conn.fetch(
            "SELECT nodename, nodeport FROM pg_dist_node WHERE noderole = 'primary' "
            "ORDER BY groupid"
        )
    finally:
        await conn.close()
    return [(r["nodename"], int(r["nodeport"])) for r in rows]


def node_dsn(pg_dsn: str, host: str, port: int, database: str) -> str:
    """The superuser DSN of one node of the cluster, in ``database``."""
    split = urlsplit(dsn_with(pg_dsn, database=database))
    userinfo = split.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"
    return urlunsplit(split._replace(netloc=netloc))


async def create_citus_database(pg_dsn: str, name: str) -> str:
    """A database ``name`` on every node of the cluster, with citus and the workers added;
    returns its coordinator DSN. Replaces one left by an earlier run."""
    nodes = await citus_nodes(pg_dsn)
    for host, port in nodes:
        conn = await asyncpg.connect(node_dsn(pg_dsn, host, port, "postgres"))
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await conn.execute(f"CREATE DATABASE {name}")
        finally:
            await conn.close()
        conn = await asyncpg.connect(node_dsn(pg_dsn, host, port, name))
        try:
            await conn.execute("CREATE EXTENSION citus")
        finally:
            await conn.close()
    (chost, cport), workers = nodes[0], nodes[1:]
    conn = await asyncpg.connect(node_dsn(pg_dsn, chost, cport, name))
    try:
        await conn.execute("SELECT citus_set_coordinator_host($1, $2)", chost, cport)
        for host, port in workers:
            await conn.execute("SELECT citus_add_node($1, $2)", host, port)
    finally:
        await conn.close()
    return dsn_with(pg_dsn, database=name)


async def drop_citus_database(pg_dsn: str, name: str) -> None:
    for host, port in await citus_nodes(pg_dsn):
        conn = await asyncpg.connect(node_dsn(pg_dsn, host, port, "postgres"))
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await conn.close()


async def _citus_session_database(pg_dsn: str) -> AsyncIterator[str]:
    name = f"pydbal_citus_{RUN_ID}"
    dsn = await create_citus_database(pg_dsn, name)
    try:
        os.environ["PYDBAL_CITUS_SHARD_COUNT"] = str(CITUS_SHARD_COUNT)
        await migrate(dsn)
        yield name
    finally:
        await drop_citus_database(pg_dsn, name)


async def _citus_database(pg_dsn: str, name: str) -> AsyncIterator[TestDatabase]:
    dsn = dsn_with(pg_dsn, database=name)
    database = TestDatabase(name=name, dsn=dsn, app_dsn=dsn_with(dsn, user=APP_LOGIN))
    try:
        yield database
    finally:
        await database.close()
        conn = await _admin(dsn)
        try:
            await empty_citus_database(conn)
        finally:
            await conn.close()


async def empty_citus_database(conn: Any) -> None:
    """Every dbal table emptied (the ledger kept). DELETE, not TRUNCATE: a few rows in each of
    some hundred shard relations go in ~0.1 s where TRUNCATE takes seconds. Children first
    (foreign keys), then the workflows, then the audit rows their purge trigger wrote."""
    tables = [
        r["rel"]
        for r in await conn.fetch(
            "SELECT c.oid::regclass::text AS rel FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'dbal' AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
            "AND c.relname NOT IN ('schema_migrations', 'workflows') ORDER BY 1"
        )
    ]
    for rel in [*tables, "dbal.workflows", "dbal.audit_log"]:
        await conn.execute(f"DELETE FROM {rel}")
