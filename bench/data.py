"""Deterministic benchmark data: tenants, workflows drawn from the shared corpus, executions.

Workflows reuse the nodes and connections of the real files in ``../shared/corpus`` (parsed with
pydbal's own import parser), renamed per copy so names stay unique within a tenant. Everything is
drawn from ``random.Random(seed)``, so two runs with one seed load the same data.

Bulk loading (superuser only, stated in the report):

* workflows are written with ``COPY`` under ``session_replication_role = replica`` — the table's
  triggers (version/timestamps, audit trail) and foreign-key triggers do not fire, so the loader
  sets what they would (version 1, timestamps spread over 90 days, the validation result computed
  once per corpus shape by ``pydbal.validate_definition``). Loaded rows have no audit entries.
* executions are generated server-side and written to ``workflow_executions`` and
  ``execution_keys`` with the hourly roll-ups (``workflow_stats_hourly``: counts, sum/min/max and
  the 240-bucket log-scale histogram of ``dbal.duration_bucket``) and the workflow counters
  updated in the same transaction, mirroring what ``dbal.record_execution`` writes per call
  (without its audit rows). ``check_rollups`` verifies the result against the raw rows.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from pydbal.formats import parse_import
from pydbal.validation import VALIDATOR_VERSION, validate_definition

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
CATEGORIES = ("user", "user", "user", "automation", "integration", "template", "package")
TAG_WORDS = (
    "sales",
    "marketing",
    "ops",
    "finance",
    "support",
    "etl",
    "ai",
    "slack",
    "email",
    "crm",
    "daily",
    "reporting",
    "alerts",
    "webhook",
    "sync",
)
SEARCH_TERMS = ("email", "slack", "telegram", "order", "agent", "google", "notion", "report")


def corpus_dir() -> Path:
    for candidate in (CORPUS, Path("/work/shared/corpus")):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("shared/corpus not found next to the checkout")


@dataclass(frozen=True)
class Shape:
    """One parsed corpus workflow, validated once."""

    name: str
    description: str | None
    nodes: list[Any]
    edges: dict[str, Any]
    variables: dict[str, Any]
    config: dict[str, Any]
    tags: list[str]
    valid: bool
    report: str  # ValidationReport as JSON text


def load_shapes() -> list[Shape]:
    shapes: list[Shape] = []
    for path in sorted(corpus_dir().rglob("*.json")):
        try:
            defs = parse_import(path.read_bytes(), source_name=path.name)
        except Exception:
            continue  # the corpus keeps a few malformed files on purpose
        for d in defs:
            settings = d.config.get("settings") if isinstance(d.config, dict) else None
            report = validate_definition(
                d.nodes, d.edges, d.variables, settings if isinstance(settings, dict) else None
            )
            shapes.append(
                Shape(
                    name=(d.name or path.stem)[:200],
                    description=d.description,
                    nodes=d.nodes,
                    edges=d.edges,
                    variables=d.variables,
                    config=d.config,
                    tags=list(d.tags),
                    valid=report.valid,
                    report=orjson.dumps(report.model_dump(mode="json", by_alias=True)).decode(),
                )
            )
    return shapes


def tenant_ids(n: int) -> list[str]:
    return [f"t{i:04d}" for i in range(n)]


@dataclass
class WorkflowRow:
    tenant_id: str
    id: uuid.UUID
    name: str
    shape: int
    enabled: bool
    category: str
    created_by: str
    tags: list[str]
    created_at: datetime


@dataclass
class Generator:
    """Draws workflows deterministically; ``rows(n)`` continues where the last call stopped."""

    shapes: list[Shape]
    tenants: list[str]
    seed: int = 42
    counter: int = 0
    rng: random.Random = field(init=False)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def row(self, tenant: str) -> WorkflowRow:
        rng = self.rng
        self.counter += 1
        s = rng.randrange(len(self.shapes))
        shape = self.shapes[s]
        tags = list(dict.fromkeys([*shape.tags[:3], *rng.sample(TAG_WORDS, rng.randint(0, 3))]))
        return WorkflowRow(
            tenant_id=tenant,
            id=uuid.UUID(int=rng.getrandbits(128), version=4),
            name=f"{shape.name} #{self.counter:07d}",
            shape=s,
            enabled=rng.random() < 0.9,
            category=rng.choice(CATEGORIES),
            created_by=f"u-{rng.randrange(5)}",
            tags=tags,
            created_at=self.now - timedelta(seconds=rng.uniform(3600, 90 * 86400)),
        )

    def rows(self, n: int) -> list[WorkflowRow]:
        """n workflows spread over the tenants (round-robin from a seeded offset)."""
        out = []
        for _ in range(n):
            out.append(self.row(self.tenants[self.counter % len(self.tenants)]))
        return out

    def rows_for(self, tenant: str, n: int) -> list[WorkflowRow]:
        return [self.row(tenant) for _ in range(n)]

    def create_input(self, r: WorkflowRow) -> dict[str, Any]:
        """The same workflow as an API input (what create/create_many/peer/floor insert)."""
        shape = self.shapes[r.shape]
        return {
            "name": r.name,
            "description": shape.description,
            "nodes": shape.nodes,
            "edges": shape.edges,
            "variables": shape.variables,
            "config": shape.config,
            "tags": r.tags,
            "category": r.category,
            "enabled": r.enabled,
        }


COPY_COLUMNS = (
    "tenant_id",
    "id",
    "name",
    "description",
    "nodes",
    "edges",
    "enabled",
    "version",
    "variables",
    "config",
    "tags",
    "category",
    "created_at",
    "updated_at",
    "created_by",
    "validation_status",
    "validation_errors",
    "validated_at",
    "valid_until",
    "validator_version",
)


RECOUNT = """
INSERT INTO dbal.tenant_counters (tenant_id, live, archived)
SELECT w.tenant_id, count(*) FILTER (WHERE w.archived_at IS NULL),
       count(*) FILTER (WHERE w.archived_at IS NOT NULL)
  FROM dbal.workflows w WHERE w.tenant_id = ANY ($1::text[]) GROUP BY w.tenant_id
