"""Short set-up and call helpers for the database-level tests (test_isolation, test_locks, ...).

Everything here runs as whatever connection it is given; the tests pass the application login's
connection (``await db.connect()``) unless they say otherwise. The definer functions are called
with named arguments, the way pydbal calls them.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from pydbal.errors import DBALError, ErrorCode, from_postgres

TENANT_A = "acme"
TENANT_B = "globex"

_INSERT_WORKFLOW = """
INSERT INTO dbal.workflows (tenant_id, name, nodes, edges, created_by, enabled,
                            validation_status, validated_at, valid_until, validator_version)
VALUES ($1, $2, '[]', '{}', $3, $4, $5,
        CASE WHEN $5 = 'valid' THEN now() END,
        CASE WHEN $5 = 'valid' THEN now() + $6::interval END,
        CASE WHEN $5 = 'valid' THEN $7::integer END)
RETURNING id
"""


@contextlib.asynccontextmanager
async def context(
    conn: Any, tenant: str | None, user: str | None = "u1", role: str | None = "admin"
) -> AsyncIterator[Any]:
    """A transaction whose request context is (tenant, user, role), set by ``dbal.enter``."""
    async with conn.transaction():
        await conn.execute("SELECT dbal.enter($1, $2, $3)", tenant, user, role)
        yield conn


async def create_workflow(
    conn: Any,
    tenant: str = TENANT_A,
    name: str | None = None,
    *,
    user: str = "u1",
    role: str = "admin",
    status: str = "valid",
    valid_for: timedelta = timedelta(hours=1),
    validator_version: int = 1,
    enabled: bool = True,
) -> uuid.UUID:
    """Insert a workflow in ``tenant`` through the policies; lockable with the defaults.

    ``status`` 'valid' gets a result valid for ``valid_for`` (negative: already expired) made by
    ``validator_version``; any other status gets no result ('stale' cannot be inserted: the
    trigger turns it into 'pending'; use :func:`make_stale`).
    """
    name = name or f"wf-{uuid.uuid4().hex[:10]}"
    async with context(conn, tenant, user, role):
        row_id = await conn.fetchval(
            _INSERT_WORKFLOW, tenant, name, user, enabled, status, valid_for, validator_version
        )
    assert isinstance(row_id, uuid.UUID)
    return row_id


async def make_stale(conn: Any, workflow: uuid.UUID, tenant: str = TENANT_A) -> None:
    """Change the definition without a new validation result: the trigger marks it 'stale'."""
    async with context(conn, tenant):
        done = await conn.execute(
            'UPDATE dbal.workflows SET nodes = \'[{"id": "n1"}]\' WHERE id = $1', workflow
        )
    assert done == "UPDATE 1"


# --- the definer functions -----------------------------------------------------------------------


async def acquire(
    conn: Any,
    workflow: uuid.UUID,
    *,
    timeout_ms: int = 30_000,
    tenant: str | None = TENANT_A,
    user: str | None = "u1",
    role: str | None = "admin",
) -> int | None:
    token = await conn.fetchval(
        "SELECT dbal.acquire_lock(p_workflow => $1, p_timeout_ms => $2,"
        " p_tenant => $3, p_user => $4, p_role => $5)",
        workflow,
        timeout_ms,
        tenant,
        user,
        role,
    )
    return token


async def renew(
    conn: Any,
    workflow: uuid.UUID,
    token: int | None,
    *,
    timeout_ms: int = 30_000,
    tenant: str | None = TENANT_A,
    user: str | None = "u1",
    role: str | None = "admin",
) -> bool:
    return await conn.fetchval(
        "SELECT dbal.renew_lock(p_workflow => $1, p_token => $2, p_timeout_ms => $3,"
        " p_tenant => $4, p_user => $5, p_role => $6)",
        workflow,
        token,
        timeout_ms,
        tenant,
        user,
        role,
    )


async def release(
    conn: Any,
    workflow: uuid.UUID,
    token: int | None = None,
    *,
    tenant: str | None = TENANT_A,
    user: str | None = "u1",
    role: str | None = "admin",
) -> bool:
    return await conn.fetchval(
        "SELECT dbal.release_lock(p_workflow => $1, p_token => $2,"
        " p_tenant => $3, p_user => $4, p_role => $5)",
        workflow,
        token,
        tenant,
        user,
        role,
    )


async def release_expired(
    conn: Any,
    *,
    tenant: str | None = TENANT_A,
    user: str | None = "u1",
    role: str | None = "admin",
) -> int:
    return await conn.fetchval(
        "SELECT dbal.release_expired_locks(p_tenant => $1, p_user => $2, p_role => $3)",
        tenant,
        user,
        role,
    )


async def record(
    conn: Any,
    workflow: uuid.UUID,
    status: str = "success",
    duration_ms: float | None = 10.0,
    *,
    execution_id: str | None = None,
    token: int | None = None,
    started_at: datetime | None = None,
    error: str | None = None,
    tenant: str | None = TENANT_A,
    user: str | None = "u1",
    role: str | None = "admin",
) -> tuple[str, str]:
    """``dbal.record_execution``: returns (execution_id, outcome)."""
    row = await conn.fetchrow(
        "SELECT * FROM dbal.record_execution(p_workflow => $1, p_status => $2,"
        " p_duration_ms => $3, p_execution_id => $4, p_token => $5, p_started_at => $6,"
        " p_error => $7, p_tenant => $8, p_user => $9, p_role => $10)",
        workflow,
        status,
        duration_ms,
        execution_id,
        token,
        started_at,
        error,
        tenant,
        user,
        role,
    )
    return row["execution_id"], row["outcome"]


async def stats(
    conn: Any,
    workflow: uuid.UUID,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    tenant: str | None = TENANT_A,
    user: str | None = "u1",
    role: str | None = "admin",
) -> dict[str, Any]:
    """``dbal.execution_stats`` over [start, end) as a dict."""
    row = await conn.fetchrow(
        "SELECT * FROM dbal.execution_stats(p_workflow => $1, p_from => $2, p_to => $3,"
        " p_tenant => $4, p_user => $5, p_role => $6)",
        workflow,
        start,
        end,
        tenant,
        user,
        role,
    )
    return dict(row)


# --- errors -------------------------------------------------------------------------------------


async def dbal_error(awaitable: Awaitable[Any]) -> DBALError:
    """Await, expect a database error that pydbal maps, and return the mapped DBALError."""
    with pytest.raises(asyncpg.PostgresError) as info:
        await awaitable
    error = from_postgres(info.value)
    assert error is not None, f"unmapped database error: {info.value!r}"
    return error


async def expect_code(awaitable: Awaitable[Any], code: ErrorCode) -> DBALError:
    error = await dbal_error(awaitable)
    assert error.code == code, repr(error)
    return error


async def sqlstate(awaitable: Awaitable[Any]) -> str:
    """Await, expect a database error, and return its SQLSTATE."""
    with pytest.raises(asyncpg.PostgresError) as info:
        await awaitable
    return str(info.value.sqlstate)


async def lock_row(admin: Any, workflow: uuid.UUID) -> dict[str, Any]:
    """The lock columns of a workflow, read by a superuser (not subject to the policies)."""
    row = await admin.fetchrow(
        "SELECT is_locked, locked_by, lock_token, lock_expires_at FROM dbal.workflows"
        " WHERE id = $1",
        workflow,
    )
    return dict(row)


TABLE_PRIVILEGES = ["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"]


async def table_privileges(conn: Any, tables: list[str]) -> list[tuple[str, str]]:
    """(table, privilege) pairs the connection's role holds on ``tables`` (table or column)."""
    rows = await conn.fetch(
        """
        SELECT t, p FROM unnest($1::text[]) t, unnest($2::text[]) p
         WHERE has_table_privilege(current_user, t, p)
            OR (p IN ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES')
                AND has_any_column_privilege(current_user, t, p))
        """,
        tables,
        TABLE_PRIVILEGES,
    )
    return [(r["t"], r["p"]) for r in rows]
