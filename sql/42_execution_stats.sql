-- 42_execution_stats.sql — execution statistics of one workflow over a time window.

SET LOCAL ROLE @owner_role@;

-- execution_stats(workflow, from, to): statistics of the executions that started in [from, to)
-- (from NULL = the beginning, to NULL = now).
-- Counts, success rate, average, min and max are exact: whole hours come from the hourly
-- roll-up, the partial hours at the window's edges from the execution rows, so the cost does
-- not grow with the number of executions. success_rate = success / (success + failure +
-- timeout), NULL when none finished. p50/p95/p99 are nearest-rank percentiles over finished runs
-- read from the merged log-scale histogram (factor 1.1 per bucket), reported as the bucket's
-- geometric midpoint clamped to [min, max]: within 4.9 % of the exact nearest-rank value for
-- durations of 1 ms and more (below 1 ms, within 0.5 ms).
-- WORKFLOW_NOT_FOUND (4041) for a workflow that is not the tenant's.
CREATE FUNCTION dbal.execution_stats(
        p_workflow uuid, p_from timestamptz DEFAULT NULL, p_to timestamptz DEFAULT NULL,
        p_tenant text DEFAULT NULL, p_user text DEFAULT NULL, p_role text DEFAULT NULL)
    RETURNS TABLE (
        total bigint, success bigint, failure bigint, pending bigint, timeout bigint,
        success_rate double precision, avg_ms double precision, min_ms double precision,
        max_ms double precision, p50_ms double precision, p95_ms double precision,
        p99_ms double precision, last_executed_at timestamptz, last_status text)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    v_tenant text := dbal.enter(p_tenant, p_user, p_role);
    v_from timestamptz := coalesce(p_from, '-infinity');
    v_to timestamptz := coalesce(p_to, clock_timestamp());
    -- whole hours [v_h1, v_h2) come from the roll-up
    v_h1 timestamptz;
    v_h2 timestamptz;
BEGIN
    PERFORM 1 FROM dbal.workflows w WHERE w.tenant_id = v_tenant AND w.id = p_workflow;
    IF NOT FOUND THEN
        PERFORM dbal.raise_error(4041, 'workflow not found', jsonb_build_object('id', p_workflow));
    END IF;
    IF v_from = '-infinity' THEN
        v_h1 := '-infinity';
    ELSE
        v_h1 := date_trunc('hour', v_from, 'UTC');
        IF v_h1 < v_from THEN v_h1 := v_h1 + interval '1 hour'; END IF;
    END IF;
    v_h2 := date_trunc('hour', v_to, 'UTC');
    IF v_h2 < v_h1 THEN v_h2 := v_h1; END IF;

    RETURN QUERY
    WITH parts AS (
        SELECT s.success, s.failure, s.pending, s.timeout, s.finished, s.sum_ms, s.min_ms,
               s.max_ms, s.hist
          FROM dbal.workflow_stats_hourly s
         WHERE s.tenant_id = v_tenant AND s.workflow_id = p_workflow
           AND s.hour >= v_h1 AND s.hour < v_h2
        UNION ALL
        SELECT (e.status = 'success')::int, (e.status = 'failure')::int,
               (e.status = 'pending')::int, (e.status = 'timeout')::int,
               (e.status <> 'pending' AND e.duration_ms IS NOT NULL)::int,
               coalesce(CASE WHEN e.status <> 'pending' THEN e.duration_ms END, 0),
               CASE WHEN e.status <> 'pending' THEN e.duration_ms END,
               CASE WHEN e.status <> 'pending' THEN e.duration_ms END,
               NULL::integer[]
          FROM dbal.workflow_executions e
         WHERE e.tenant_id = v_tenant AND e.workflow_id = p_workflow
           AND ((e.started_at >= v_from AND e.started_at < least(v_h1, v_to))
                OR (e.started_at >= greatest(v_h2, v_from) AND e.started_at < v_to))
    ), edge_buckets AS (
        SELECT dbal.duration_bucket(e.duration_ms) AS b, count(*) AS n
          FROM dbal.workflow_executions e
         WHERE e.tenant_id = v_tenant AND e.workflow_id = p_workflow
           AND e.status <> 'pending' AND e.duration_ms IS NOT NULL
           AND ((e.started_at >= v_from AND e.started_at < least(v_h1, v_to))
                OR (e.started_at >= greatest(v_h2, v_from) AND e.started_at < v_to))
         GROUP BY 1
    ), buckets AS (
        SELECT b, sum(n) AS n FROM (
            SELECT (u.ord - 1)::int AS b, u.n::bigint AS n
              FROM dbal.workflow_stats_hourly s, unnest(s.hist) WITH ORDINALITY AS u(n, ord)
             WHERE s.tenant_id = v_tenant AND s.workflow_id = p_workflow
               AND s.hour >= v_h1 AND s.hour < v_h2 AND u.n > 0
            UNION ALL
            SELECT eb.b, eb.n FROM edge_buckets eb
        ) x GROUP BY b
    ), cum AS (
        SELECT b, sum(n) OVER (ORDER BY b) AS c FROM buckets
    ), agg AS (
        SELECT coalesce(sum(p.success), 0)::bigint AS success,
               coalesce(sum(p.failure), 0)::bigint AS failure,
               coalesce(sum(p.pending), 0)::bigint AS pending,
               coalesce(sum(p.timeout), 0)::bigint AS timeout,
               coalesce(sum(p.finished), 0)::bigint AS finished,
               sum(p.sum_ms) AS sum_ms, min(p.min_ms) AS min_ms, max(p.max_ms) AS max_ms
          FROM parts p
    ), last_exec AS (
        SELECT e.started_at, e.status
          FROM dbal.workflow_executions e
         WHERE e.tenant_id = v_tenant AND e.workflow_id = p_workflow
           AND e.started_at >= v_from AND e.started_at < v_to
         ORDER BY e.started_at DESC
         LIMIT 1
    ), pct AS (
        -- nearest rank: the smallest bucket whose cumulative count reaches ceil(p * finished)
        SELECT q.p, dbal.bucket_value((SELECT min(c.b) FROM cum c
                                        WHERE c.c >= greatest(ceil(q.p * a.finished), 1))) AS v
          FROM (VALUES (0.50), (0.95), (0.99)) AS q(p), agg a
    )
    SELECT a.success + a.failure + a.pending + a.timeout,
           a.success, a.failure, a.pending, a.timeout,
           CASE WHEN a.success + a.failure + a.timeout > 0
                THEN a.success::float8 / (a.success + a.failure + a.timeout) END,
           CASE WHEN a.finished > 0 THEN a.sum_ms / a.finished END,
           a.min_ms, a.max_ms,
           (SELECT least(greatest(x.v, a.min_ms), a.max_ms) FROM pct x WHERE x.p = 0.50),
           (SELECT least(greatest(x.v, a.min_ms), a.max_ms) FROM pct x WHERE x.p = 0.95),
           (SELECT least(greatest(x.v, a.min_ms), a.max_ms) FROM pct x WHERE x.p = 0.99),
           (SELECT l.started_at FROM last_exec l), (SELECT l.status FROM last_exec l)
      FROM agg a;
END
$$;

RESET ROLE;
