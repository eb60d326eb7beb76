"""Operations on a distributed install: isolate a large tenant to its own shard, move it to
another worker, and keep serving it (docs/scale-out.md).

Isolation splits the tenant's shard of every colocated table (CASCADE) into shards holding only
that tenant; a move copies that shard group to another worker. After each step the tenant's
data, history, audit, statistics and locks answer as before, every call of the tenant still
goes to exactly one worker (the one now holding it), and the new shards carry the row-level
security and triggers of the old ones.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from dbhelpers import create_workflow

from pydbal import queries as q

from .conftest import node_of, remote_nodes
from .test_routing import tenant_calls
from conftest import TestDatabase

pytestmark = pytest.mark.citus

BIG = "bigco"


async def _shard_of(admin: Any, tenant: str) -> int:
    return int(
        await admin.fetchval(
            "SELECT get_shard_id_for_distribution_column('dbal.workflows', $1::text)", tenant
        )
    )


async def _serves(db: TestDatabase, admin: Any, wfs: list[uuid.UUID], executions: int) -> None:
    """The tenant's calls answer as before, and each goes to the one worker holding it."""
    conn = await db.connect()
    home = await node_of(admin, BIG)
    page = await conn.fetch(q.LIST, BIG, "u1", "admin", None, "name", False, 0, 100, None, None)
    assert sorted(r["id"] for r in page) == sorted(wfs)
    stats = await conn.fetchrow(q.EXECUTION_STATS, BIG, "u1", "admin", wfs[0], None, None)
    assert stats["total"] == executions
    for name, call in tenant_calls(conn, BIG, wfs[0]).items():
        try:
            assert await remote_nodes(conn, call) == [home], name
        except Exception as exc:
            raise AssertionError(name) from exc
    # a write on the new shards: history and audit by the shard's triggers
    await conn.fetch(q.DELETE, BIG, "u1", "admin", wfs[-1])
    # (no WHERE around the call: a statement that is not the call alone is not delegated)
    audit = await conn.fetch(
        "SELECT * FROM dbal.api_audit($1, 'u1', 'admin', $2, 100)", BIG, wfs[-1]
    )
    assert [a["operation"] for a in audit if a["operation"] == "archive"] == ["archive"]


async def test_isolate_a_tenant_then_move_it_and_keep_serving(db: TestDatabase) -> None:
    admin = await db.connect(as_app=False)
    conn = await db.connect()
    wfs = [await create_workflow(conn, BIG, f"w{i}") for i in range(6)]
    neighbour = await create_workflow(conn, "smallco", "n")
    for wf in wfs:
        await conn.fetch(
            q.RECORD_EXECUTION,
            BIG,
            "u1",
            "admin",
            wf,
            "success",
            7.0,
            str(uuid.uuid4()),
            None,
            datetime.now(UTC),
            None,
        )
    before = await _shard_of(admin, BIG)
    rows_sql = (
        "SELECT (SELECT array_agg((id, created_at, updated_at, version) ORDER BY id)::text "
        "FROM dbal.workflows WHERE tenant_id = $1), "
        "(SELECT count(*) FROM dbal.audit_log WHERE tenant_id = $1), "
        "(SELECT count(*) FROM dbal.workflow_versions WHERE tenant_id = $1)"
    )
    rows_before = tuple(await admin.fetchrow(rows_sql, BIG))

    # 1. isolate: the tenant's rows of every colocated table get shards of their own
    await admin.execute(
        "SELECT isolate_tenant_to_new_shard('dbal.workflows', $1::text, 'CASCADE', "
        "shard_transfer_mode => 'block_writes')",
        BIG,
    )
    isolated = await _shard_of(admin, BIG)
    assert isolated != before
    # moving rows is not writing them: no trigger fired (timestamps, versions, audit unchanged)
    assert tuple(await admin.fetchrow(rows_sql, BIG)) == rows_before
    assert await admin.fetchval(
        "SELECT shard_minvalue = shard_maxvalue FROM ("
        "SELECT shardminvalue AS shard_minvalue, shardmaxvalue AS shard_maxvalue "
        "FROM pg_dist_shard WHERE shardid = $1) s",
        isolated,
    )
    flags = await admin.fetch(
        "SELECT result FROM run_command_on_shards('dbal.workflows', "
        "$$SELECT relforcerowsecurity FROM pg_class WHERE oid = '%s'::regclass$$)"
    )
    assert flags and {f["result"] for f in flags} == {"t"}
    await _serves(db, admin, [*wfs[:-1], wfs[-1]], executions=1)

    # 2. move the isolated shard group to the other worker
    source = await node_of(admin, BIG)
    target = int(
        await admin.fetchval(
            "SELECT nodeport FROM pg_dist_node WHERE noderole = 'primary' AND groupid <> 0 "
            "AND nodeport <> $1 ORDER BY nodeport LIMIT 1",
            source,
        )
    )
    # A move connects to the nodes as the tables' owner: it may log in for the move only
    # (docs/scale-out.md, "Moving and rebalancing").
    await admin.execute("ALTER ROLE pydbal_owner LOGIN")
    try:
        await admin.execute(
            "SELECT citus_move_shard_placement($1, '127.0.0.1', $2, '127.0.0.1', $3, "
            "shard_transfer_mode => 'block_writes')",
            isolated,
            source,
            target,
        )
    finally:
        await admin.execute("ALTER ROLE pydbal_owner NOLOGIN")
    assert await node_of(admin, BIG) == target
    home = await node_of(admin, BIG)
    conn2 = await db.connect()
    assert await remote_nodes(conn2, lambda: conn2.fetch(q.GET, BIG, "u1", "admin", wfs[0])) == [
        home
    ]
    page = await conn2.fetch(q.LIST, BIG, "u1", "admin", None, "name", False, 0, 100, None, None)
    assert sorted(r["id"] for r in page) == sorted(wfs[:-1])
    # the neighbour that shared the old shard is untouched and still served
    assert await conn2.fetch(q.GET, "smallco", "u1", "admin", neighbour)
