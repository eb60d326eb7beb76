"""Lease locks with fencing tokens (sql/40_locks.sql), exercised as the application login.

Expiry is simulated the honest way: acquire with a tiny timeout_ms and sleep past it; lock
columns are never written directly. The superuser connection only reads lock columns back and
runs the operator's sweeper.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from dbhelpers import (
    TENANT_A,
    TENANT_B,
    acquire,
    context,
    create_workflow,
    expect_code,
    expire_leases,
    expire_result,
    lock_row,
    make_stale,
    record,
    release,
    release_expired,
    renew,
    sqlstate,
    stats,
)

from pydbal.errors import ErrorCode

from conftest import CITUS_DSN, TestDatabase


async def _expired_lock(db: TestDatabase, conn: Any, workflow: uuid.UUID, **kwargs: Any) -> int:
    """A lock taken by ``kwargs``' user whose lease has expired (no sleeping: expire_leases)."""
    token = await acquire(conn, workflow, timeout_ms=60_000, **kwargs)
    assert token is not None
    await expire_leases(await db.connect(as_app=False), workflow)
    return token


async def test_fifty_concurrent_acquirers_get_exactly_one_token(db: TestDatabase) -> None:
    conn = await db.connect()
    workflow = await create_workflow(conn)
    connections = await asyncio.gather(*(asyncpg.connect(db.app_dsn) for _ in range(50)))
    # Through a Citus coordinator the first round also opens 50 connections to a worker, which
    # can outlast a 300 ms lease: then a later acquirer rightly takes the expired lease over.
    lease_ms = 3000 if CITUS_DSN else 300
    try:
        for round_, expected_token in ((0, 1), (1, 2)):
            results = await asyncio.gather(
                *(
                    acquire(c, workflow, timeout_ms=lease_ms, user=f"w{i}", role="user")
                    for i, c in enumerate(connections)
                )
            )
            winners = [(i, t) for i, t in enumerate(results) if t is not None]
            assert len(winners) == 1, (round_, winners)
            assert winners[0][1] == expected_token
            row = await lock_row(await db.connect(as_app=False), workflow)
            assert row["locked_by"] == f"w{winners[0][0]}"
            assert row["lock_token"] == expected_token
            # the lease expires: the next round takes it over
            await expire_leases(await db.connect(as_app=False), workflow)
    finally:
        await asyncio.gather(*(c.close() for c in connections))


async def test_lock_is_not_reentrant(db: TestDatabase) -> None:
    conn = await db.connect()
    workflow = await create_workflow(conn)
    assert await acquire(conn, workflow) == 1
    assert await acquire(conn, workflow) is None
    assert await acquire(conn, workflow, user="u2") is None
    row = await lock_row(await db.connect(as_app=False), workflow)
    assert (row["locked_by"], row["lock_token"]) == ("u1", 1)


async def test_lease_length_is_the_timeout_on_the_database_clock(db: TestDatabase) -> None:
    conn, admin = await db.connect(), await db.connect(as_app=False)
    workflow = await create_workflow(conn)
    await acquire(conn, workflow, timeout_ms=12_345)
    row = await admin.fetchrow(
        "SELECT lock_expires_at - locked_at AS lease FROM dbal.workflows WHERE id = $1", workflow
    )
    assert row["lease"] == timedelta(milliseconds=12_345)


@pytest.mark.parametrize("timeout_ms", [0, -1, 86_400_001])
async def test_timeout_out_of_range_is_a_validation_error(
    db: TestDatabase, timeout_ms: int
) -> None:
    conn = await db.connect()
    workflow = await create_workflow(conn)
    await expect_code(acquire(conn, workflow, timeout_ms=timeout_ms), ErrorCode.VALIDATION_ERROR)
    assert await acquire(conn, workflow) == 1  # nothing was taken


async def test_locking_needs_a_user_and_a_role(db: TestDatabase) -> None:
    conn = await db.connect()
    workflow = await create_workflow(conn)
    await expect_code(acquire(conn, workflow, user=None), ErrorCode.FORBIDDEN)
    await expect_code(acquire(conn, workflow, role=None), ErrorCode.FORBIDDEN)
    await expect_code(acquire(conn, workflow, role="root"), ErrorCode.FORBIDDEN)


