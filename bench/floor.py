"""The floor: hand-written asyncpg on the same tables, as a superuser (no RLS), no validation, no
cache. Sequential operations use one direct connection; concurrent ones a pool whose reset is a
no-op (no reset round trip). jsonb is decoded with orjson, so callers get the same Python data
pydbal returns."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

COLUMNS = (
    "id, tenant_id, name, description, nodes, edges, enabled, version, execution_count, "
    "last_executed_at, last_execution_status, average_execution_time, created_at, updated_at, "
    "created_by, updated_by, variables, config, tags, category, validation_status, "
    "validation_errors, validated_at, valid_until, validator_version, is_locked, locked_by, "
    "locked_at, lock_expires_at"
)

GET = f"SELECT {COLUMNS} FROM dbal.workflows WHERE tenant_id = $1 AND id = $2"
LIST = (
    f"SELECT count(*) OVER () AS total, {COLUMNS} FROM dbal.workflows "
    "WHERE tenant_id = $1 AND enabled ORDER BY updated_at DESC, id DESC LIMIT 20"
)
SEARCH = (
    f"SELECT ts_rank(search_document, q) AS rank, {COLUMNS} "
    "FROM dbal.workflows, websearch_to_tsquery('english', $2) q "
    "WHERE tenant_id = $1 AND search_document @@ q ORDER BY 1 DESC, name, id LIMIT 10"
)
INSERT_ONE = (
    "INSERT INTO dbal.workflows (tenant_id, id, name, description, nodes, edges, variables, "
    "config, tags, category, enabled, created_by) "
    f"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING {COLUMNS}"
)
INSERT_MANY = (
    "INSERT INTO dbal.workflows (tenant_id, id, name, description, nodes, edges, variables, "
    "config, tags, category, enabled, created_by) "
    "SELECT $1, r.id, r.name, r.description, r.nodes, r.edges, r.variables, r.config, "
    "ARRAY(SELECT jsonb_array_elements_text(r.tags)), r.category, r.enabled, $2 "
    "FROM unnest($3::uuid[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[], $8::jsonb[], "
    "$9::jsonb[], $10::jsonb[], $11::text[], $12::boolean[]) "
    "AS r(id, name, description, nodes, edges, variables, config, tags, category, enabled)"
)
UPDATE = (
    "UPDATE dbal.workflows SET description = $3, updated_by = $4, version = version + 1 "
    f"WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
)
ACQUIRE = (
    "UPDATE dbal.workflows SET is_locked = true, locked_by = $3, locked_at = clock_timestamp(), "
    "lock_expires_at = clock_timestamp() + interval '30 seconds', lock_token = lock_token + 1 "
    "WHERE tenant_id = $1 AND id = $2 AND enabled "
    "AND NOT (is_locked AND lock_expires_at > clock_timestamp()) "
    "RETURNING lock_token, lock_expires_at"
)
RELEASE = (
    "UPDATE dbal.workflows SET is_locked = false, locked_by = NULL, locked_at = NULL, "
    "lock_expires_at = NULL WHERE tenant_id = $1 AND id = $2 AND lock_token = $3 AND is_locked"
)
# one statement: the execution row and the workflow's counters
RECORD = """
WITH e AS (
    INSERT INTO dbal.workflow_executions (tenant_id, workflow_id, execution_id, status,
        duration_ms, started_at, finished_at, executed_by)
    VALUES ($1::text, $2::uuid, $3::text, $4::text, $5::float8,
            clock_timestamp() - make_interval(secs => $5::float8 / 1000.0),
            clock_timestamp(), $6::text)
    RETURNING started_at)
UPDATE dbal.workflows w SET
    execution_count = w.execution_count + 1,
    finished_execution_count = w.finished_execution_count + 1,
    average_execution_time = coalesce(w.average_execution_time, 0)
        + ($5 - coalesce(w.average_execution_time, 0)) / (w.finished_execution_count + 1),
    last_executed_at = greatest(w.last_executed_at, e.started_at),
    last_execution_status = $4
  FROM e WHERE w.tenant_id = $1 AND w.id = $2
