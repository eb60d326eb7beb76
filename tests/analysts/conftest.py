"""Fixtures of the analyst tests: seeded tenants and real analyst LOGIN roles.

- ``seeded``: three tenants (acme, globex, initech), each with two workflows, recorded executions
  (so roll-ups exist), audit rows and one live lock in acme; written through pydbal as a
  superuser DSN.
- ``make_analyst(*tenants)``: a new LOGIN role (dropped after the test) granted the analyst role
  and ``tenants`` through :func:`pydbal.cli.analysts.grant_analyst`; returns its DSN.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import pytest
from factories import valid_definition

import pydbal
from pydbal.cli.analysts import grant_analyst
from pydbal.server import dsn_with

from conftest import RUN_ID, TestDatabase

TENANTS = ("acme", "globex", "initech")
_numbers = itertools.count(1)


definition = valid_definition  # a valid two-node workflow (tests/factories.py)


@dataclass
class Seed:
    workflows: dict[str, list[str]] = field(default_factory=dict)  # tenant -> workflow ids


@pytest.fixture
async def seeded(db: TestDatabase) -> Seed:
    seed = Seed()
    async with pydbal.connect(db.dsn) as conn:
        for tenant in TENANTS:
            t = conn.tenant(tenant, user_id=f"{tenant}-admin", role="admin")
            ids = []
            for k in range(2):
                wf = await t.workflows.create(definition(f"{tenant}-wf-{k}"))
                ids.append(str(wf.id))
                for n, status in enumerate(("success", "success", "failure")):
                    await t.workflows.record_execution(
                        wf.id, status, 10.0 * (n + 1), execution_id=f"{tenant}-{k}-{n}"
                    )
            seed.workflows[tenant] = ids
        lock = await conn.tenant("acme", user_id="acme-admin", role="admin").workflows.acquire_lock(
            seed.workflows["acme"][0], timeout_ms=600_000
        )
        assert lock is not None
    return seed


@dataclass
class Analyst:
    login: str
    dsn: str


@pytest.fixture
async def make_analyst(
    db: TestDatabase,
) -> AsyncIterator[Callable[..., Awaitable[Analyst]]]:
    created: list[str] = []
    admin = await asyncpg.connect(db.dsn)

    async def make(*tenants: str) -> Analyst:
        login = f"pydbal_an_{RUN_ID}_{next(_numbers)}"
        await admin.execute(f"CREATE ROLE {login} LOGIN")
        created.append(login)
        if tenants:
            await grant_analyst(db.dsn, login, tenants, granted_by="test-operator")
        else:
            await admin.execute(f"GRANT pydbal_analyst TO {login}")
        return Analyst(login=login, dsn=dsn_with(db.dsn, user=login))

    try:
        yield make
    finally:
        for login in created:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", login
            )
            with contextlib.suppress(asyncpg.PostgresError):
                await admin.execute(f"DROP ROLE IF EXISTS {login}")
        await admin.close()
