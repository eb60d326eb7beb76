"""Issue 10: each rule has one home in SQL; the Python constants that mirror it match the catalog.

Categories, validation and execution statuses (CHECK constraints), roles and admin roles
(dbal.ctx_role(), dbal.ctx_is_admin()), sort fields (dbal.api_list), the validity period and the
validator version: read from the database and compared with pydbal.models / pydbal.validation.
"""

from __future__ import annotations

import re
from typing import Any

from pydbal import VALIDATOR_VERSION
from pydbal.models import (
    ADMIN_ROLES,
    CATEGORIES,
    EXECUTION_STATUSES,
    ROLES,
    SORT_FIELDS,
    VALIDATION_STATUSES,
    VALIDITY_PERIOD,
)

from conftest import TestDatabase


async def _check_values(conn: Any, constraint: str) -> set[str]:
    definition = await conn.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = $1", constraint
    )
    assert definition, constraint
    return set(re.findall(r"'([a-z_]+)'::text", definition))


async def test_enumerations_match_the_check_constraints(db: TestDatabase) -> None:
    conn = await db.connect(as_app=False)
    assert await _check_values(conn, "workflows_category_known") == set(CATEGORIES)
    assert await _check_values(conn, "workflows_validation_status_known") == set(
        VALIDATION_STATUSES
    )
    assert await _check_values(conn, "workflow_executions_status_known") == set(
        EXECUTION_STATUSES
    )


async def test_roles_match_the_context_functions(db: TestDatabase) -> None:
    conn = await db.connect(as_app=False)
    for role in (*ROLES, "Admin", "root", "owner"):
        async with conn.transaction():
            await conn.execute("SELECT set_config('dbal.user_role', $1, true)", role)
            known = await conn.fetchval("SELECT dbal.ctx_role()")
            admin = await conn.fetchval("SELECT dbal.ctx_is_admin()")
        assert (known == role) == (role in ROLES), role
        assert admin == (role in ADMIN_ROLES), role


async def test_sort_fields_validity_and_validator_version(db: TestDatabase) -> None:
    conn = await db.connect()
    for field in (*SORT_FIELDS, "tenant_id"):
        try:
            await conn.fetch(
                "SELECT 1 FROM dbal.api_list('acme', 'u', 'admin', NULL, $1, false, 0, 1)", field
            )
            accepted = True
        except Exception as exc:  # asyncpg raises D0422 for an unknown sort field
            assert getattr(exc, "sqlstate", None) == "D0422", exc
            accepted = False
        assert accepted == (field in SORT_FIELDS), field
    assert await conn.fetchval("SELECT dbal.validity_period()") == VALIDITY_PERIOD
    assert await conn.fetchval("SELECT dbal.current_validator_version()") == VALIDATOR_VERSION
