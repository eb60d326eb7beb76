"""The migration runner: installs the schema and applies upgrade steps, exactly once.

Layout (fixed conventions):

- ``sql/*.sql`` is the current schema; a fresh install applies every file in file-name order.
- ``migrations/NNNN_name.sql`` are ordered upgrade steps; ``0001_initial.sql`` is the full schema
  of the first release. A migration is recorded in ``dbal.schema_migrations`` under its file name
  without ``.sql``, with the sha256 of its text (before placeholder substitution).
- ``@owner_role@``, ``@app_role@`` and ``@analyst_role@`` in any file are replaced with the
  configured role names (arguments, then ``PYDBAL_*_ROLE``, then ``pydbal_owner``/``pydbal_app``/
  ``pydbal_analyst``).

A run is one transaction serialised per database by ``pg_advisory_xact_lock``; the three roles are
created beforehand (roles are cluster-wide, so that step tolerates concurrent runners on other
databases of the same server). Migrating requires a superuser.

On a Citus coordinator (the database has the ``citus`` extension) a fresh install creates the
schema as local objects (DDL propagation off) and then, in the same transaction, distributes it
by tenant (:mod:`pydbal.distribute`, ``sql/citus/*.sql``); upgrading a distributed install is
refused for now (docs/scale-out.md).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import asyncpg

from pydbal import queries as q

__all__ = [
    "SCHEMA_VERSION",
    "MigrationError",
    "Roles",
    "ensure_roles",
    "migrate",
    "migration_files",
    "resolve_roles",
    "schema_dirs",
    "status",
]

#: Key of the transaction-level advisory lock serialising runners on one database ("pydbalmg").
LOCK_KEY = 0x70796462616C6D67

ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_LEFTOVER_PLACEHOLDER = re.compile(r"@[a-z_]+_role@")

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


class MigrationError(Exception):
    """The schema cannot be installed or upgraded; the message says why and what to do."""


@dataclass(frozen=True)
class Roles:
    """The three database roles the schema refers to through placeholders."""

    owner: str = "pydbal_owner"
    app: str = "pydbal_app"
    analyst: str = "pydbal_analyst"

    def placeholders(self) -> dict[str, str]:
        return {"@owner_role@": self.owner, "@app_role@": self.app, "@analyst_role@": self.analyst}


def resolve_roles(
    owner_role: str | None = None, app_role: str | None = None, analyst_role: str | None = None
) -> Roles:
    """Role names from the arguments, else ``PYDBAL_*_ROLE``, else the defaults; validated."""
    default = Roles()
    roles = Roles(
        owner=owner_role or os.environ.get("PYDBAL_OWNER_ROLE") or default.owner,
        app=app_role or os.environ.get("PYDBAL_APP_ROLE") or default.app,
        analyst=analyst_role or os.environ.get("PYDBAL_ANALYST_ROLE") or default.analyst,
    )
    for kind, name in (("owner", roles.owner), ("app", roles.app), ("analyst", roles.analyst)):
        if not ROLE_NAME.fullmatch(name):
            raise MigrationError(
                f"invalid {kind} role name {name!r}: it must match {ROLE_NAME.pattern}"
            )
    if len({roles.owner, roles.app, roles.analyst}) != 3:
        raise MigrationError(f"the owner, app and analyst roles must be distinct, got {roles}")
    return roles


def schema_dirs() -> tuple[Path, Path]:
    """``(sql_dir, migrations_dir)``: the checkout's when present, else the wheel's."""
    package = Path(__file__).resolve().parent
    checkout = package.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "sql").is_dir():
        return checkout / "sql", checkout / "migrations"
    return package / "_sql", package / "_migrations"


def migration_files(migrations_dir: Path | None = None) -> list[Path]:
    """The migration files in application order (file-name order)."""
    directory = migrations_dir if migrations_dir is not None else schema_dirs()[1]
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.sql") if p.is_file())


def _sql_files(sql_dir: Path) -> list[Path]:
    if not sql_dir.is_dir():
        return []
    return sorted(p for p in sql_dir.glob("*.sql") if p.is_file())


def _newest_migration() -> str:
    files = migration_files()
    return files[-1].stem if files else ""


#: Name of the newest migration file shipped with this package ("" when there is none yet).
SCHEMA_VERSION: str = _newest_migration()


def checksum(path: Path) -> str:
    """sha256 hex of a file's bytes (its text before placeholder substitution)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _display(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def render(path: Path, roles: Roles) -> str:
    """A file's text with the role placeholders replaced."""
    text = path.read_text(encoding="utf-8")
    for placeholder, name in roles.placeholders().items():
        text = text.replace(placeholder, name)
    leftover = _LEFTOVER_PLACEHOLDER.search(text)
    if leftover:
        raise MigrationError(f"{_display(path)}: unknown placeholder {leftover.group(0)}")
    return text


