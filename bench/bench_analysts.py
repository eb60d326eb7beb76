"""An analyst's query through the opaque views vs the same query as a superuser, in one run.

``python bench/bench_analysts.py --dsn postgresql://postgres@127.0.0.1:5432/postgres``

A scratch database gets 1,000 tenants with 2 workflows each and ``--executions`` (default 1M)
executions in all, spread over 30 days; an analyst login is granted one tenant. The query is
"executions per day per workflow over 30 days": the analyst through ``dbal_analytics.executions``
(issue 9: opaque SECURITY DEFINER functions, tenant first), the floor as a superuser on the base
table with an explicit tenant filter. Prints medians and the ratio (target: within 2x). Not part of
the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
from typing import Any

import asyncpg

from pydbal.cli.analysts import grant_analyst
from pydbal.migrate import migrate
from pydbal.server import dsn_with

ANALYST_QUERY = """
SELECT workflow_id, date_trunc('day', started_at) AS day, count(*)
  FROM dbal_analytics.executions
 WHERE started_at > now() - interval '30 days'
 GROUP BY 1, 2
"""

FLOOR_QUERY = """
SELECT workflow_id, date_trunc('day', started_at) AS day, count(*)
  FROM dbal.workflow_executions
 WHERE tenant_id = $1 AND started_at > now() - interval '30 days'
 GROUP BY 1, 2
"""


async def _median_ms(conn: Any, query: str, *args: Any, n: int) -> tuple[float, int]:
    rows = await conn.fetch(query, *args)  # warm
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await conn.fetch(query, *args)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), len(rows)


async def main(dsn: str, executions: int, tenants: int, n: int) -> None:
    name = f"pydbal_bench_an_{secrets.token_hex(3)}"
    login = f"pydbal_bench_analyst_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    db = dsn_with(dsn, database=name)
    try:
        await migrate(db)
        conn = await asyncpg.connect(db)
        try:
            t0 = time.perf_counter()
            await conn.execute(
                """INSERT INTO dbal.workflows (tenant_id, name, created_by)
                   SELECT format('t%s', lpad(t::text, 4, '0')), format('wf-%s', w), 'bench'
                     FROM generate_series(1, $1) t, generate_series(1, 2) w""",
                tenants,
            )
            await conn.execute(
                """INSERT INTO dbal.workflow_executions (tenant_id, workflow_id, execution_id,
                           status, duration_ms, started_at, executed_by)
                   SELECT w.tenant_id, w.id, format('e%s', g), 'success', 10,
                          now() - ((g::bigint * 7919) % 2592000) * interval '1 second', 'bench'
                     FROM generate_series(1, $1) g
                     JOIN LATERAL (
                          SELECT tenant_id, id FROM dbal.workflows
                           WHERE tenant_id = format('t%s', lpad((1 + g % $2)::text, 4, '0'))
                           ORDER BY id LIMIT 1 OFFSET (g / $2) % 2) w ON true""",
                executions,
                tenants,
            )
            await conn.execute("ANALYZE")
            seeded = time.perf_counter() - t0
        finally:
            await conn.close()
        await admin.execute(f"CREATE ROLE {login} LOGIN")
        await grant_analyst(db, login, ["t0001"], granted_by="bench")
        analyst = await asyncpg.connect(dsn_with(db, user=login))
        superuser = await asyncpg.connect(db)
        try:
            a_ms, a_rows = await _median_ms(analyst, ANALYST_QUERY, n=n)
            f_ms, f_rows = await _median_ms(superuser, FLOOR_QUERY, "t0001", n=n)
        finally:
            await analyst.close()
            await superuser.close()
        assert a_rows == f_rows, (a_rows, f_rows)
        print(f"seeded {tenants} tenants, {executions} executions in {seeded:.1f}s")
        print("executions per day per workflow over 30 days, one tenant (median of", n, "runs)")
        print(f"  superuser, explicit tenant filter: {f_ms:8.3f} ms  ({f_rows} groups)")
        print(f"  analyst, dbal_analytics view:      {a_ms:8.3f} ms  ({a_rows} groups)")
        print(f"  ratio analyst / floor:             {a_ms / f_ms:8.2f}x  (target <= 2x)")
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.execute(f"DROP ROLE IF EXISTS {login}")
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="superuser DSN of a PostgreSQL server")
    parser.add_argument("--executions", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.dsn, args.executions, args.tenants, args.runs))