"""
# the recorder's floor: a batch of executions in one statement (keys, rows, hourly and daily
# roll-ups without histograms, execution_count), $1 tenant, $2..$5 workflow/status/ms/id arrays
FLOOR_BATCH = """
WITH items AS (
    SELECT $1::text AS tenant_id, w AS workflow_id, s AS status, d AS duration_ms,
           e AS execution_id,
           now() - make_interval(secs => d / 1000.0) AS started_at
      FROM unnest($2::uuid[], $3::text[], $4::float8[], $5::text[]) AS u(w, s, d, e)
), keys AS (
    INSERT INTO dbal.execution_keys (tenant_id, execution_id, workflow_id, started_at, status)
    SELECT tenant_id, execution_id, workflow_id, started_at, status FROM items
    ON CONFLICT DO NOTHING RETURNING execution_id
), rows AS (
    INSERT INTO dbal.workflow_executions (tenant_id, workflow_id, execution_id, status,
        duration_ms, started_at, finished_at, executed_by)
    SELECT i.tenant_id, i.workflow_id, i.execution_id, i.status, i.duration_ms, i.started_at,
           i.started_at + make_interval(secs => i.duration_ms / 1000.0), 'bench'
      FROM items i JOIN keys k USING (execution_id)
    RETURNING workflow_id, started_at, duration_ms, status
), g AS (
    SELECT workflow_id, date_trunc('hour', started_at, 'UTC') AS hour,
           date_trunc('day', started_at, 'UTC') AS day,
           count(*) FILTER (WHERE status = 'success') AS success, count(*) AS n,
           sum(duration_ms) AS sum_ms, min(duration_ms) AS min_ms, max(duration_ms) AS max_ms
      FROM rows GROUP BY 1, 2, 3
), h AS (
    INSERT INTO dbal.workflow_stats_hourly AS s (tenant_id, workflow_id, hour, success, finished,
        sum_ms, min_ms, max_ms)
    SELECT $1, workflow_id, hour, success, n, sum_ms, min_ms, max_ms FROM g
    ON CONFLICT (tenant_id, workflow_id, hour) DO UPDATE SET
        success = s.success + excluded.success, finished = s.finished + excluded.finished,
        sum_ms = s.sum_ms + excluded.sum_ms, min_ms = least(s.min_ms, excluded.min_ms),
        max_ms = greatest(s.max_ms, excluded.max_ms)
    RETURNING 1
), dd AS (
    INSERT INTO dbal.workflow_stats_daily AS s (tenant_id, workflow_id, day, success, finished,
        sum_ms, min_ms, max_ms)
    SELECT $1, workflow_id, day, sum(success), sum(n), sum(sum_ms), min(min_ms), max(max_ms)
      FROM g GROUP BY workflow_id, day
    ON CONFLICT (tenant_id, workflow_id, day) DO UPDATE SET
        success = s.success + excluded.success, finished = s.finished + excluded.finished,
        sum_ms = s.sum_ms + excluded.sum_ms, min_ms = least(s.min_ms, excluded.min_ms),
        max_ms = greatest(s.max_ms, excluded.max_ms)
    RETURNING 1
)
UPDATE dbal.workflows w SET execution_count = w.execution_count + c.n
  FROM (SELECT workflow_id, sum(n) AS n FROM g GROUP BY 1) c
 WHERE w.tenant_id = $1 AND w.id = c.workflow_id
"""

STATS = """
SELECT count(*) AS total,
       count(*) FILTER (WHERE status = 'success') AS success,
       count(*) FILTER (WHERE status = 'failure') AS failure,
       count(*) FILTER (WHERE status = 'pending') AS pending,
       count(*) FILTER (WHERE status = 'timeout') AS timeout,
       avg(duration_ms) FILTER (WHERE status <> 'pending') AS average_ms,
       min(duration_ms) FILTER (WHERE status <> 'pending') AS min_ms,
       max(duration_ms) FILTER (WHERE status <> 'pending') AS max_ms,
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY duration_ms)
           FILTER (WHERE status <> 'pending' AND duration_ms IS NOT NULL) AS pct,
       max(started_at) AS last_executed_at
  FROM dbal.workflow_executions
 WHERE tenant_id = $1 AND workflow_id = $2 AND started_at >= $3 AND started_at < $4
