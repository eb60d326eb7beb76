-- 42_execution_stats.sql — execution statistics of one workflow over a time window.

SET LOCAL ROLE @owner_role@;

-- execution_stats(workflow, from, to): statistics of the executions that started in [from, to)
-- (from NULL = the beginning, to NULL = now).
-- The window is cut into whole UTC days (read from workflow_stats_daily), the whole hours around
-- them (workflow_stats_hourly) and the partial hours at its edges (the execution rows), so the
-- cost depends on the window's shape, not on the number of executions. Counts, success rate,
-- average, min and max are exact. success_rate = success / (success + failure + timeout), NULL
-- when none finished. p50/p95/p99 are nearest-rank percentiles over finished runs read from the
-- merged log-scale histogram (factor 1.1 per bucket), reported as the bucket's geometric
-- midpoint clamped to [min, max]: within 4.9 % of the exact nearest-rank value for durations of
-- 1 ms and more (below 1 ms, within 0.5 ms).
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
    -- plans are made per call: a generic plan would lock every partition of the executions
    SET plan_cache_mode = force_custom_plan
    AS $$
#variable_conflict use_column
DECLARE
    v_tenant text := dbal.enter(p_tenant, p_user, p_role);
    v_from timestamptz := coalesce(p_from, '-infinity');
    v_to timestamptz := coalesce(p_to, clock_timestamp());
    v_h1 timestamptz;  -- first whole hour
    v_h2 timestamptz;  -- end of the last whole hour
    v_d1 timestamptz;  -- first whole day
    v_d2 timestamptz;  -- end of the last whole day
    v_last_at timestamptz;
    v_last_status text;
