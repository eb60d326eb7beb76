-- citus/08_record_batch.sql — the batched recorder (dbal.record_executions) reshaped for Citus.
--
-- sql/43_record_batch.sql writes a batch with two statements whose CTEs modify tables (the keys'
-- INSERT in step 2; every write of step 4). A call of record_executions runs on the tenant's
-- worker (force_delegation), and there Citus plans a statement with a data-modifying CTE as
-- distributed subplans that open connections to the nodes as the current user — the function's
-- NOLOGIN owner: every batch failed with "role … is not permitted to log in" (SQLSTATE 08006),
-- which the recorder took for an outage and retried until its deadline.
--
-- This version does the same work in the same order with statements Citus runs on the worker's
-- local shards: reads of one table with `tenant_id = v_tenant`, computations over the batch's
-- arrays (no table), and one write per statement, from arrays (INSERT … SELECT … FROM unnest,
-- UPDATE … FROM unnest); no modifying CTE. Same arguments, results, rows, counters, roll-ups,
-- audit and errors as sql/43_record_batch.sql (tests/api/test_recorder.py runs through the
-- coordinator, test_batch_equals_one_by_one included); the steps below carry that file's
-- numbers. Differences in how, not what:
--   * step 4's writes are separate statements (executions, keys, roll-ups, audit, workflows):
--     the batch's workflows are locked since step 1 and every writer of their keys and roll-ups
--     holds those locks, so no other transaction writes these rows in between;
--   * a roll-up row is updated when it exists and inserted (ON CONFLICT DO NOTHING) otherwise,
--     both statements written once for the two tables (hourly, daily); a row that neither
--     statement wrote raises the same serialization failure (40001) as on one node;
--   * Citus refuses STABLE functions of columns anywhere in an UPDATE (its FROM list too):
--     each event's hour and day (date_trunc with a time zone) and a late completion's
--     finished_at (timestamptz + interval, from the key's started_at, which equals the row's
--     the UPDATE matches on) are computed beforehand, into arrays.
--
-- Keep in step with sql/43_record_batch.sql: the DO block at the end of this file refuses to
-- replace a definition it does not know (an sql/ change without this file's).

DO $guard$
DECLARE
    -- md5(prosrc) of sql/43_record_batch.sql's record_executions (migration 0007)
    v_known constant text := '4a02b6e47665039f8981185ee7d2d64c';
    v_src text;
BEGIN
    SELECT p.prosrc INTO v_src FROM pg_proc p
     WHERE p.oid = to_regprocedure('dbal.record_executions(text, text, text, uuid[], text[], '
                                   'double precision[], text[], bigint[], timestamptz[], text[])');
    IF v_src IS NULL OR position('pydbal:citus' IN v_src) > 0 OR md5(v_src) = v_known THEN
        RETURN;
    END IF;
    -- an older definition (an install being upgraded: the pending migrations replace it, and
    -- this file runs again after them) is left alone; an unknown one is refused
    IF position('lease_live' IN v_src) = 0 THEN
        RAISE NOTICE 'sql/citus/08_record_batch.sql: dbal.record_executions predates 0007_structure; left as it is';
        RETURN;
    END IF;
    RAISE EXCEPTION 'sql/citus/08_record_batch.sql: dbal.record_executions differs from '
                    'sql/43_record_batch.sql as this file knows it (md5 %); update its Citus '
                    'version and the md5 here', md5(v_src);
END
$guard$;

-- Where the single-node definition predates 0007 the block below still replaces it: the Citus
-- version needs 0007's helpers (dbal.lease_live), which the pending migrations bring, and a
-- call before they are applied fails like the old body would (the upgrade runs in one
-- transaction, so no call sees the mix).
CREATE OR REPLACE FUNCTION dbal.record_executions(
        p_tenant text, p_user text, p_role text,
        p_workflows uuid[],
        p_statuses text[],
        p_durations double precision[],
        p_execution_ids text[],
        p_tokens bigint[],
        p_started_at timestamptz[],
        p_errors text[])
    RETURNS TABLE (ord integer, execution_id text, outcome text, code integer, message text,
                   details jsonb)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
#variable_conflict use_column
-- pydbal:citus — sql/citus/08_record_batch.sql (the single-node text: sql/43_record_batch.sql)
DECLARE
    v_tenant text := dbal.enter(p_tenant, p_user, p_role);
    v_n integer := coalesce(cardinality(p_workflows), 0);
    v_user text := dbal.ctx_user();
    v_role text := dbal.ctx_role();
    v_ctx_tenant text := dbal.ctx_tenant();
    v_now timestamptz := clock_timestamp();
    -- per item (array order): execution id, started_at, refusal of step 2 (NULL: valid)
    v_ids text[];
    v_started timestamptz[];
    v_codes integer[];
    v_messages text[];
    v_details jsonb[];
    -- execution ids whose key step 2 inserted; valid ids whose key existed before
    v_new text[] := '{}';
    v_old text[];
    -- the keys that existed before (locked)
    k_ids text[];
    k_workflows uuid[];
    k_started timestamptz[];
    k_statuses text[];
    -- per item: outcome
    v_outcomes text[];
    -- the valid items with their state before the batch and their outcome (step 4), item order
    o_i integer[];
    o_wf uuid[];
    o_eid text[];
    o_st text[];
    o_d double precision[];
    o_started timestamptz[];
    o_err text[];
    o_bstarted timestamptz[];
    o_ins_i integer[];
    o_c_i integer[];
    o_c_st text[];
    o_c_d double precision[];
    o_c_err text[];
    o_eff text[];
    o_outcome text[];
    -- events: what changes counters and roll-ups (new runs and completions), item order
    e_i integer[];
    e_wf uuid[];
    e_eid text[];
    e_st text[];
    e_d double precision[];
    e_at timestamptz[];
    e_completion boolean[];
    e_dpending integer[];
    e_hour timestamptz[];  -- the event's hour and day (UTC): its roll-up rows
    e_day timestamptz[];
    v_periods timestamptz[];
    -- the batch's workflows' last run before the batch
    l_ids uuid[];
    l_last timestamptz[];
    -- completions of executions recorded as pending before this batch
    c_ids text[];
    c_started timestamptz[];
    c_statuses text[];
    c_durations double precision[];
    c_errors text[];
    c_finished timestamptz[];
    v_rolled_up boolean := true;  -- every (workflow, hour) and (workflow, day) row written
    v_groups bigint;
    v_written bigint;
    v_count bigint;
    v_agg text;
    v_period record;
    r record;
BEGIN
    IF v_role IS NULL OR v_user IS NULL THEN
        PERFORM dbal.raise_error(403, 'a user and a role are required to record an execution');
    END IF;
    IF v_n > 10000 THEN
        PERFORM dbal.raise_error(422, 'at most 10000 executions per call',
                                 jsonb_build_object('count', v_n));
    END IF;
    IF coalesce(cardinality(p_statuses), 0) <> v_n OR coalesce(cardinality(p_durations), 0) <> v_n
       OR coalesce(cardinality(p_execution_ids), 0) <> v_n OR coalesce(cardinality(p_tokens), 0) <> v_n
       OR coalesce(cardinality(p_started_at), 0) <> v_n OR coalesce(cardinality(p_errors), 0) <> v_n THEN
        PERFORM dbal.raise_error(422, 'the arrays of a batch must have the same length');
    END IF;
    IF v_n = 0 THEN
        RETURN;
    END IF;

    -- 1. Lock the batch's workflows (id order).
    PERFORM 1 FROM dbal.workflows w
     WHERE w.tenant_id = v_tenant AND w.id = ANY (p_workflows)
     ORDER BY w.id
       FOR UPDATE;

    -- 2. Validate and fence every item (record_one's checks, in its order)...
    SELECT array_agg(coalesce(u.eid, gen_random_uuid()::text) ORDER BY u.i),
           array_agg(coalesce(u.sa, v_now - make_interval(secs => coalesce(u.d, 0) / 1000.0))
                     ORDER BY u.i)
      INTO v_ids, v_started
      FROM unnest(p_durations, p_execution_ids, p_started_at) WITH ORDINALITY AS u(d, eid, sa, i);

    WITH r AS (
        SELECT u.i, u.wf, u.st, u.d, u.tok, u.eid, u.started, w.locked_by, w.locked_at,
               CASE WHEN u.st IS NULL OR u.st NOT IN ('success', 'failure', 'pending', 'timeout') THEN 1
                    WHEN u.d < 0 OR u.d = 'NaN'::float8 OR u.d = 'Infinity'::float8
                         OR (u.st <> 'pending' AND u.d IS NULL) THEN 2
                    WHEN length(u.eid) NOT BETWEEN 1 AND 255 THEN 3
                    WHEN u.started > v_now + interval '5 minutes' THEN 4
                    WHEN w.id IS NULL THEN 5
                    WHEN u.tok IS NOT NULL THEN
                        CASE WHEN coalesce(dbal.lease_live(w.is_locked, w.lock_expires_at, v_now)
                                           AND w.lock_token = u.tok AND w.locked_by = v_user, false)
                             THEN NULL ELSE 6 END
                    WHEN dbal.lease_live(w.is_locked, w.lock_expires_at, v_now)
                         AND w.locked_by IS DISTINCT FROM v_user THEN 7
               END AS reason
          FROM unnest(p_workflows, p_statuses, p_durations, p_tokens, v_ids, v_started)
               WITH ORDINALITY AS u(wf, st, d, tok, eid, started, i)
          LEFT JOIN dbal.workflows w ON w.tenant_id = v_tenant AND w.id = u.wf
    )
    SELECT array_agg((ARRAY[422, 422, 422, 422, 4041, 4233, 4231])[r.reason] ORDER BY r.i),
           array_agg(CASE r.reason
                         WHEN 1 THEN format('unknown execution status %L', r.st)
                         WHEN 2 THEN 'duration_ms must be a finite number >= 0 (required for a final status)'
                         WHEN 3 THEN 'execution_id must be 1 to 255 characters'
                         WHEN 4 THEN 'started_at is in the future'
                         WHEN 5 THEN 'workflow not found'
                         WHEN 6 THEN 'the lock token is not the current holder''s'
                         WHEN 7 THEN 'workflow is locked by another user'
                     END ORDER BY r.i),
           array_agg(CASE r.reason
                         WHEN 1 THEN jsonb_build_object('status', r.st)
                         WHEN 2 THEN jsonb_build_object('duration_ms', r.d)
                         WHEN 4 THEN jsonb_build_object('started_at', r.started)
                         WHEN 5 THEN jsonb_build_object('id', r.wf)
                         WHEN 6 THEN jsonb_build_object('id', r.wf, 'token', r.tok)
                         WHEN 7 THEN jsonb_build_object('id', r.wf, 'locked_by', r.locked_by,
                                                        'locked_at', r.locked_at)
                     END ORDER BY r.i)
      INTO v_codes, v_messages, v_details
      FROM r;

    --    ...and insert the key of the first valid item of each execution id unless the id is
    --    known: the inserted ones are new executions, the others are looked up in step 3.
    FOR r IN
        INSERT INTO dbal.execution_keys AS k (tenant_id, execution_id, workflow_id, started_at, status)
        SELECT f.tenant_id, f.eid, f.wf, f.started, f.st
          FROM (SELECT DISTINCT ON (u.eid) v_tenant AS tenant_id, u.eid, u.wf, u.started, u.st
                  FROM unnest(v_ids, p_workflows, v_started, p_statuses, v_codes)
                       WITH ORDINALITY AS u(eid, wf, started, st, code, i)
                 WHERE u.code IS NULL
                 ORDER BY u.eid, u.i) f
        ON CONFLICT ON CONSTRAINT execution_keys_pkey DO NOTHING
        RETURNING k.execution_id AS eid
    LOOP
        v_new := v_new || r.eid;
    END LOOP;
    SELECT coalesce(array_agg(x.eid), '{}') INTO v_old
      FROM (SELECT u.eid FROM unnest(v_ids, v_codes) AS u(eid, code) WHERE u.code IS NULL
            EXCEPT SELECT n.eid FROM unnest(v_new) AS n(eid)) x;

    -- 3. The keys known before the batch, locked (id order) like record_one locks them.
    IF cardinality(v_old) > 0 THEN
        SELECT coalesce(array_agg(k.execution_id), '{}'), array_agg(k.workflow_id),
               array_agg(k.started_at), array_agg(k.status)
          INTO k_ids, k_workflows, k_started, k_statuses
          FROM (SELECT k.execution_id, k.workflow_id, k.started_at, k.status
                  FROM dbal.execution_keys k
                 WHERE k.tenant_id = v_tenant AND k.execution_id = ANY (v_old)
                 ORDER BY k.execution_id
                   FOR UPDATE) k;
        IF cardinality(k_ids) <> cardinality(v_old) THEN
            RAISE EXCEPTION USING ERRCODE = 'serialization_failure',
                MESSAGE = 'an execution key was deleted while the batch was being recorded';
        END IF;
    END IF;

    -- 4. Outcomes (sql/43_record_batch.sql's rules: for each execution id, its state before
    --    the batch is its old key or, new id, its first valid item, which is 'recorded'; later
    --    items of the id: another workflow -> 409; the first final item of the same workflow
    --    while the state is 'pending' is the completion; then the same status, or a late
    --    'pending' -> 'duplicate'; another final status -> 409), computed from the arrays...
    WITH it AS MATERIALIZED (  -- the valid items
        SELECT u.i::integer AS i, u.wf, u.st, u.d, u.eid, u.started, u.err
          FROM unnest(p_workflows, p_statuses, p_durations, v_ids, v_started, p_errors, v_codes)
               WITH ORDINALITY AS u(wf, st, d, eid, started, err, code, i)
         WHERE u.code IS NULL
    ), base AS MATERIALIZED (
        (SELECT DISTINCT ON (it.eid) it.eid, it.wf AS bwf, it.started AS bstarted, it.st AS bst,
                it.i AS ins_i
           FROM it JOIN unnest(v_new) AS n(eid) ON n.eid = it.eid
          ORDER BY it.eid, it.i)
        UNION ALL
        SELECT k.eid, k.wf, k.started, k.st, NULL
          FROM unnest(k_ids, k_workflows, k_started, k_statuses) AS k(eid, wf, started, st)
    ), ib AS (
        SELECT it.*, b.bwf, b.bstarted, b.bst, b.ins_i,
               b.bst = 'pending' AND it.wf = b.bwf AND it.st <> 'pending' AS completes
          FROM it JOIN base b ON b.eid = it.eid
    ), c AS (  -- the completion of each id still pending: its first final item (c_i)
        SELECT ib.*,
               min(ib.i) FILTER (WHERE ib.completes) OVER w AS c_i,
               (array_agg(ib.st) FILTER (WHERE ib.completes) OVER w)[1] AS c_st,
               (array_agg(ib.d) FILTER (WHERE ib.completes) OVER w)[1] AS c_d,
               (array_agg(ib.err) FILTER (WHERE ib.completes) OVER w)[1] AS c_err
          FROM ib
        WINDOW w AS (PARTITION BY ib.eid ORDER BY ib.i
                     ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
    ), o AS (
        SELECT c.*, s.eff,
               CASE WHEN c.i = c.ins_i THEN 'recorded'
                    WHEN c.wf <> c.bwf THEN 'other_workflow'
                    WHEN c.i = c.c_i THEN 'completed'
                    WHEN s.eff = c.st OR (s.eff <> 'pending' AND c.st = 'pending') THEN 'duplicate'
                    ELSE 'other_status'
               END AS outcome
          FROM c CROSS JOIN LATERAL (SELECT CASE WHEN c.c_i < c.i THEN c.c_st ELSE c.bst END AS eff) s
    )
    SELECT array_agg(o.i ORDER BY o.i), array_agg(o.wf ORDER BY o.i),
           array_agg(o.eid ORDER BY o.i), array_agg(o.st ORDER BY o.i),
           array_agg(o.d ORDER BY o.i), array_agg(o.started ORDER BY o.i),
           array_agg(o.err ORDER BY o.i), array_agg(o.bstarted ORDER BY o.i),
           array_agg(o.ins_i ORDER BY o.i), array_agg(o.c_i ORDER BY o.i),
           array_agg(o.c_st ORDER BY o.i), array_agg(o.c_d ORDER BY o.i),
           array_agg(o.c_err ORDER BY o.i), array_agg(o.eff ORDER BY o.i),
           array_agg(o.outcome ORDER BY o.i)
      INTO o_i, o_wf, o_eid, o_st, o_d, o_started, o_err, o_bstarted, o_ins_i, o_c_i, o_c_st,
           o_c_d, o_c_err, o_eff, o_outcome
      FROM o;

    --    ...and the events: new runs and completions.
    SELECT array_agg(ev.i ORDER BY ev.i, ev.completion), array_agg(ev.wf ORDER BY ev.i, ev.completion),
           array_agg(ev.eid ORDER BY ev.i, ev.completion), array_agg(ev.st ORDER BY ev.i, ev.completion),
           array_agg(ev.d ORDER BY ev.i, ev.completion), array_agg(ev.at ORDER BY ev.i, ev.completion),
           array_agg(ev.completion ORDER BY ev.i, ev.completion),
           array_agg(ev.dpending ORDER BY ev.i, ev.completion),
           array_agg(date_trunc('hour', ev.at, 'UTC') ORDER BY ev.i, ev.completion),
           array_agg(date_trunc('day', ev.at, 'UTC') ORDER BY ev.i, ev.completion)
      INTO e_i, e_wf, e_eid, e_st, e_d, e_at, e_completion, e_dpending, e_hour, e_day
      FROM (SELECT o.i, o.wf, o.eid, o.st, o.d, o.started AS at, false AS completion,
                   (o.st = 'pending')::integer AS dpending
              FROM unnest(o_i, o_wf, o_eid, o_st, o_d, o_started, o_outcome)
                   AS o(i, wf, eid, st, d, started, outcome)
             WHERE o.outcome = 'recorded'
            UNION ALL
            SELECT o.i, o.wf, o.eid, o.st, o.d, o.bstarted, true, -1
              FROM unnest(o_i, o_wf, o_eid, o_st, o_d, o_bstarted, o_outcome)
                   AS o(i, wf, eid, st, d, bstarted, outcome)
             WHERE o.outcome = 'completed') ev;

    --    The writes, one statement each: new executions, with their final status when
    --    completed in this batch...
    INSERT INTO dbal.workflow_executions (tenant_id, workflow_id, execution_id, status,
                                          duration_ms, started_at, finished_at, executed_by, error)
    SELECT v_tenant, o.wf, o.eid, coalesce(o.c_st, o.st),
           CASE WHEN o.c_i IS NOT NULL THEN o.c_d WHEN o.st <> 'pending' THEN o.d END,
           o.started,
           CASE WHEN o.c_i IS NOT NULL THEN o.started + make_interval(secs => o.c_d / 1000.0)
                WHEN o.st <> 'pending' THEN o.started + make_interval(secs => o.d / 1000.0) END,
           v_user,
           CASE WHEN o.c_i IS NOT NULL THEN o.c_err ELSE o.err END
      FROM unnest(o_i, o_wf, o_eid, o_st, o_d, o_started, o_err, o_c_i, o_c_st, o_c_d, o_c_err,
                  o_outcome)
           AS o(i, wf, eid, st, d, started, err, c_i, c_st, c_d, c_err, outcome)
     WHERE o.outcome = 'recorded'
     ORDER BY o.i;

    --    ...the keys of completed executions...
    UPDATE dbal.execution_keys k SET status = o.st
      FROM unnest(o_eid, o_st, o_outcome) AS o(eid, st, outcome)
     WHERE o.outcome = 'completed' AND k.tenant_id = v_tenant AND k.execution_id = o.eid;

    --    ...the roll-ups: per (workflow, hour) and (workflow, day), the rows that exist are
    --    updated, the others inserted. One text for both tables; a new row is made by its first
    --    event, so its pending count starts at greatest(first, 0) like rollup_add's; sums are
    --    folded from the row's sum in event order...
    FOR v_period IN
        SELECT * FROM (VALUES ('workflow_stats_hourly', 'hour'), ('workflow_stats_daily', 'day'))
                      AS x(tbl, col)
    LOOP
        v_agg := format(
            'SELECT e.wf, e.period,
                    count(*) FILTER (WHERE e.st = ''success'') AS success,
                    count(*) FILTER (WHERE e.st = ''failure'') AS failure,
                    count(*) FILTER (WHERE e.st = ''timeout'') AS timeout,
                    sum(e.dpending) AS dpending,
                    (array_agg(e.dpending ORDER BY e.i))[1] AS first_dpending,
                    count(*) FILTER (WHERE e.st <> ''pending'') AS finished,
                    array_agg(e.d ORDER BY e.i) FILTER (WHERE e.st <> ''pending'') AS ds,
                    min(e.d) FILTER (WHERE e.st <> ''pending'') AS min_ms,
                    max(e.d) FILTER (WHERE e.st <> ''pending'') AS max_ms,
                    array_agg(dbal.duration_bucket(e.d)) FILTER (WHERE e.st <> ''pending'') AS buckets
               FROM unnest($2, $3, $4, $5, $6, $7) AS e(i, wf, st, d, dpending, period)
              GROUP BY 1, 2');
        v_periods := CASE v_period.col WHEN 'hour' THEN e_hour ELSE e_day END;
        EXECUTE format('SELECT count(*) FROM (%s) h', v_agg)
           INTO v_groups USING v_tenant, e_i, e_wf, e_st, e_d, e_dpending, v_periods;
        EXECUTE format(
            'UPDATE dbal.%I s
                SET success = s.success + h.success, failure = s.failure + h.failure,
                    pending = s.pending + h.dpending, timeout = s.timeout + h.timeout,
                    finished = s.finished + h.finished, sum_ms = dbal.fold_sum(s.sum_ms, h.ds),
                    min_ms = least(s.min_ms, h.min_ms), max_ms = greatest(s.max_ms, h.max_ms),
                    hist = dbal.hist_add(s.hist, h.buckets)
               FROM (%s) h
              WHERE s.tenant_id = $1 AND s.workflow_id = h.wf AND s.%I = h.period',
            v_period.tbl, v_agg, v_period.col)
           USING v_tenant, e_i, e_wf, e_st, e_d, e_dpending, v_periods;
        GET DIAGNOSTICS v_written = ROW_COUNT;
        v_count := 0;  -- counted from RETURNING: through Citus, ROW_COUNT of an
                       -- INSERT … SELECT counts the rows ON CONFLICT DO NOTHING skipped too
        FOR r IN EXECUTE format(
            'INSERT INTO dbal.%I
                    (tenant_id, workflow_id, %I, success, failure, pending, timeout, finished,
                     sum_ms, min_ms, max_ms, hist)
             SELECT $1, h.wf, h.period, h.success, h.failure,
                    greatest(h.first_dpending, 0) + h.dpending - h.first_dpending, h.timeout,
                    h.finished, dbal.fold_sum(0, h.ds), h.min_ms, h.max_ms,
                    dbal.hist_add(array_fill(0, ARRAY[240]), h.buckets)
               FROM (%s) h
             ON CONFLICT (tenant_id, workflow_id, %I) DO NOTHING
             RETURNING 1',
            v_period.tbl, v_period.col, v_agg, v_period.col)
           USING v_tenant, e_i, e_wf, e_st, e_d, e_dpending, v_periods
        LOOP
            v_count := v_count + 1;
        END LOOP;
        v_rolled_up := v_rolled_up AND v_written + v_count = v_groups;
    END LOOP;
    IF NOT v_rolled_up THEN
        RAISE EXCEPTION USING ERRCODE = 'serialization_failure',
            MESSAGE = 'a roll-up row was deleted while the batch was being recorded';
    END IF;

    --    ...the audit trail...
    INSERT INTO dbal.audit_log (tenant_id, user_id, user_role, operation, workflow_id, details)
    SELECT v_ctx_tenant, v_user, v_role,
           'execution', e.wf,
           CASE WHEN e.completion
                THEN jsonb_build_object('execution_id', e.eid, 'status', e.st,
                                        'duration_ms', e.d, 'completed', true)
                ELSE jsonb_build_object('execution_id', e.eid, 'status', e.st,
                                        'duration_ms', e.d) END
      FROM unnest(e_i, e_wf, e_eid, e_st, e_d, e_completion) AS e(i, wf, eid, st, d, completion)
     ORDER BY e.i, e.completion;

    --    ...and the workflows' counters. last_executed_at/last_execution_status, event by event
    --    as record_one sets them: a new run sets both when it started at or after the last one;
    --    a completion sets the status when its run is the last one. The last event that sets it
    --    gives the status.
    SELECT array_agg(w.id), array_agg(w.last_executed_at)
      INTO l_ids, l_last
      FROM dbal.workflows w
     WHERE w.tenant_id = v_tenant AND w.id = ANY (e_wf);
    UPDATE dbal.workflows w
       SET execution_count = w.execution_count + c.runs,
           finished_execution_count = w.finished_execution_count + c.finished,
           average_execution_time = dbal.fold_mean(w.average_execution_time,
                                                   w.finished_execution_count, c.ds),
           last_executed_at = greatest(w.last_executed_at, c.last_at),
           last_execution_status = coalesce(c.fire_st, w.last_execution_status)
      FROM (WITH ev AS (
                SELECT * FROM unnest(e_i, e_wf, e_st, e_d, e_at, e_completion)
                              AS e(i, wf, st, d, at, completion)
            ), fire AS (
                SELECT DISTINCT ON (f.wf) f.wf, f.st
                  FROM (SELECT ev.wf, ev.i, ev.st, ev.completion, ev.at,
                               greatest(wl.last_executed_at,
                                        max(ev.at) FILTER (WHERE NOT ev.completion)
                                            OVER (PARTITION BY ev.wf ORDER BY ev.i, ev.completion
                                                  ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING))
                                   AS last_before
                          FROM ev JOIN unnest(l_ids, l_last) AS wl(id, last_executed_at)
                                    ON wl.id = ev.wf) f
                 WHERE CASE WHEN f.completion THEN f.last_before = f.at
                            ELSE f.last_before IS NULL OR f.at >= f.last_before END
                 ORDER BY f.wf, f.i DESC, f.completion DESC
            )
            SELECT ev.wf,
                   count(*) FILTER (WHERE NOT ev.completion) AS runs,
                   count(*) FILTER (WHERE ev.st <> 'pending') AS finished,
                   array_agg(ev.d ORDER BY ev.i, ev.completion)
                       FILTER (WHERE ev.st <> 'pending') AS ds,
                   max(ev.at) FILTER (WHERE NOT ev.completion) AS last_at,
                   (SELECT fire.st FROM fire WHERE fire.wf = ev.wf) AS fire_st
              FROM ev GROUP BY ev.wf) c
     WHERE w.tenant_id = v_tenant AND w.id = c.wf;

    --    The outcome of every item, and the completions of executions recorded as pending
    --    before this batch.
    WITH o AS (
        SELECT * FROM unnest(o_i, o_eid, o_st, o_d, o_err, o_bstarted, o_ins_i, o_eff, o_outcome)
                      AS o(i, eid, st, d, err, bstarted, ins_i, eff, outcome)
    ), res AS (
        SELECT g.i::integer AS i,
               CASE WHEN o.outcome IN ('recorded', 'completed', 'duplicate') THEN o.outcome
                    ELSE 'refused' END AS outcome,
               CASE WHEN g.code IS NOT NULL THEN g.code
                    WHEN o.outcome IN ('other_workflow', 'other_status') THEN 409 END AS code,
               CASE WHEN g.code IS NOT NULL THEN g.message
                    WHEN o.outcome = 'other_workflow'
                        THEN 'execution id already recorded for another workflow'
                    WHEN o.outcome = 'other_status'
                        THEN format('execution already recorded as %s', o.eff) END AS message,
               CASE WHEN g.code IS NOT NULL THEN g.details
                    WHEN o.outcome = 'other_workflow'
                        THEN jsonb_build_object('execution_id', o.eid)
                    WHEN o.outcome = 'other_status'
                        THEN jsonb_build_object('execution_id', o.eid, 'status', o.eff) END
                   AS details
          FROM unnest(v_codes, v_messages, v_details) WITH ORDINALITY AS g(code, message, details, i)
          LEFT JOIN o ON o.i = g.i
    ), late AS (
        SELECT array_agg(o.eid) AS ids, array_agg(o.bstarted) AS started,
               array_agg(o.st) AS statuses, array_agg(o.d) AS durations, array_agg(o.err) AS errors,
               array_agg(o.bstarted + make_interval(secs => o.d / 1000.0)) AS finished
          FROM o WHERE o.outcome = 'completed' AND o.ins_i IS NULL
    )
    SELECT (SELECT array_agg(res.outcome ORDER BY res.i) FROM res),
           (SELECT array_agg(res.code ORDER BY res.i) FROM res),
           (SELECT array_agg(res.message ORDER BY res.i) FROM res),
           (SELECT array_agg(res.details ORDER BY res.i) FROM res),
           late.ids, late.started, late.statuses, late.durations, late.errors, late.finished
      INTO v_outcomes, v_codes, v_messages, v_details,
           c_ids, c_started, c_statuses, c_durations, c_errors, c_finished
      FROM late;

    -- 5. Completions of executions recorded as pending before this batch: their row (found by
    --    its key's started_at, so only its partition is touched).
    IF c_ids IS NOT NULL THEN
        UPDATE dbal.workflow_executions e
           SET status = c.st, duration_ms = c.d, finished_at = c.fin, error = c.err
          FROM unnest(c_ids, c_started, c_statuses, c_durations, c_errors, c_finished)
               AS c(eid, started, st, d, err, fin)
         WHERE e.tenant_id = v_tenant AND e.execution_id = c.eid AND e.started_at = c.started;
    END IF;

    RETURN QUERY
    SELECT u.i::integer, u.eid, u.outcome, u.code, u.message, u.details
      FROM unnest(v_ids, v_outcomes, v_codes, v_messages, v_details)
           WITH ORDINALITY AS u(eid, outcome, code, message, details, i);
END
$$;
