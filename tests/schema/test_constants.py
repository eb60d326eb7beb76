"""Issue 10: each rule has one home in SQL; the Python constants that mirror it match the catalog.

Categories, validation and execution statuses (CHECK constraints), roles and admin roles
(dbal.roles(), dbal.admin_roles(), and what dbal.ctx_role(), dbal.ctx_is_admin() and dbal.enter()
make of them), sort fields (dbal.api_list), the validity period and the validator version: read
from the database and compared with pydbal.models / pydbal.validation.
"""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import pytest

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


async def test_role_lists_match_the_mirrors(db: TestDatabase) -> None:
    conn = await db.connect()
    assert tuple(await conn.fetchval("SELECT dbal.roles()")) == ROLES
    assert set(await conn.fetchval("SELECT dbal.admin_roles()")) == ADMIN_ROLES
    assert set(ROLES) > ADMIN_ROLES


async def test_enter_and_enter_app_accept_exactly_the_roles(db: TestDatabase) -> None:
    conn = await db.connect()
    for function in ("dbal.enter", "dbal.enter_app"):
        for role in (*ROLES, "Admin", "root"):
            try:
                async with conn.transaction():
                    await conn.fetchval(f"SELECT {function}('acme', 'u', $1)", role)
                accepted = True
            except Exception as exc:  # asyncpg raises D0403 for an unknown role
                assert getattr(exc, "sqlstate", None) == "D0403", exc
                accepted = False
            assert accepted == (role in ROLES), (function, role)


async def test_enter_and_enter_app_answer_alike(db: TestDatabase) -> None:
    """The same arguments get the same error from both entry-context functions."""
    conn = await db.connect()
    cases = [("", "u", "user"), ("acme", "u", "root"), ("acme", "u", "admin")]
    for args in cases:
        codes = []
        for function in ("dbal.enter", "dbal.enter_app"):
            try:
                async with conn.transaction():
                    await conn.fetchval(f"SELECT {function}($1, $2, $3)", *args)
                codes.append(None)
            except Exception as exc:
                codes.append(getattr(exc, "sqlstate", None))
        assert codes[0] == codes[1], (args, codes)
    async with conn.transaction():
        await conn.execute("SELECT dbal.enter('acme', 'u', 'user')")
        for function in ("dbal.enter", "dbal.enter_app"):
            with pytest.raises(asyncpg.PostgresError) as info:
                async with conn.transaction():  # a savepoint
                    await conn.fetchval(f"SELECT {function}('other', 'u', 'user')")
            assert info.value.sqlstate == "D4034", function


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