BEGIN
    SELECT w.last_executed_at, w.last_execution_status INTO v_last_at, v_last_status
      FROM dbal.visible_or_4041(v_tenant, p_workflow) w;
    IF v_to < v_from THEN
        v_to := v_from;
    END IF;
    -- [v_from, v_h1) rows | [v_h1, v_d1) hours | [v_d1, v_d2) days | [v_d2, v_h2) hours | [v_h2, v_to) rows
    v_h1 := date_trunc('hour', v_from, 'UTC');
    IF v_h1 < v_from THEN v_h1 := v_h1 + interval '1 hour'; END IF;
    v_h2 := greatest(date_trunc('hour', v_to, 'UTC'), v_h1);
    v_d1 := date_trunc('day', v_h1, 'UTC');
    IF v_d1 < v_h1 THEN v_d1 := v_d1 + interval '1 day'; END IF;
    v_d2 := date_trunc('day', v_h2, 'UTC');
    IF v_d2 < v_d1 THEN
        v_d1 := v_h2;  -- no whole day: hours cover [v_h1, v_h2)
        v_d2 := v_h2;
    END IF;
    v_h1 := least(v_h1, v_to);

    -- The last execution of the window is usually the workflow's last one (windows ending now).
    IF NOT (v_last_at >= v_from AND v_last_at < v_to) THEN
        SELECT e.started_at, e.status INTO v_last_at, v_last_status
          FROM dbal.workflow_executions e
         WHERE e.tenant_id = v_tenant AND e.workflow_id = p_workflow
           AND e.started_at >= v_from AND e.started_at < v_to
         ORDER BY e.started_at DESC
         LIMIT 1;
    END IF;

    RETURN QUERY
    -- the two edges are separate range scans of workflow_executions_workflow_idx (never one
    -- scan with an OR filter, which reads every execution of the workflow): their cost is the
    -- rows of at most two partial hours, whatever the planner's statistics say
    WITH edge_rows AS MATERIALIZED (
        SELECT e.status, CASE WHEN e.status <> 'pending' THEN e.duration_ms END AS ms
          FROM dbal.workflow_executions e
         WHERE e.tenant_id = v_tenant AND e.workflow_id = p_workflow
           AND e.started_at >= v_from AND e.started_at < v_h1
        UNION ALL
        SELECT e.status, CASE WHEN e.status <> 'pending' THEN e.duration_ms END AS ms
          FROM dbal.workflow_executions e
         WHERE e.tenant_id = v_tenant AND e.workflow_id = p_workflow
           AND e.started_at >= v_h2 AND e.started_at < v_to
    ), rollups AS MATERIALIZED (
        SELECT s.success, s.failure, s.pending, s.timeout, s.finished, s.sum_ms, s.min_ms,
               s.max_ms, s.hist
          FROM dbal.workflow_stats_daily s
         WHERE s.tenant_id = v_tenant AND s.workflow_id = p_workflow
           AND s.day >= v_d1 AND s.day < v_d2
        UNION ALL
        SELECT s.success, s.failure, s.pending, s.timeout, s.finished, s.sum_ms, s.min_ms,
               s.max_ms, s.hist
          FROM dbal.workflow_stats_hourly s
         WHERE s.tenant_id = v_tenant AND s.workflow_id = p_workflow
           AND ((s.hour >= v_h1 AND s.hour < v_d1) OR (s.hour >= v_d2 AND s.hour < v_h2))
    ), agg AS (
        SELECT sum(x.success)::bigint AS success, sum(x.failure)::bigint AS failure,
               sum(x.pending)::bigint AS pending, sum(x.timeout)::bigint AS timeout,
               sum(x.finished)::bigint AS finished, sum(x.sum_ms) AS sum_ms,
               min(x.min_ms) AS min_ms, max(x.max_ms) AS max_ms
          FROM (SELECT r.success, r.failure, r.pending, r.timeout, r.finished, r.sum_ms,
                       r.min_ms, r.max_ms
                  FROM rollups r
                UNION ALL
                SELECT count(*) FILTER (WHERE er.status = 'success'),
                       count(*) FILTER (WHERE er.status = 'failure'),
                       count(*) FILTER (WHERE er.status = 'pending'),
                       count(*) FILTER (WHERE er.status = 'timeout'),
                       count(er.ms), coalesce(sum(er.ms), 0), min(er.ms), max(er.ms)
                  FROM edge_rows er) x
    ), buckets AS (
        SELECT b, sum(n) AS n FROM (
            SELECT (u.ord - 1)::integer AS b, u.n::bigint AS n
              FROM rollups r, unnest(r.hist) WITH ORDINALITY AS u(n, ord)
             WHERE r.finished > 0 AND u.n > 0
            UNION ALL
            SELECT dbal.duration_bucket(er.ms), 1 FROM edge_rows er WHERE er.ms IS NOT NULL
        ) y GROUP BY b
    ), cum AS (
        SELECT b, sum(n) OVER (ORDER BY b) AS c FROM buckets
    ), pct AS (
        -- nearest rank: the smallest bucket whose cumulative count reaches ceil(p * finished)
        SELECT min(c.b) FILTER (WHERE c.c >= greatest(ceil(0.50 * a.finished), 1)) AS b50,
               min(c.b) FILTER (WHERE c.c >= greatest(ceil(0.95 * a.finished), 1)) AS b95,
               min(c.b) FILTER (WHERE c.c >= greatest(ceil(0.99 * a.finished), 1)) AS b99
          FROM cum c, agg a
    )
    SELECT a.success + a.failure + a.pending + a.timeout,
           a.success, a.failure, a.pending, a.timeout,
           CASE WHEN a.success + a.failure + a.timeout > 0
                THEN a.success::float8 / (a.success + a.failure + a.timeout) END,
           CASE WHEN a.finished > 0 THEN a.sum_ms / a.finished END,
           a.min_ms, a.max_ms,
           least(greatest(dbal.bucket_value(p.b50), a.min_ms), a.max_ms),
           least(greatest(dbal.bucket_value(p.b95), a.min_ms), a.max_ms),
           least(greatest(dbal.bucket_value(p.b99), a.min_ms), a.max_ms),
           CASE WHEN v_last_at >= v_from AND v_last_at < v_to THEN v_last_at END,
           CASE WHEN v_last_at >= v_from AND v_last_at < v_to THEN v_last_status END
      FROM agg a, pct p;
END
$$;

RESET ROLE;
