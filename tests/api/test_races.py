"""Concurrent writers of the same names, each on its own connection (a pool of 16): every call
succeeds, names stay distinct, an upsert leaves one row. Each scenario repeats a few rounds so
that a race that loses one time in three shows up in a single run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import pydbal
from pydbal import Tenant

from .conftest import TENANT_A, count_rows, valid_definition

WRITERS = 12
ROUNDS = 3


@pytest.fixture
async def wide(db: Any) -> AsyncIterator[pydbal.Database]:
    async with pydbal.connect(db.app_dsn, min_size=WRITERS, max_size=WRITERS) as database:
        yield database


@pytest.fixture
def scopes(wide: pydbal.Database) -> list[Tenant]:
    return [wide.tenant(TENANT_A, user_id=f"u{i}", role="admin") for i in range(WRITERS)]


async def test_concurrent_clones_get_distinct_names(scopes: list[Tenant], raw: Any) -> None:
    for r in range(ROUNDS):
        src = await scopes[0].workflows.create(valid_definition(f"popular {r}"))
        clones = await asyncio.gather(*(s.workflows.clone(src.id) for s in scopes))
        names = {c.name for c in clones}
        assert len(names) == WRITERS
        assert f"popular {r} (Clone)" in names
    assert await count_rows(raw, TENANT_A) == ROUNDS * (WRITERS + 1)


async def test_concurrent_imports_get_distinct_names(scopes: list[Tenant], raw: Any) -> None:
    for r in range(ROUNDS):
        made = await asyncio.gather(
            *(s.workflows.import_workflow(valid_definition(f"shared {r}")) for s in scopes)
        )
        assert len({w.name for w in made}) == WRITERS
    assert await count_rows(raw, TENANT_A) == ROUNDS * WRITERS


async def test_concurrent_import_many_in_any_order(scopes: list[Tenant], raw: Any) -> None:
    for r in range(ROUNDS):
        a, b = valid_definition(f"pair a {r}"), valid_definition(f"pair b {r}")
        batches = await asyncio.gather(
            *(s.workflows.import_many([a, b] if i % 2 else [b, a]) for i, s in enumerate(scopes))
        )
        names = [w.name for batch in batches for w in batch]
        assert len(set(names)) == 2 * WRITERS
    assert await count_rows(raw, TENANT_A) == ROUNDS * 2 * WRITERS


async def test_concurrent_upserts_leave_one_row(scopes: list[Tenant], raw: Any) -> None:
    for r in range(ROUNDS):
        name = f"singleton {r}"
        results = await asyncio.gather(
            *(
                s.workflows.upsert(
                    name,
                    valid_definition(name, description="created"),
                    {"description": f"by {i}", "nodes": valid_definition(name)["nodes"]},
                )
                for i, s in enumerate(scopes)
            )
        )
        assert len({w.id for w in results}) == 1
        stored = await raw.fetchrow(
            "SELECT count(*) AS n, max(version) AS v FROM dbal.workflows"
            " WHERE tenant_id = $1 AND name = $2",
            TENANT_A,
            name,
        )
        assert stored["n"] == 1
        assert stored["v"] == WRITERS  # created once, updated by every other writer