"""
EXPORT = (
    "SELECT name, description, nodes, edges, variables, config, tags, category, enabled "
    "FROM dbal.workflows WHERE tenant_id = $1 ORDER BY name LIMIT $2"
)


async def _init(conn: asyncpg.Connection) -> None:
    for name in ("jsonb", "json"):
        await conn.set_type_codec(
            name,
            encoder=lambda v: v if isinstance(v, str) else orjson.dumps(v).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


async def _no_reset(conn: asyncpg.Connection) -> None:
    return None


def _j(v: Any) -> str:
    return orjson.dumps(v).decode()


class Floor:
    name = "floor"

    def __init__(self, dsn: str, user: str = "u-0") -> None:
        self.dsn = dsn
        self.user = user
        self.conn: asyncpg.Connection
        self.pool: asyncpg.Pool

    async def start(self, pool_size: int) -> None:
        self.conn = await asyncpg.connect(self.dsn)
        await _init(self.conn)
        self.pool = await asyncpg.create_pool(
            self.dsn, min_size=pool_size, max_size=pool_size, init=_init, reset=_no_reset
        )

    async def close(self) -> None:
        await self.conn.close()
        await self.pool.close()

    async def get(self, tenant: str, wid: uuid.UUID) -> dict[str, Any] | None:
        row = await self.conn.fetchrow(GET, tenant, wid)
        return dict(row) if row is not None else None

    async def list(self, tenant: str) -> tuple[int, list[dict[str, Any]]]:
        rows = await self.conn.fetch(LIST, tenant)
        return (rows[0]["total"] if rows else 0), [dict(r) for r in rows]

    async def search(self, tenant: str, text: str) -> list[dict[str, Any]]:
        return [dict(r) for r in await self.conn.fetch(SEARCH, tenant, text)]

    async def create(self, tenant: str, inp: dict[str, Any]) -> dict[str, Any]:
        row = await self.conn.fetchrow(
            INSERT_ONE,
            tenant,
            uuid.uuid4(),
            inp["name"],
            inp["description"],
            _j(inp["nodes"]),
            _j(inp["edges"]),
            _j(inp["variables"]),
            _j(inp["config"]),
            inp["tags"],
            inp["category"],
            inp["enabled"],
            self.user,
        )
        return dict(row)

    async def create_many(self, tenant: str, inputs: list[dict[str, Any]]) -> int:
        args = (
            tenant,
            self.user,
            [uuid.uuid4() for _ in inputs],
            [i["name"] for i in inputs],
            [i["description"] for i in inputs],
            [_j(i["nodes"]) for i in inputs],
            [_j(i["edges"]) for i in inputs],
            [_j(i["variables"]) for i in inputs],
            [_j(i["config"]) for i in inputs],
            [_j(i["tags"]) for i in inputs],
            [i["category"] for i in inputs],
            [i["enabled"] for i in inputs],
        )
        status = await self.conn.execute(INSERT_MANY, *args)
        return int(status.split()[-1])

    async def update(self, tenant: str, wid: uuid.UUID, description: str) -> dict[str, Any]:
        return dict(await self.conn.fetchrow(UPDATE, tenant, wid, description, self.user))

    async def lock_cycle(self, tenant: str, wid: uuid.UUID) -> bool:
        row = await self.conn.fetchrow(ACQUIRE, tenant, wid, self.user)
        if row is None:
            return False
        await self.conn.execute(RELEASE, tenant, wid, row["lock_token"])
        return True

    async def record(self, tenant: str, wid: uuid.UUID, ms: float, conn: Any = None) -> None:
        c = conn if conn is not None else self.conn
        await c.execute(RECORD, tenant, wid, str(uuid.uuid4()), "success", ms, self.user)

    async def record_pooled(self, tenant: str, wid: uuid.UUID, ms: float) -> None:
        async with self.pool.acquire() as conn:
            await self.record(tenant, wid, ms, conn)

    async def record_batches(
        self, tenant: str, items: list[tuple[uuid.UUID, float]], batch: int, writers: int = 2
    ) -> None:
        """The items as FLOOR_BATCH statements of ``batch`` items over ``writers`` pooled
        connections, each over its own workflows (like the recorder's lanes: writers updating
        the same workflows' counters in no particular order would deadlock)."""
        lanes = [[it for it in items if it[0].int % writers == j] for j in range(writers)]

        async def writer(lane: list[tuple[uuid.UUID, float]]) -> None:
            async with self.pool.acquire() as conn:
                for i in range(0, len(lane), batch):
                    chunk = lane[i : i + batch]
                    await conn.execute(
                        FLOOR_BATCH,
                        tenant,
                        [c[0] for c in chunk],
                        ["success"] * len(chunk),
                        [c[1] for c in chunk],
                        [str(uuid.uuid4()) for _ in chunk],
                    )

        await asyncio.gather(*(writer(lane) for lane in lanes))

    async def stats(
        self, tenant: str, wid: uuid.UUID, start: datetime, end: datetime
    ) -> dict[str, Any]:
        return dict(await self.conn.fetchrow(STATS, tenant, wid, start, end))

    async def export(self, tenant: str, limit: int) -> bytes:
        rows = await self.conn.fetch(EXPORT, tenant, limit)
        now = datetime.now(UTC).isoformat()
        return orjson.dumps(
            [
                {
                    "format": "pydbal.workflow/v1",
                    "exportedAt": now,
                    "workflow": dict(r),
                    "validationReport": None,
                }
                for r in rows
            ]
        )

    async def import_(self, tenant: str, data: bytes) -> int:
        bundles = orjson.loads(data)
        return await self.create_many(tenant, [b["workflow"] for b in bundles])
