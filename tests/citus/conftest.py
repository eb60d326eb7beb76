"""Helpers of the Citus tests: where a tenant lives, and which nodes a statement touched.

Every test here needs ``$PYDBAL_TEST_CITUS_DSN`` and skips without it (tests/conftest.py).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

_SERVER = re.compile(r"on server (?P<user>[^@]+)@(?P<host>[^:]+):(?P<port>\d+)")


async def node_of(admin: Any, tenant: str) -> int:
    """The port of the worker holding ``tenant``'s shard of dbal.workflows."""
    return int(
        await admin.fetchval(
            "SELECT nodeport FROM citus_shards WHERE shardid = "
            "get_shard_id_for_distribution_column('dbal.workflows', $1::text)",
            tenant,
        )
    )


async def tenants_on_two_workers(admin: Any, prefix: str = "t") -> tuple[str, str]:
    """Two tenant ids whose shards are on different workers."""
    first = f"{prefix}0"
    home = await node_of(admin, first)
    for i in range(1, 200):
        other = f"{prefix}{i}"
        if await node_of(admin, other) != home:
            return first, other
    raise AssertionError("every tenant hashed to one worker")


async def remote_nodes(conn: Any, call: Callable[[], Awaitable[Any]]) -> list[int]:
    """Ports of the nodes the coordinator sent commands to while ``call`` ran on ``conn``
    (from citus.log_remote_commands), one entry per command."""
    seen: list[int] = []

    def listener(_conn: Any, message: Any) -> None:
        text = f"{message.message} {getattr(message, 'detail', '') or ''}"
        for match in _SERVER.finditer(text):
            seen.append(int(match.group("port")))

    await conn.execute("SET citus.log_remote_commands = on")
    await conn.execute("SET client_min_messages = log")
    conn.add_log_listener(listener)
    try:
        await call()
    finally:
        conn.remove_log_listener(listener)
        await conn.execute("RESET client_min_messages")
        await conn.execute("RESET citus.log_remote_commands")
    return seen