async def _execute_file(conn: Any, path: Path, roles: Roles) -> None:
    text = render(path, roles)
    try:
        await conn.execute(text)
    except asyncpg.PostgresError as exc:
        parts = [f"{_display(path)} failed: {type(exc).__name__}: {exc}"]
        for label in ("detail", "hint", "context"):
            value = getattr(exc, label, None)
            if value:
                parts.append(f"{label.upper()}: {value}")
        raise MigrationError("\n".join(parts)) from exc


async def _require_superuser(conn: Any) -> None:
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


def _create_role_sql(name: str) -> str:
    # `name` was validated against ROLE_NAME, so quoting it as an identifier is safe.
    return f"""
DO $pydbal$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{name}') THEN
        CREATE ROLE "{name}" NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- created concurrently by a runner on another database of this server
END
$pydbal$;
"""


async def ensure_roles(conn: Any, roles: Roles) -> None:
    """Create the three roles if missing; safe against runners on other databases."""
    for name in (roles.owner, roles.app, roles.analyst):
        statement = _create_role_sql(name)
        try:
            await conn.execute(statement)
        except asyncpg.PostgresError as exc:
            # Concurrent catalog updates can surface as XX000 "tuple concurrently updated".
            if getattr(exc, "sqlstate", None) != "XX000":
                raise
            await conn.execute(statement)


async def _citus_present(conn: Any) -> bool:
    return bool(await conn.fetchval(q.EXTENSION_INSTALLED, "citus"))


async def _ledger_exists(conn: Any) -> bool:
    return bool(await conn.fetchval(q.LEDGER_EXISTS))


async def _applied(conn: Any) -> list[tuple[str, str]]:
    if not await _ledger_exists(conn):
        return []
    rows = await conn.fetch("SELECT name, checksum FROM dbal.schema_migrations ORDER BY name")
    return [(r["name"], r["checksum"]) for r in rows]


async def _ensure_ledger(conn: Any, roles: Roles) -> None:
    await conn.execute(_LEDGER_DDL.format(owner=roles.owner, app=roles.app, analyst=roles.analyst))


def _verify_applied(applied: list[tuple[str, str]], files: dict[str, Path]) -> None:
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
                f"{_display(path)} was edited after it was applied (checksum {recorded[:12]}… ≠ "
                f"{actual[:12]}…); restore it and add a new migration instead"
            )


async def close_public_temp(conn: Any, roles: Roles) -> None:
    """In the connected database: no temporary tables for PUBLIC (so for no analyst login);
    the owner and application roles keep them. Database privileges are not copied by
    ``CREATE DATABASE … TEMPLATE``, so every ``migrate`` run and every analyst grant applies
    this, not only the migration that introduced it (sql/97_catalog_hardening.sql)."""
    db = await conn.fetchval(q.CURRENT_DATABASE)
    ident = '"' + str(db).replace('"', '""') + '"'
    await conn.execute(f"REVOKE TEMPORARY ON DATABASE {ident} FROM PUBLIC")
    await conn.execute(f'GRANT TEMPORARY ON DATABASE {ident} TO "{roles.owner}", "{roles.app}"')


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
            citus = await _citus_present(conn)
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
                    sql_files = _sql_files(sql_path)
                    if not sql_files:
                        raise MigrationError(f"no schema files in {sql_path}")
                    for path in sql_files:
                        await _execute_file(conn, path, roles)
                else:
                    for path in migrations:
                        await _execute_file(conn, path, roles)
                to_record = migrations
            else:
                _verify_applied(applied, by_name)
                done = {name for name, _ in applied}
                to_record = [p for p in migrations if p.stem not in done]
                if citus and to_record:
                    raise MigrationError(
                        "upgrading a distributed (Citus) install is not supported yet: "
                        f"{', '.join(p.stem for p in to_record)} would run DDL on distributed "
                        "tables as the NOLOGIN owner. See docs/scale-out.md, 'Upgrades'"
                    )
                for path in to_record:
                    await _execute_file(conn, path, roles)
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
        partman = bool(await conn.fetchval(q.EXTENSION_INSTALLED, "pg_partman"))
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