async def test_takeover_after_expiry_fences_the_old_holder(db: TestDatabase) -> None:
    conn, admin = await db.connect(), await db.connect(as_app=False)
    workflow = await create_workflow(conn)
    old = await _expired_lock(db, conn, workflow, user="u1", role="user")
    new = await acquire(conn, workflow, user="u2", role="user")
    assert new is not None and new > old
    await expect_code(
        record(conn, workflow, token=old, user="u1", role="user"), ErrorCode.LOCK_NOT_OWNED
    )
    await expect_code(
        release(conn, workflow, old, user="u1", role="user"), ErrorCode.LOCK_NOT_OWNED
    )
    assert await renew(conn, workflow, old, user="u1", role="user") is False
    # the new holder is untouched and fully functional
    row = await lock_row(admin, workflow)
    assert (row["is_locked"], row["locked_by"], row["lock_token"]) == (True, "u2", new)
    assert await renew(conn, workflow, new, user="u2", role="user") is True
    assert (await record(conn, workflow, token=new, user="u2", role="user"))[1] == "recorded"
    assert await release(conn, workflow, new, user="u2", role="user") is True
    assert (
        await admin.fetchval("SELECT execution_count FROM dbal.workflows WHERE id = $1", workflow)
        == 1
    )


async def test_stale_token_of_an_admin_holder_cannot_release_the_new_lock(
    db: TestDatabase,
) -> None:
    conn, admin = await db.connect(), await db.connect(as_app=False)
    workflow = await create_workflow(conn)
    old = await _expired_lock(db, conn, workflow, user="worker1", role="admin")
    new = await acquire(conn, workflow, user="worker2", role="admin")
    assert new is not None and new > old
    await expect_code(
        release(conn, workflow, old, user="worker1", role="admin"), ErrorCode.LOCK_NOT_OWNED
    )
    row = await lock_row(admin, workflow)
    assert (row["is_locked"], row["locked_by"]) == (True, "worker2")


async def test_stale_token_of_an_admin_holder_cannot_record(db: TestDatabase) -> None:
    conn = await db.connect()
    workflow = await create_workflow(conn)
    old = await _expired_lock(db, conn, workflow, user="worker1", role="admin")
    assert await acquire(conn, workflow, user="worker2", role="admin") == old + 1
    await expect_code(
        record(conn, workflow, token=old, user="worker1", role="admin"), ErrorCode.LOCK_NOT_OWNED
    )


async def test_renew_while_held_and_after_loss(db: TestDatabase) -> None:
    conn, admin = await db.connect(), await db.connect(as_app=False)
    workflow = await create_workflow(conn)
    token = await acquire(conn, workflow, timeout_ms=1_000, user="u1", role="user")
    before = (await lock_row(admin, workflow))["lock_expires_at"]
    assert await renew(conn, workflow, token, timeout_ms=60_000, user="u1", role="user") is True
    after = (await lock_row(admin, workflow))["lock_expires_at"]
    assert after - before > timedelta(seconds=55)
    # the right token in the wrong hands, or a wrong token, renews nothing
    assert await renew(conn, workflow, token, user="u2", role="admin") is False
    assert await renew(conn, workflow, token + 1, user="u1", role="user") is False
    assert (await lock_row(admin, workflow))["lock_expires_at"] == after
    # expired, not taken over: lost all the same, and not resurrected
    await expire_leases(admin, workflow)
    assert await renew(conn, workflow, token, user="u1", role="user") is False
    await expect_code(
        record(conn, workflow, token=token, user="u1", role="user"), ErrorCode.LOCK_NOT_OWNED
    )


async def test_release_rules(db: TestDatabase) -> None:
    conn, admin = await db.connect(), await db.connect(as_app=False)
    workflow = await create_workflow(conn)
    token = await acquire(conn, workflow, user="alice", role="user")
    assert token == 1
    # a plain user who is not the holder: refused, with or without the holder's token
    await expect_code(release(conn, workflow, user="bob", role="user"), ErrorCode.LOCK_NOT_OWNED)
    await expect_code(
        release(conn, workflow, token, user="bob", role="user"), ErrorCode.LOCK_NOT_OWNED
    )
    # the holder with a wrong token: refused
    await expect_code(
        release(conn, workflow, token + 1, user="alice", role="user"), ErrorCode.LOCK_NOT_OWNED
    )
    assert (await lock_row(admin, workflow))["locked_by"] == "alice"
    # an admin without a token: released
    assert await release(conn, workflow, user="carol", role="admin") is True
    row = await lock_row(admin, workflow)
    assert (row["is_locked"], row["locked_by"], row["lock_token"]) == (False, None, 1)
    # nothing to release: false; a stale token on an unlocked workflow: refused
    assert await release(conn, workflow, user="carol", role="admin") is False
    assert await release(conn, workflow, 1, user="alice", role="user") is False
    assert await acquire(conn, workflow, user="alice", role="user") == 2  # tokens never reused
    assert await release(conn, workflow, 2, user="alice", role="user") is True
    await expect_code(
        release(conn, workflow, 1, user="alice", role="user"), ErrorCode.LOCK_NOT_OWNED
    )


