"""The migration runner: installs the schema and applies upgrade steps, exactly once.

Layout (fixed conventions):

- ``sql/*.sql`` is the current schema; a fresh install applies every file in file-name order.
- ``migrations/NNNN_name.sql`` are ordered upgrade steps; ``0001_initial.sql`` is the full schema
  of the first release. A migration is recorded in ``dbal.schema_migrations`` under its file name
  without ``.sql``, with the sha256 of its text (before placeholder substitution).
- ``@owner_role@``, ``@app_role@`` and ``@analyst_role@`` in any file are replaced with the
  configured role names (arguments, then ``PYDBAL_*_ROLE``, then ``pydbal_owner``/``pydbal_app``/
  ``pydbal_analyst``).

The files, the role names and the database-level steps around a run (creating the roles, closing
temporary tables to PUBLIC) are :mod:`pydbal.schema`'s; its names are importable from here too.

A run is one transaction serialised per database by ``pg_advisory_xact_lock``; the three roles are
created beforehand (roles are cluster-wide, so that step tolerates concurrent runners on other
databases of the same server). Migrating requires a superuser.

On a Citus coordinator (the database has the ``citus`` extension) a fresh install creates the
schema as local objects (DDL propagation off) and then, in the same transaction, distributes it
by tenant (:mod:`pydbal.distribute`, ``sql/citus/*.sql``); an upgrade there applies the pending
files as the superuser, hands what they created to the owner role
(:func:`pydbal.distribute.upgrade_file`) and distributes again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import asyncpg

from pydbal import queries as q
from pydbal.schema import (
    MigrationError,
    Roles,
    checksum,
    close_public_temp,
    ensure_roles,
    execute_file,
    file_label,
    has_extension,
    ledger_exists,
    migration_files,
    resolve_roles,
    schema_dirs,
    sql_files,
)

__all__ = [
    "LOCK_KEY",
    "SCHEMA_VERSION",
    "MigrationError",
    "Roles",
    "checksum",
    "close_public_temp",
    "ensure_roles",
    "ledger_exists",
    "migrate",
    "migration_files",
    "resolve_roles",
    "schema_dirs",
    "status",
]

#: Key of the transaction-level advisory lock serialising runners on one database ("pydbalmg").
LOCK_KEY = 0x70796462616C6D67

Mode = Literal["auto", "migrations"]

_LEDGER_DDL = """
CREATE SCHEMA IF NOT EXISTS dbal;
CREATE TABLE IF NOT EXISTS dbal.schema_migrations (
    name text PRIMARY KEY,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE dbal.schema_migrations OWNER TO "{owner}";
REVOKE ALL ON dbal.schema_migrations FROM PUBLIC;
GRANT USAGE ON SCHEMA dbal TO "{app}", "{analyst}";
GRANT SELECT ON dbal.schema_migrations TO "{app}", "{analyst}";
"""


def _newest_migration() -> str:
    """The name of the newest migration file ("" when there is none)."""
    files = migration_files()
    return files[-1].stem if files else ""


#: Name of the newest migration file shipped with this package ("" when there is none yet).
SCHEMA_VERSION: str = _newest_migration()


async def _require_superuser(conn: Any) -> None:
    """Refuse (:class:`MigrationError`) unless ``conn`` logged in as a superuser."""
    row = await conn.fetchrow(
        "SELECT current_user AS name, rolsuper FROM pg_roles WHERE rolname = current_user"
    )
    if row is None or not row["rolsuper"]:
        name = row["name"] if row is not None else "?"
        raise MigrationError(
            f"migrating requires a PostgreSQL superuser, but {name!r} is not one: connect as a "
            "superuser (e.g. postgres) to install or upgrade the schema; the application itself "
            "then runs as the app role"
        )


async def _applied(conn: Any) -> list[tuple[str, str]]:
    """The ledger's ``(name, checksum)`` rows in name order (none without a ledger)."""
    if not await ledger_exists(conn):
        return []
    rows = await conn.fetch("SELECT name, checksum FROM dbal.schema_migrations ORDER BY name")
    return [(r["name"], r["checksum"]) for r in rows]


async def _ensure_ledger(conn: Any, roles: Roles) -> None:
    """Create the ledger table where missing, owned by the owner, readable by app and analyst."""
    await conn.execute(_LEDGER_DDL.format(owner=roles.owner, app=roles.app, analyst=roles.analyst))


def _verify_applied(applied: list[tuple[str, str]], files: dict[str, Path]) -> None:
    """Refuse a ledger naming a migration this package lacks, or one whose file changed."""
    for name, recorded in applied:
        path = files.get(name)
        if path is None:
            raise MigrationError(
                f"the database has migration {name!r}, which this copy of pydbal does not have: "
                "upgrade pydbal (the database is newer than the code)"
            )
        actual = checksum(path)
        if actual != recorded:
            raise MigrationError(
                f"{file_label(path)} was edited after it was applied (checksum {recorded[:12]}… ≠ "
                f"{actual[:12]}…); restore it and add a new migration instead"
            )


_LOCK_HOLDERS = """
SELECT l.pid, a.usename::text AS login, a.application_name, a.backend_start, a.state
  FROM pg_catalog.pg_locks l
  LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted AND l.database = (
           SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
   AND l.classid::bigint = ($1::bigint >> 32) AND l.objid::bigint = ($1::bigint & 4294967295)
   AND l.pid <> pg_catalog.pg_backend_pid()
"""


async def _take_runner_lock(conn: Any, timeout_s: float) -> None:
    """Take the runners' advisory lock within ``timeout_s`` or name who holds it."""
    await conn.execute(f"SET LOCAL lock_timeout = {round(timeout_s * 1000)}")
    try:
        async with conn.transaction():  # a savepoint: the outer transaction survives a timeout
            await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
    except asyncpg.LockNotAvailableError:
        holders = await conn.fetch(_LOCK_HOLDERS, LOCK_KEY)
        who = (
            "; ".join(
                f"pid {h['pid']} (login {h['login']}, application {h['application_name']!r}, "
                f"connected {h['backend_start']:%Y-%m-%d %H:%M:%S%z}, {h['state']})"
                for h in holders
            )
            or "a session that has since released it"
        )
        raise MigrationError(
            f"another session holds pydbal's migration lock (advisory key {LOCK_KEY:#x}) and "
            f"did not release it within {timeout_s:g}s: {who}. Wait for it, or end it with "
            "SELECT pg_terminate_backend(pid)"
        ) from None
    await conn.execute("SET LOCAL lock_timeout = 0")


async def migrate(
    dsn: str,
    *,
    mode: Mode = "auto",
    owner_role: str | None = None,
    app_role: str | None = None,
    analyst_role: str | None = None,
    sql_dir: Path | str | None = None,
    migrations_dir: Path | str | None = None,
    lock_timeout: float = 60.0,
) -> list[str]:
    """Install or upgrade the schema of the database at ``dsn``; return the migrations applied.

    Runners on one database are serialised by an advisory lock; a runner waits for it at most
    ``lock_timeout`` seconds, then fails with a :class:`MigrationError` naming the sessions
    that hold it (pid, login, application, since when).

    On a database without ledger rows, ``mode="auto"`` applies ``sql/*.sql`` and records every
    migration as applied; ``mode="migrations"`` applies every migration file instead. On a
    database with ledger rows both modes refuse edited migrations and apply the pending ones.
    A second run returns ``[]``. ``sql_dir``/``migrations_dir`` override the packaged files.
    """
    if mode not in ("auto", "migrations"):
        raise MigrationError(f"unknown mode {mode!r}: use 'auto' or 'migrations'")
    roles = resolve_roles(owner_role, app_role, analyst_role)
    default_sql, default_migrations = schema_dirs()
    sql_path = Path(sql_dir) if sql_dir is not None else default_sql
    migrations_path = Path(migrations_dir) if migrations_dir is not None else default_migrations
    migrations = migration_files(migrations_path)
    if not migrations:
        raise MigrationError(
            f"no migration files in {migrations_path}: the ledger needs at least "
            "migrations/0001_initial.sql to record the schema version"
        )
    by_name = {p.stem: p for p in migrations}

    conn = await asyncpg.connect(dsn)
    try:
        await _require_superuser(conn)
        await ensure_roles(conn, roles)
        if not 0 < lock_timeout <= 86_400:  # also refuses NaN
            raise MigrationError(f"lock_timeout must be 0 < seconds <= 86400, not {lock_timeout}")
        async with conn.transaction():
            await _take_runner_lock(conn, lock_timeout)
            applied = await _applied(conn)
            citus = await has_extension(conn, "citus")
            if citus and not applied:
                # a fresh install on a Citus coordinator: local objects first (no worker
                # connections, so no role switching on workers), distributed below
                await conn.execute("SET LOCAL citus.enable_ddl_propagation = off")
            if not applied:
                if await conn.fetchval(q.SCHEMA_EXISTS):
                    raise MigrationError(
                        "the database holds pydbal's schema but its ledger "
                        "(dbal.schema_migrations) is empty: it was emptied or the schema was "
                        "installed by hand. Restore the ledger rows (see `pydbal status`) "
                        "instead of migrating again"
                    )
                if mode == "auto":
                    schema_files = sql_files(sql_path)
                    if not schema_files:
                        raise MigrationError(f"no schema files in {sql_path}")
                    for path in schema_files:
                        await execute_file(conn, path, roles)
                else:
                    for path in migrations:
                        await execute_file(conn, path, roles)
                to_record = migrations
            else:
                _verify_applied(applied, by_name)
                done = {name for name, _ in applied}
                to_record = [p for p in migrations if p.stem not in done]
                if citus and to_record:
                    # as the superuser, owner sections' objects handed over (distribute.py)
                    from pydbal.distribute import finish_upgrade, prepare_upgrade, upgrade_file

                    await prepare_upgrade(conn)
                    for path in to_record:
                        await upgrade_file(conn, path, roles)
                    await finish_upgrade(conn)
                else:
                    for path in to_record:
                        await execute_file(conn, path, roles)
            await _ensure_ledger(conn, roles)
            await close_public_temp(conn, roles)
            if citus:
                from pydbal.distribute import apply_distribution

                await conn.execute("SET LOCAL citus.enable_ddl_propagation = on")
                await apply_distribution(conn, roles, sql_path)
            if to_record:
                await conn.executemany(
                    "INSERT INTO dbal.schema_migrations (name, checksum) VALUES ($1, $2)",
                    [(p.stem, checksum(p)) for p in to_record],
                )
            return [p.stem for p in to_record]
    finally:
        await conn.close()


async def status(dsn: str, *, migrations_dir: Path | str | None = None) -> dict[str, Any]:
    """What is applied and pending on the database at ``dsn``; read-only, any role with access.

    Keys: ``applied`` and ``pending`` (migration names), ``edited`` (applied migrations whose file
    changed), ``schema_version`` (the last applied name, or None), ``expected_version`` (the
    newest migration file), ``pg_partman`` (whether the extension is installed in the database).
    """
    migrations_path = Path(migrations_dir) if migrations_dir is not None else schema_dirs()[1]
    files = {p.stem: p for p in migration_files(migrations_path)}
    conn = await asyncpg.connect(dsn)
    try:
        applied = await _applied(conn)
        partman = await has_extension(conn, "pg_partman")
    finally:
        await conn.close()
    done = {name for name, _ in applied}
    return {
        "applied": [name for name, _ in applied],
        "pending": [name for name in sorted(files) if name not in done],
        "edited": [n for n, c in applied if n in files and checksum(files[n]) != c],
        "schema_version": applied[-1][0] if applied else None,
        "expected_version": max(files) if files else None,
        "pg_partman": partman,
    }