ON CONFLICT (tenant_id) DO UPDATE SET live = excluded.live, archived = excluded.archived
"""


async def copy_workflows(conn: asyncpg.Connection, gen: Generator, rows: list[WorkflowRow]) -> None:
    """COPY rows into dbal.workflows with triggers off (superuser); see the module docstring."""
    enc: dict[int, tuple[str, str, str, str]] = {}
    now = datetime.now(UTC)
    records = []
    for r in rows:
        shape = gen.shapes[r.shape]
        if r.shape not in enc:
            enc[r.shape] = (
                orjson.dumps(shape.nodes).decode(),
                orjson.dumps(shape.edges).decode(),
                orjson.dumps(shape.variables).decode(),
                orjson.dumps(shape.config).decode(),
            )
        nodes, edges, variables, config = enc[r.shape]
        records.append(
            (
                r.tenant_id,
                r.id,
                r.name,
                shape.description,
                nodes,
                edges,
                r.enabled,
                1,
                variables,
                config,
                r.tags,
                r.category,
                r.created_at,
                r.created_at,
                r.created_by,
                "valid" if shape.valid else "invalid",
                shape.report,
                now,
                now + timedelta(hours=1),  # dbal.validity_period(): a CHECK refuses more
                VALIDATOR_VERSION,
            )
        )
    async with conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.copy_records_to_table(
            "workflows", schema_name="dbal", records=records, columns=COPY_COLUMNS
        )
        # the row triggers are off: count the tenants' workflows as the counting triggers would
        await conn.execute(RECOUNT, sorted({r.tenant_id for r in rows}))


# Executions, generated in the server from a hash of (prefix, n): deterministic, no transfer.
# Status mix 90 % success, 6 % failure, 2 % timeout, 2 % pending; durations log-normal around
# 300 ms; started_at uniform over the 30 days before the load.
_CREATE_NEW_EXEC = """
CREATE TEMP TABLE bench_new_exec (
    tenant_id text, workflow_id uuid, execution_id text, status text, duration_ms float8,
    started_at timestamptz) ON COMMIT DROP