async def test_plain_user_cannot_release_without_its_token(db: TestDatabase) -> None:
    conn, admin = await db.connect(), await db.connect(as_app=False)
    workflow = await create_workflow(conn)
    # two workers of the same user: the first one's lease expired and the second took over
    await _expired_lock(db, conn, workflow, user="alice", role="user")
    assert await acquire(conn, workflow, user="alice", role="user") == 2
    await expect_code(release(conn, workflow, user="alice", role="user"), ErrorCode.LOCK_NOT_OWNED)
    assert (await lock_row(admin, workflow))["is_locked"] is True


async def test_holder_may_release_after_expiry_when_nobody_took_over(db: TestDatabase) -> None:
    conn, admin = await db.connect(), await db.connect(as_app=False)
    workflow = await create_workflow(conn)
    token = await _expired_lock(db, conn, workflow, user="alice", role="user")
    assert await release(conn, workflow, token, user="alice", role="user") is True
    assert (await lock_row(admin, workflow))["is_locked"] is False


@pytest.mark.parametrize("role", ["god", "supergod"])
async def test_higher_roles_release_without_token(db: TestDatabase, role: str) -> None:
    conn = await db.connect()
    workflow = await create_workflow(conn)
    await acquire(conn, workflow, user="alice", role="user")
    assert await release(conn, workflow, user="boss", role=role) is True


async def test_disabled_workflow_cannot_be_locked(db: TestDatabase) -> None:
    conn = await db.connect()
    workflow = await create_workflow(conn, enabled=False)
    await expect_code(acquire(conn, workflow), ErrorCode.WORKFLOW_DISABLED)


@pytest.mark.parametrize(
    "setup", ["pending", "invalid", "stale", "expired_result", "old_validator"]
)
async def test_workflow_without_current_valid_result_cannot_be_locked(
    db: TestDatabase, setup: str
) -> None:
    conn, admin = await db.connect(), await db.connect(as_app=False)
    if setup in ("pending", "invalid"):
        workflow = await create_workflow(conn, status=setup)
    elif setup == "stale":
        workflow = await create_workflow(conn)
        await make_stale(conn, workflow)
    elif setup == "expired_result":
        workflow = await create_workflow(conn)
        await expire_result(admin, workflow)
    else:  # a result of an older validator (as after an upgrade): reads as stale
        workflow = await create_workflow(conn)
        await admin.execute(
            "UPDATE dbal.workflows SET validator_version = 0 WHERE id = $1", workflow
        )
    error = await expect_code(acquire(conn, workflow), ErrorCode.VALIDATION_STATUS_INVALID)
    assert error.details["id"] == str(workflow)
    assert (await lock_row(admin, workflow))["lock_token"] == 0


@pytest.mark.parametrize("version", [2, 99])
async def test_a_result_of_an_unknown_validator_cannot_be_stored(
    db: TestDatabase, version: int
) -> None:
    """A future validator version: refused by the database, even for a superuser."""
    conn, admin = await db.connect(), await db.connect(as_app=False)
    workflow = await create_workflow(conn)
    assert (
        await sqlstate(
            admin.execute(
                "UPDATE dbal.workflows SET validator_version = $2 WHERE id = $1", workflow, version
            )
        )
        == "23514"
    )
    stored = await sqlstate(
        conn.fetchval(
            "SELECT dbal.store_validation('acme', 'u1', 'admin', $1, 1, 'valid', NULL, $2)",
            workflow,
            version,
        )
    )
    assert stored == "23514"
    assert (
        await admin.fetchval("SELECT validator_version FROM dbal.workflows WHERE id = $1", workflow)
        == 1
    )


