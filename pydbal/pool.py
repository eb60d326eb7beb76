"""Opening the server: the schema check, and the asyncpg pool with pydbal's connection setup.

Every request is one statement calling a ``dbal.api_*`` function that sets its own
transaction-local context, so pooled connections never carry session state and the pool's
reset round trip can be skipped (:func:`_reset_connection`). JSON and JSONB travel as text
encoded and decoded by orjson. Behind PgBouncer in transaction or statement mode
(``pgbouncer=True``) no named prepared statement is kept.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from pydbal import migrate as migrations
from pydbal import queries as q
from pydbal.statements import translate


class SchemaOutdatedError(RuntimeError):
    """The database's schema is not the one this version of pydbal needs."""


def _encode_json(value: Any) -> str:
    # Values are pre-encoded by pydbal (str); anything else is encoded here.
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    for name in ("jsonb", "json"):
        await conn.set_type_codec(
            name, encoder=_encode_json, decoder=orjson.loads, schema="pg_catalog"
        )


async def _reset_connection(conn: asyncpg.Connection) -> None:
    # Context is transaction-local: a connection released outside a transaction carries no
    # request state, so asyncpg's reset round trip (advisory unlock, CLOSE ALL, RESET ALL) is
    # only needed when a caller left something open.
    if conn.is_in_transaction():
        await conn.reset()


async def check_schema(
    dsn: str, embedded: bool, auto_migrate: bool | None, statement_cache_size: int
) -> None:
    """Return when the schema at ``dsn`` is the one this package expects; migrate it when it is
    behind and ``auto_migrate`` (default: only the embedded server); else SchemaOutdatedError."""
    conn = await asyncpg.connect(dsn, statement_cache_size=statement_cache_size)
    try:
        exists = await conn.fetchval(q.LEDGER_EXISTS)
        version = await conn.fetchval(q.SCHEMA_VERSION) if exists else None
    except asyncpg.PostgresError as exc:
        raise translate(exc) from exc
    finally:
        await conn.close()
    expected = migrations.SCHEMA_VERSION
    if version == expected:
        return
    if version is not None and version > expected:
        raise SchemaOutdatedError(
            f"the database's schema ({version}) is newer than this pydbal ({expected}): "
            "upgrade the package"
        )
    if auto_migrate if auto_migrate is not None else embedded:
        await migrations.migrate(dsn)
        return
    raise SchemaOutdatedError(
        f"the database's schema is {version or 'not installed'}, pydbal needs {expected}: "
        "run `pydbal migrate --dsn ...` (as a superuser) first"
    )


async def open_pool(
    dsn: str,
    *,
    embedded: bool,
    min_size: int,
    max_size: int,
    command_timeout: float | None,
    statement_cache_size: int,
    auto_migrate: bool | None,
    pgbouncer: bool,
    pool_options: dict[str, Any],
) -> asyncpg.Pool:
    """Check the schema (see :func:`check_schema`), then open the pool: JSON codecs on every new
    connection, no reset round trip for a clean one, ``pool_options`` passed to
    ``asyncpg.create_pool``. ``pgbouncer`` turns the prepared statement cache off."""
    if pgbouncer:
        # PgBouncer in transaction mode hands each transaction to any server connection: a
        # named prepared statement made on one is unknown on the next. Unnamed statements only.
        statement_cache_size = 0
    await check_schema(dsn, embedded, auto_migrate, statement_cache_size)
    try:
        return await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            command_timeout=command_timeout,
            statement_cache_size=statement_cache_size,
            init=_init_connection,
            reset=_reset_connection,
            **pool_options,
        )
    except asyncpg.PostgresError as exc:
        raise translate(exc) from exc