"""

_GEN_EXECUTIONS = """
INSERT INTO bench_new_exec
SELECT w.t, w.id, w.prefix || '-' || g,
       CASE WHEN u.s < 0.90 THEN 'success' WHEN u.s < 0.96 THEN 'failure'
            WHEN u.s < 0.98 THEN 'timeout' ELSE 'pending' END,
       CASE WHEN u.s < 0.98
            THEN round(exp(5.7 + sqrt(-2 * ln(u.a)) * cos(2 * pi() * u.b))::numeric, 3)::float8
       END,
       $5::timestamptz - (u.c * interval '30 days') - interval '1 minute'
  FROM unnest($1::text[], $2::uuid[], $3::text[], $4::int[]) AS w(t, id, prefix, n),
       generate_series(1, w.n) AS g,
       LATERAL (SELECT (hashtext(w.prefix || 's' || g)::bigint & 2147483647) / 2147483648.0 AS s,
                       greatest((hashtext(w.prefix || 'a' || g)::bigint & 2147483647)
                                / 2147483648.0, 1e-9) AS a,
                       (hashtext(w.prefix || 'b' || g)::bigint & 2147483647) / 2147483648.0 AS b,
                       (hashtext(w.prefix || 'c' || g)::bigint & 2147483647) / 2147483648.0 AS c
               ) u
"""

_ROLLUP = """
INSERT INTO dbal.{table} AS s
       (tenant_id, workflow_id, {col}, success, failure, pending, timeout, finished, sum_ms,
        min_ms, max_ms, hist)
SELECT h.tenant_id, h.workflow_id, h.{col}, h.success, h.failure, h.pending, h.timeout,
       h.finished, h.sum_ms, h.min_ms, h.max_ms,
       (SELECT array_agg(coalesce((h.m ->> i::text)::int, 0) ORDER BY i)
          FROM generate_series(0, 239) AS i)
  FROM (SELECT tenant_id, workflow_id, date_trunc('{unit}', started_at, 'UTC') AS {col},
               count(*) FILTER (WHERE status = 'success') AS success,
               count(*) FILTER (WHERE status = 'failure') AS failure,
               count(*) FILTER (WHERE status = 'pending') AS pending,
               count(*) FILTER (WHERE status = 'timeout') AS timeout,
               count(*) FILTER (WHERE status <> 'pending' AND duration_ms IS NOT NULL) AS finished,
               coalesce(sum(duration_ms) FILTER (WHERE status <> 'pending'), 0) AS sum_ms,
               min(duration_ms) FILTER (WHERE status <> 'pending') AS min_ms,
               max(duration_ms) FILTER (WHERE status <> 'pending') AS max_ms,
               (SELECT jsonb_object_agg(k.b, k.n) FROM (
                    SELECT dbal.duration_bucket(x.duration_ms) AS b, count(*) AS n
                      FROM unnest(array_agg(duration_ms) FILTER (
                               WHERE status <> 'pending' AND duration_ms IS NOT NULL))
                           AS x(duration_ms)
                     GROUP BY 1) k) AS m
          FROM bench_new_exec GROUP BY 1, 2, 3) h
ON CONFLICT (tenant_id, workflow_id, {col}) DO UPDATE SET
    success = s.success + EXCLUDED.success, failure = s.failure + EXCLUDED.failure,
    pending = s.pending + EXCLUDED.pending, timeout = s.timeout + EXCLUDED.timeout,
    finished = s.finished + EXCLUDED.finished, sum_ms = s.sum_ms + EXCLUDED.sum_ms,
    min_ms = least(s.min_ms, EXCLUDED.min_ms), max_ms = greatest(s.max_ms, EXCLUDED.max_ms),
    hist = ARRAY(SELECT x + y FROM unnest(s.hist, EXCLUDED.hist) WITH ORDINALITY AS u(x, y, o)
                 ORDER BY o)
"""

_WRITE_EXECUTIONS = [
    """
INSERT INTO dbal.workflow_executions (tenant_id, workflow_id, execution_id, status, duration_ms,
                                      started_at, finished_at, executed_by, error)
SELECT tenant_id, workflow_id, execution_id, status, duration_ms, started_at,
       started_at + make_interval(secs => duration_ms / 1000.0), 'u-loader',
       CASE WHEN status IN ('failure', 'timeout') THEN 'bench: ' || status END
  FROM bench_new_exec
""",
    """
INSERT INTO dbal.execution_keys (tenant_id, execution_id, workflow_id, started_at, status)
SELECT tenant_id, execution_id, workflow_id, started_at, status FROM bench_new_exec
""",
    # the hourly and daily roll-ups, merged like dbal.rollup_add does one run at a time
    _ROLLUP.format(table="workflow_stats_hourly", unit="hour", col="hour"),
    _ROLLUP.format(table="workflow_stats_daily", unit="day", col="day"),
    # counters as record_execution keeps them: count, finished count, running mean, latest run
    """
