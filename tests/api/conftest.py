"""Fixtures and helpers for the public-API tests.

- ``app`` : ``pydbal.connect(db.app_dsn)`` (logs in as a member of the app role only).
- ``su``  : ``pydbal.connect(db.dsn)`` (superuser login: pydbal switches to the app role itself).
- ``acme`` / ``globex``: admin scopes of the two tenants on ``app``.
- ``raw`` : a superuser asyncpg connection for reading what is really stored.

Builders return valid (or deliberately invalid) definitions in the n8n connection shape.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from factories import (  # noqa: F401  (re-exported for the API tests)
    cyclic_definition,
    valid_definition,
    valid_edges,
    valid_nodes,
)

import pydbal
from pydbal import DBALError, ErrorCode, Tenant

TENANT_A = "acme"
TENANT_B = "globex"
ROLES = ("user", "admin", "god", "supergod")


# --- builders ----------------------------------------------------------------------------------


# valid_nodes, valid_edges, valid_definition, cyclic_definition: tests/factories.py


# --- expectations ------------------------------------------------------------------------------


@contextlib.contextmanager
def raises_code(code: ErrorCode) -> Iterator[pytest.ExceptionInfo[DBALError]]:
    with pytest.raises(DBALError) as info:
        yield info
    assert info.value.code == code, repr(info.value)
    assert int(info.value.code) == int(code)


# --- superuser reads ---------------------------------------------------------------------------


async def row(raw: Any, workflow_id: Any) -> dict[str, Any] | None:
    rec = await raw.fetchrow(
        "SELECT * FROM dbal.workflows WHERE id = $1", uuid.UUID(str(workflow_id))
    )
    return dict(rec) if rec is not None else None


async def tenant_rows(raw: Any, tenant: str) -> list[dict[str, Any]]:
    recs = await raw.fetch("SELECT * FROM dbal.workflows WHERE tenant_id = $1 ORDER BY id", tenant)
    return [dict(r) for r in recs]


async def count_rows(raw: Any, tenant: str | None = None) -> int:
    if tenant is None:
        return int(await raw.fetchval("SELECT count(*) FROM dbal.workflows"))
    return int(
        await raw.fetchval("SELECT count(*) FROM dbal.workflows WHERE tenant_id = $1", tenant)
    )


async def snapshot(raw: Any) -> dict[str, Any]:
    """Everything a write could change: workflows, versions, executions (not the audit trail)."""
    return {
        "workflows": [
            dict(r) for r in await raw.fetch("SELECT * FROM dbal.workflows ORDER BY tenant_id, id")
        ],
        "versions": [
            dict(r)
            for r in await raw.fetch(
                "SELECT * FROM dbal.workflow_versions ORDER BY tenant_id, workflow_id, version"
            )
        ],
        "executions": [
            dict(r)
            for r in await raw.fetch(
                "SELECT * FROM dbal.workflow_executions ORDER BY tenant_id, execution_id"
            )
        ],
    }


# --- fixtures ----------------------------------------------------------------------------------


# Tests of lock expiry take leases of a few milliseconds: below connect()'s default shortest
# lease (1 s), within the database's (1 ms). tests/api/test_input_findings.py checks the default.
SHORT_LEASES = {"lease_min_ms": 1}


@pytest.fixture
async def app(db: Any) -> AsyncIterator[pydbal.Database]:
    async with pydbal.connect(db.app_dsn, max_size=4, limits=SHORT_LEASES) as database:
        yield database


@pytest.fixture
async def su(db: Any) -> AsyncIterator[pydbal.Database]:
    async with pydbal.connect(db.dsn, max_size=4, limits=SHORT_LEASES) as database:
        yield database


@pytest.fixture
async def raw(db: Any) -> Any:
    return await db.connect(as_app=False)


@pytest.fixture
def acme(app: pydbal.Database) -> Tenant:
    return app.tenant(TENANT_A, user_id="alice", role="admin")


@pytest.fixture
def globex(app: pydbal.Database) -> Tenant:
    return app.tenant(TENANT_B, user_id="gina", role="admin")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than 10 s (embedded server, subprocess)")
