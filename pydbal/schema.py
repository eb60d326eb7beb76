"""What pydbal's schema is made of, and the database-level setup around it.

- the three role names the schema files refer to (:class:`Roles`, :func:`resolve_roles`): the
  arguments, then ``PYDBAL_OWNER_ROLE``/``PYDBAL_APP_ROLE``/``PYDBAL_ANALYST_ROLE``, then
  ``pydbal_owner``/``pydbal_app``/``pydbal_analyst``;
- the files: ``sql/*.sql`` (the current schema), ``migrations/NNNN_name.sql`` (upgrade steps),
  the checkout's or the wheel's (:func:`schema_dirs`); :func:`render` replaces the
  ``@owner_role@``, ``@app_role@`` and ``@analyst_role@`` placeholders, :func:`execute_file` runs
  one file (:func:`execute_text`, part of one) and names it in a :class:`MigrationError` when it
  fails;
- the steps outside any file and outside the ledger: :func:`ensure_roles` (roles are
  cluster-wide), :func:`close_public_temp` (database privileges are not copied by
  ``CREATE DATABASE … TEMPLATE``), :func:`has_extension`.

The runner that applies the files exactly once is :mod:`pydbal.migrate`; the Citus step is
:mod:`pydbal.distribute`.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from pydbal import queries as q

__all__ = [
    "MigrationError",
    "Roles",
    "checksum",
    "close_public_temp",
    "ensure_roles",
    "execute_file",
    "execute_text",
    "file_label",
    "has_extension",
    "migration_files",
    "render",
    "resolve_roles",
    "schema_dirs",
    "sql_files",
]

ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_LEFTOVER_PLACEHOLDER = re.compile(r"@[a-z_]+_role@")


class MigrationError(Exception):
    """The schema cannot be installed or upgraded; the message says why and what to do."""


@dataclass(frozen=True)
class Roles:
    """The three database roles the schema refers to through placeholders."""

    owner: str = "pydbal_owner"
    app: str = "pydbal_app"
    analyst: str = "pydbal_analyst"

    def placeholders(self) -> dict[str, str]:
        """Each placeholder of the schema files with the role name that replaces it."""
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


def sql_files(sql_dir: Path) -> list[Path]:
    """The schema files of ``sql_dir`` (``sql/*.sql``) in application order (file-name order)."""
    if not sql_dir.is_dir():
        return []
    return sorted(p for p in sql_dir.glob("*.sql") if p.is_file())


def checksum(path: Path) -> str:
    """sha256 hex of a file's bytes (its text before placeholder substitution)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_label(path: Path) -> str:
    """``folder/file.sql``: how messages name a schema file."""
    return f"{path.parent.name}/{path.name}"


def render(path: Path, roles: Roles) -> str:
    """A file's text with the role placeholders replaced."""
    text = path.read_text(encoding="utf-8")
    for placeholder, name in roles.placeholders().items():
        text = text.replace(placeholder, name)
    leftover = _LEFTOVER_PLACEHOLDER.search(text)
    if leftover:
        raise MigrationError(f"{file_label(path)}: unknown placeholder {leftover.group(0)}")
    return text


async def execute_file(conn: Any, path: Path, roles: Roles, *, label: str | None = None) -> None:
    """Run a schema file (rendered for ``roles``) on ``conn``; a database error becomes a
    :class:`MigrationError` naming the file (``label``, default ``folder/file.sql``) with the
    error's detail, hint and context."""
    await execute_text(conn, render(path, roles), label or file_label(path))


async def execute_text(conn: Any, text: str, label: str) -> None:
    """Run SQL ``text`` (part of a schema file) on ``conn``; a database error becomes a
    :class:`MigrationError` naming ``label`` with the error's detail, hint and context."""
    try:
        await conn.execute(text)
    except asyncpg.PostgresError as exc:
        parts = [f"{label} failed: {type(exc).__name__}: {exc}"]
        for field in ("detail", "hint", "context"):
            value = getattr(exc, field, None)
            if value:
                parts.append(f"{field.upper()}: {value}")
        raise MigrationError("\n".join(parts)) from exc


def _create_role_sql(name: str) -> str:
    """A DO block creating the NOLOGIN role ``name`` unless it exists (or appears meanwhile)."""
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


async def close_public_temp(conn: Any, roles: Roles) -> None:
    """In the connected database: no temporary tables for PUBLIC (so for no analyst login);
    the owner and application roles keep them. Database privileges are not copied by
    ``CREATE DATABASE … TEMPLATE``, so every ``migrate`` run and every analyst grant applies
    this, not only the migration that introduced it (sql/97_catalog_hardening.sql)."""
    db = await conn.fetchval(q.CURRENT_DATABASE)
    ident = '"' + str(db).replace('"', '""') + '"'
    await conn.execute(f"REVOKE TEMPORARY ON DATABASE {ident} FROM PUBLIC")
    await conn.execute(f'GRANT TEMPORARY ON DATABASE {ident} TO "{roles.owner}", "{roles.app}"')


async def has_extension(conn: Any, name: str) -> bool:
    """Whether the connected database has the extension ``name`` installed."""
    return bool(await conn.fetchval(q.EXTENSION_INSTALLED, name))


async def ledger_exists(conn: Any) -> bool:
    """Whether the connected database has the ledger table ``dbal.schema_migrations``."""
    return bool(await conn.fetchval(q.LEDGER_EXISTS))