UPDATE dbal.workflows w SET
    execution_count = w.execution_count + a.n,
    finished_execution_count = w.finished_execution_count + a.fin,
    average_execution_time = CASE WHEN w.finished_execution_count + a.fin = 0
        THEN w.average_execution_time
        ELSE (coalesce(w.average_execution_time, 0) * w.finished_execution_count + a.sum_ms)
             / (w.finished_execution_count + a.fin) END,
    last_executed_at = CASE WHEN w.last_executed_at IS NULL OR a.last_at >= w.last_executed_at
                            THEN a.last_at ELSE w.last_executed_at END,
    last_execution_status = CASE WHEN w.last_executed_at IS NULL OR a.last_at >= w.last_executed_at
                                 THEN a.last_status ELSE w.last_execution_status END
  FROM (SELECT tenant_id, workflow_id, count(*) AS n,
               count(*) FILTER (WHERE status <> 'pending') AS fin,
               coalesce(sum(duration_ms) FILTER (WHERE status <> 'pending'), 0) AS sum_ms,
               max(started_at) AS last_at,
               (array_agg(status ORDER BY started_at DESC))[1] AS last_status
          FROM bench_new_exec GROUP BY 1, 2) a
 WHERE w.tenant_id = a.tenant_id AND w.id = a.workflow_id
""",
]


async def insert_executions(
    conn: asyncpg.Connection,
    targets: list[tuple[str, uuid.UUID, str, int]],
    now: datetime,
    *,
    chunk: int = 250_000,
) -> int:
    """Generate and write executions: targets are (tenant, workflow, id prefix, count).
    Large counts are split into chunks of one transaction each."""
    total = 0
    pending: list[tuple[str, uuid.UUID, str, int]] = []
    for t, wid, prefix, n in targets:
        start = 0
        while start < n:
            k = min(chunk, n - start)
            pending.append((t, wid, f"{prefix}.{start}", k))
            start += k
    batch: list[tuple[str, uuid.UUID, str, int]] = []
    size = 0
    for item in [*pending, None]:
        if item is not None:
            batch.append(item)
            size += item[3]
        if batch and (item is None or size >= chunk):
            async with conn.transaction():
                await conn.execute("SET LOCAL session_replication_role = replica")
                await conn.execute("SET LOCAL work_mem = '256MB'")
                await conn.execute(_CREATE_NEW_EXEC)
                await conn.execute(
                    _GEN_EXECUTIONS,
                    [b[0] for b in batch],
                    [b[1] for b in batch],
                    [b[2] for b in batch],
                    [b[3] for b in batch],
                    now,
                )
                for stmt in _WRITE_EXECUTIONS:
                    await conn.execute(stmt)
            total += size
            batch, size = [], 0
    return total


async def check_rollups(conn: asyncpg.Connection, tenant: str, wid: uuid.UUID) -> dict[str, Any]:
    """Roll-up totals against the raw rows of one workflow (they must agree)."""
    raw = await conn.fetchrow(
        "SELECT count(*) AS n, count(*) FILTER (WHERE status = 'success') AS ok, "
        "sum(duration_ms) FILTER (WHERE status <> 'pending') AS sum_ms "
        "FROM dbal.workflow_executions WHERE tenant_id = $1 AND workflow_id = $2",
        tenant,
        wid,
    )
    roll = await conn.fetchrow(
        "SELECT sum(success + failure + pending + timeout) AS n, sum(success) AS ok, "
        "sum(sum_ms) AS sum_ms, sum((SELECT sum(x) FROM unnest(hist) x)) AS hist_n, "
        "sum(finished) AS fin FROM dbal.workflow_stats_hourly "
        "WHERE tenant_id = $1 AND workflow_id = $2",
        tenant,
        wid,
    )
    counter = await conn.fetchval(
        "SELECT execution_count FROM dbal.workflows WHERE tenant_id = $1 AND id = $2", tenant, wid
    )
    ok = (
        int(raw["n"]) == int(roll["n"] or 0) == int(counter)
        and int(raw["ok"]) == int(roll["ok"] or 0)
        and int(roll["hist_n"] or 0) == int(roll["fin"] or 0)
        and abs(float(raw["sum_ms"] or 0) - float(roll["sum_ms"] or 0))
        <= 1e-6 * max(1.0, float(raw["sum_ms"] or 0))
    )
    return {"raw": int(raw["n"]), "rollup": int(roll["n"] or 0), "counter": int(counter), "ok": ok}