async def test_recording_while_another_user_holds_the_lock(db: TestDatabase) -> None:
    conn = await db.connect()
    workflow = await create_workflow(conn)
    token = await acquire(conn, workflow, user="alice", role="user")
    await expect_code(record(conn, workflow, user="bob", role="admin"), ErrorCode.WORKFLOW_LOCKED)
    # someone else's token does not help
    await expect_code(
        record(conn, workflow, token=token, user="bob", role="admin"), ErrorCode.LOCK_NOT_OWNED
    )
    # the holder records, with or without its token
    assert (await record(conn, workflow, token=token, user="alice", role="user"))[1] == "recorded"
    assert (await record(conn, workflow, user="alice", role="user"))[1] == "recorded"
    assert await release(conn, workflow, token, user="alice", role="user") is True
    assert (await record(conn, workflow, user="bob", role="admin"))[1] == "recorded"
    async with context(conn, TENANT_A):
        assert (
            await conn.fetchval(
                "SELECT execution_count FROM dbal.workflows WHERE id = $1", workflow
            )
            == 3
        )
    assert (await stats(conn, workflow))["total"] == 3


async def test_release_expired_locks_clears_only_expired_locks_of_its_tenant(
    db: TestDatabase,
) -> None:
    conn, admin = await db.connect(), await db.connect(as_app=False)
    a_expired = await create_workflow(conn, TENANT_A)
    a_live = await create_workflow(conn, TENANT_A)
    b_expired = await create_workflow(conn, TENANT_B)
    await acquire(conn, a_expired, timeout_ms=60_000)
    await acquire(conn, b_expired, timeout_ms=60_000, tenant=TENANT_B)
    await acquire(conn, a_live, timeout_ms=60_000)
    await expire_leases(admin, a_expired, b_expired)

    assert await release_expired(conn, tenant=TENANT_A) == 1
    assert (await lock_row(admin, a_expired))["is_locked"] is False
    assert (await lock_row(admin, a_live))["is_locked"] is True
    assert (await lock_row(admin, b_expired))["is_locked"] is True  # other tenant: untouched
    assert await release_expired(conn, tenant=TENANT_A) == 0

    # the operator's sweeper, as superuser, crosses tenants (and spares live locks)
    assert await admin.fetchval("SELECT dbal.sweep_expired_locks()") == 1
    assert (await lock_row(admin, b_expired))["is_locked"] is False
    assert (await lock_row(admin, a_live))["is_locked"] is True
    assert await admin.fetchval("SELECT dbal.sweep_expired_locks()") == 0

    expired = await admin.fetch(
        "SELECT tenant_id, workflow_id, details FROM dbal.audit_log"
        " WHERE operation = 'lock_expired' ORDER BY tenant_id"
    )
    assert [(r["tenant_id"], r["workflow_id"]) for r in expired] == [
        (TENANT_A, a_expired),
        (TENANT_B, b_expired),
    ]
    # tokens survive clearing: the next holder is fenced above the old one
    assert await acquire(conn, a_expired) == 2


async def test_lock_operations_are_audited(db: TestDatabase) -> None:
    conn = await db.connect()
    workflow = await create_workflow(conn)
    first = await _expired_lock(db, conn, workflow, user="alice", role="user")
    second = await acquire(conn, workflow, user="bob", role="admin")  # takes over
    await release(conn, workflow, second, user="bob", role="admin")
    async with context(conn, TENANT_A):
        rows = await conn.fetch(
            "SELECT operation, user_id, user_role, details FROM dbal.audit_log"
            " WHERE workflow_id = $1 AND operation LIKE 'lock%' ORDER BY id",
            workflow,
        )
    ops = [(r["operation"], r["user_id"], r["user_role"]) for r in rows]
    assert ops == [
        ("lock_acquire", "alice", "user"),
        ("lock_expired", "bob", "admin"),
        ("lock_acquire", "bob", "admin"),
        ("lock_release", "bob", "admin"),
    ]
    details = [json.loads(r["details"]) for r in rows]
    assert details[0]["token"] == first
    assert details[1]["holder"] == "alice" and details[1]["token"] == first
    assert details[2]["token"] == second
    assert details[3] == {"token": second, "holder": "bob"}
