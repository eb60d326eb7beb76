"""Short set-up and call helpers for the database-level tests (test_isolation, test_locks, ...).

Everything here runs as whatever connection it is given; the tests pass the application login's
connection (``await db.connect()``) unless they say otherwise. The definer functions are called
with named arguments, the way pydbal calls them.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable
from datetime import datetime
from typing import Any

import asyncpg
import pytest

from pydbal.errors import DBALError, ErrorCode, from_postgres

TENANT_A = "acme"
TENANT_B = "globex"

# The application role writes no table: workflows are created through the entry point.
_INSERT_WORKFLOW = """
SELECT w.id FROM dbal.api_insert($1, $2, 'admin', ARRAY[$3], ARRAY[NULL::text], ARRAY['[]'::jsonb],
                                 ARRAY['{}'::jsonb], ARRAY['{}'::jsonb], ARRAY['{}'::jsonb],
                                 ARRAY['[]'::jsonb], ARRAY[NULL::text], ARRAY[$4::boolean],
                                 ARRAY[$5::text], ARRAY[NULL::jsonb], 1) w
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
    enabled: bool = True,
) -> uuid.UUID:
    """Create a workflow in ``tenant`` through ``dbal.api_insert`` as ``user`` (made an admin for
    the creation; ``role`` is accepted for symmetry with the other helpers); lockable with the
    defaults.

    ``status`` 'valid' or 'invalid' gets a result stamped by the database (valid for
    ``dbal.validity_period()``); 'pending' gets none ('stale' cannot be inserted: use
    :func:`make_stale`). A shorter-lived result needs an operator: :func:`expire_result`.
    """
    del role
    name = name or f"wf-{uuid.uuid4().hex[:10]}"
    row_id = await conn.fetchval(_INSERT_WORKFLOW, tenant, user, name, enabled, status)
    assert isinstance(row_id, uuid.UUID)
    return row_id


async def expire_result(admin: Any, workflow: uuid.UUID) -> None:
    """As a superuser: make the workflow's validation result expire now (allowed: shorter)."""
    done = await admin.execute(
        "UPDATE dbal.workflows SET valid_until = now() - interval '1 millisecond' WHERE id = $1",
        workflow,
    )
    assert done == "UPDATE 1"


async def expire_leases(admin: Any, *workflows: uuid.UUID) -> None:
    """As a superuser: the live leases of ``workflows`` expire now (a clock seam for tests: the
    lease's end moves into the past instead of the test sleeping past it)."""
    # the time read first: Citus refuses volatile functions in an UPDATE of a distributed table
    now = await admin.fetchval("SELECT clock_timestamp()")
    done = await admin.execute(
        "UPDATE dbal.workflows SET lock_expires_at = $2::timestamptz - interval '1 millisecond',"
        " locked_at = least(locked_at, $2::timestamptz - interval '2 milliseconds')"
        " WHERE id = ANY($1::uuid[]) AND is_locked",
        list(workflows),
        now,
    )
    assert done == f"UPDATE {len(workflows)}", done


async def make_stale(conn: Any, workflow: uuid.UUID, tenant: str = TENANT_A) -> None:
    """Change the definition without a new validation result: the trigger marks it 'stale'."""
    changed = await conn.fetch(
        "SELECT 1 FROM dbal.api_update($1, 'u1', 'admin', $2, '{\"nodes\": [{\"id\": \"n1\"}]}',"
        " NULL, NULL, NULL, NULL)",
        tenant,
        workflow,
    )
    assert len(changed) == 1


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
