-- 43_record_batch.sql — recording many executions of one tenant in one statement.
--
-- record_executions is the batch entry point of pydbal's recorder (pydbal/recorder/): one
-- statement per tenant and batch (on Citus, one call delegated to the tenant's worker), with the
-- guarantees of record_execution (dbal.record_one, sql/41_record_execution.sql) for every item:
--   * idempotent per execution id, within a batch too: a repeated id is 'duplicate', a 'pending'
--     followed by its final status in the same batch is 'completed', so a retried batch counts
--     nothing twice;
--   * fencing per item: an item with a stale token is 'refused' (4233), and only that item;
--   * the rows, the workflow's counters, the roll-ups and the audit trail change in the same
--     transaction;
--   * the outcome of every item, the rows, counters and roll-ups are those of recording the items
--     one by one in array order with record_execution (tests/api/test_recorder.py compares
--     them), except that the whole batch shares one clock reading.
-- It is set-based, not a loop over record_one: the workflows of the batch are locked once (in id
-- order, so concurrent batches and single calls over the same workflows wait for each other
-- instead of deadlocking), the keys are inserted with one INSERT, and the executions, each
-- workflow's counters, each (workflow, hour) and (workflow, day) roll-up and the audit rows are
-- written with one statement each. Floating-point sums (sum_ms, the running mean) are folded in
-- array order with the same operations as one by one, so they agree to the last bit.

SET LOCAL ROLE @owner_role@;

-- fold_sum(start, addends): ((start + a1) + a2) + …, left to right (float8 addition is not
-- associative; this is the order in which one-by-one recording adds).
CREATE FUNCTION dbal.fold_sum(p_start double precision, p_add double precision[])
    RETURNS double precision
    LANGUAGE plpgsql IMMUTABLE
    AS $$
DECLARE
    v double precision := p_start;
    x double precision;
BEGIN
    FOREACH x IN ARRAY coalesce(p_add, '{}') LOOP
        v := v + x;
    END LOOP;
    RETURN v;
END
$$;

-- fold_mean(avg, n, durations): the running mean over finished runs after adding durations one
-- by one to a mean avg of n runs, with record_one's formula.
CREATE FUNCTION dbal.fold_mean(p_avg double precision, p_n bigint, p_add double precision[])
    RETURNS double precision
    LANGUAGE plpgsql IMMUTABLE
    AS $$
DECLARE
    v_avg double precision := p_avg;
    v_n bigint := p_n;
    x double precision;
BEGIN
    FOREACH x IN ARRAY coalesce(p_add, '{}') LOOP
        v_avg := coalesce(v_avg, 0) + (x - coalesce(v_avg, 0)) / (v_n + 1);
        v_n := v_n + 1;
    END LOOP;
    RETURN v_avg;
END
$$;

-- hist_add(hist, buckets): hist with one added to hist[b + 1] for each bucket b.
CREATE FUNCTION dbal.hist_add(p_hist integer[], p_buckets integer[])
    RETURNS integer[]
    LANGUAGE plpgsql IMMUTABLE
    AS $$
DECLARE
    v integer[] := p_hist;
    b integer;
BEGIN
    FOREACH b IN ARRAY coalesce(p_buckets, '{}') LOOP
        v[b + 1] := v[b + 1] + 1;
    END LOOP;
    RETURN v;
END
$$;

-- record_executions(tenant, user, role, workflows[], statuses[], durations[], execution_ids[],
-- tokens[], started_at[], errors[]): records the items in array order and returns one row per
-- item: ord (1-based), execution_id, outcome ('recorded' | 'completed' | 'duplicate' |
-- 'refused') and, for 'refused', code, message and details (those record_execution raises, see
-- record_one). Arrays must have the same length, at most 10000 (else VALIDATION_ERROR 422 for
-- the whole call); NULL elements mean what NULL arguments of record_execution mean. FORBIDDEN
-- (403) without a user and role. A key or roll-up row deleted by retention while the batch is
-- being recorded raises a serialization failure (40001), which the recorder retries.
CREATE FUNCTION dbal.record_executions(
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
DECLARE
    v_tenant text := dbal.enter(p_tenant, p_user, p_role);
    v_n integer := coalesce(cardinality(p_workflows), 0);
    v_user text := dbal.ctx_user();
    v_role text := dbal.ctx_role();
    v_ctx_tenant text := dbal.ctx_tenant();
    v_now timestamptz := clock_timestamp();
    -- per item (array order): execution id, started_at, refusal of step 1 (NULL: valid)
    v_ids text[];
    v_started timestamptz[];
    v_codes integer[];
    v_messages text[];
    v_details jsonb[];
    -- execution ids whose key step 1 inserted; valid ids whose key existed before
    v_new text[];
    v_old text[];
    -- the keys that existed before (locked)
    k_ids text[];
    k_workflows uuid[];
    k_started timestamptz[];
    k_statuses text[];
    -- per item: outcome, and the refusal of step 3 (409)
    v_outcomes text[];
    -- completions of executions recorded as pending before this batch
    c_ids text[];
    c_started timestamptz[];
    c_statuses text[];
    c_durations double precision[];
    c_errors text[];
    v_rolled_up boolean;  -- every (workflow, hour) and (workflow, day) row updated or inserted
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

    -- 1. Lock the batch's workflows (id order). Nothing below changes their lock columns, so
    --    every item is validated and fenced against these rows, as record_one would.
    PERFORM 1 FROM dbal.workflows w
     WHERE w.tenant_id = v_tenant AND w.id = ANY (p_workflows)
     ORDER BY w.id
       FOR UPDATE;

    -- 2. Validate and fence every item (record_one's checks, in its order), and insert the key of
    --    the first valid item of each execution id unless the id is known: the inserted ones are
    --    new executions, the others are looked up in step 3 (a new statement, so it sees keys
    --    that concurrent transactions committed meanwhile, as record_one does).
    WITH u AS MATERIALIZED (
        SELECT u.i::integer AS i, u.wf, u.st, u.d, u.tok,
               coalesce(u.eid, gen_random_uuid()::text) AS eid,
               coalesce(u.sa, v_now - make_interval(secs => coalesce(u.d, 0) / 1000.0)) AS started
          FROM unnest(p_workflows, p_statuses, p_durations, p_execution_ids, p_tokens, p_started_at)
               WITH ORDINALITY AS u(wf, st, d, eid, tok, sa, i)
    ), r AS (
        SELECT u.*, w.id AS found, w.locked_by, w.locked_at,
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
          FROM u
          LEFT JOIN dbal.workflows w ON w.tenant_id = v_tenant AND w.id = u.wf
    ), v AS MATERIALIZED (
        SELECT r.i, r.eid, r.started, r.reason,
               (ARRAY[422, 422, 422, 422, 4041, 4233, 4231])[r.reason] AS code,
               CASE r.reason
                   WHEN 1 THEN format('unknown execution status %L', r.st)
                   WHEN 2 THEN 'duration_ms must be a finite number >= 0 (required for a final status)'
                   WHEN 3 THEN 'execution_id must be 1 to 255 characters'
                   WHEN 4 THEN 'started_at is in the future'
                   WHEN 5 THEN 'workflow not found'
                   WHEN 6 THEN 'the lock token is not the current holder''s'
                   WHEN 7 THEN 'workflow is locked by another user'
               END AS message,
               CASE r.reason
                   WHEN 1 THEN jsonb_build_object('status', r.st)
                   WHEN 2 THEN jsonb_build_object('duration_ms', r.d)
                   WHEN 4 THEN jsonb_build_object('started_at', r.started)
                   WHEN 5 THEN jsonb_build_object('id', r.wf)
                   WHEN 6 THEN jsonb_build_object('id', r.wf, 'token', r.tok)
                   WHEN 7 THEN jsonb_build_object('id', r.wf, 'locked_by', r.locked_by,
                                                  'locked_at', r.locked_at)
               END AS details,
               r.wf, r.st
          FROM r
    ), ins AS (
        INSERT INTO dbal.execution_keys AS k (tenant_id, execution_id, workflow_id, started_at, status)
        SELECT f.tenant_id, f.eid, f.wf, f.started, f.st
          FROM (SELECT DISTINCT ON (v.eid) v_tenant AS tenant_id, v.eid, v.wf, v.started, v.st
                  FROM v WHERE v.reason IS NULL
                 ORDER BY v.eid, v.i) f
        ON CONFLICT ON CONSTRAINT execution_keys_pkey DO NOTHING
        RETURNING k.execution_id
    )
    SELECT array_agg(v.eid ORDER BY v.i), array_agg(v.started ORDER BY v.i),
           array_agg(v.code ORDER BY v.i), array_agg(v.message ORDER BY v.i),
           array_agg(v.details ORDER BY v.i),
           (SELECT coalesce(array_agg(ins.execution_id), '{}') FROM ins),
           (SELECT coalesce(array_agg(x.eid), '{}')
              FROM (SELECT v2.eid FROM v v2 WHERE v2.reason IS NULL
                    EXCEPT SELECT ins.execution_id FROM ins) x)
      INTO v_ids, v_started, v_codes, v_messages, v_details, v_new, v_old
      FROM v;

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

    -- 4. Outcomes, and every write, as one statement. For each execution id, its state before
    --    the batch is its old key or (new id) its first valid item, which is 'recorded'. Later
    --    items of the id are judged against that state as record_one would: another workflow
    --    -> 409; the first final item of the same workflow while the state is 'pending' is the
    --    completion ('completed'); then the same status, or a late 'pending' -> 'duplicate';
    --    another final status -> 409.
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
    ), o AS MATERIALIZED (
        SELECT c.*, s.eff,
               CASE WHEN c.i = c.ins_i THEN 'recorded'
                    WHEN c.wf <> c.bwf THEN 'other_workflow'
                    WHEN c.i = c.c_i THEN 'completed'
                    WHEN s.eff = c.st OR (s.eff <> 'pending' AND c.st = 'pending') THEN 'duplicate'
                    ELSE 'other_status'
               END AS outcome
          FROM c CROSS JOIN LATERAL (SELECT CASE WHEN c.c_i < c.i THEN c.c_st ELSE c.bst END AS eff) s
    ), ev AS MATERIALIZED (  -- what changes counters and roll-ups: new runs and completions
        SELECT o.i, o.wf, o.eid, o.st, o.d, o.started AS at, false AS completion,
               (o.st = 'pending')::integer AS dpending
          FROM o WHERE o.outcome = 'recorded'
        UNION ALL
        SELECT o.i, o.wf, o.eid, o.st, o.d, o.bstarted, true, -1
          FROM o WHERE o.outcome = 'completed'
    ), ie AS (  -- new executions, with their final status when completed in this batch
        INSERT INTO dbal.workflow_executions (tenant_id, workflow_id, execution_id, status,
                                              duration_ms, started_at, finished_at, executed_by, error)
        SELECT v_tenant, o.wf, o.eid, coalesce(o.c_st, o.st),
               CASE WHEN o.c_i IS NOT NULL THEN o.c_d WHEN o.st <> 'pending' THEN o.d END,
               o.started,
               CASE WHEN o.c_i IS NOT NULL THEN o.started + make_interval(secs => o.c_d / 1000.0)
                    WHEN o.st <> 'pending' THEN o.started + make_interval(secs => o.d / 1000.0) END,
               v_user,
               CASE WHEN o.c_i IS NOT NULL THEN o.c_err ELSE o.err END
          FROM o WHERE o.outcome = 'recorded'
         ORDER BY o.i
    ), uk AS (
        UPDATE dbal.execution_keys k SET status = o.st
          FROM o
         WHERE o.outcome = 'completed' AND k.tenant_id = v_tenant AND k.execution_id = o.eid
    ), hourly AS (
        SELECT ev.wf, date_trunc('hour', ev.at, 'UTC') AS period,
               count(*) FILTER (WHERE ev.st = 'success') AS success,
               count(*) FILTER (WHERE ev.st = 'failure') AS failure,
               count(*) FILTER (WHERE ev.st = 'timeout') AS timeout,
               sum(ev.dpending) AS dpending,
               (array_agg(ev.dpending ORDER BY ev.i))[1] AS first_dpending,
               count(*) FILTER (WHERE ev.st <> 'pending') AS finished,
               array_agg(ev.d ORDER BY ev.i) FILTER (WHERE ev.st <> 'pending') AS ds,
               min(ev.d) FILTER (WHERE ev.st <> 'pending') AS min_ms,
               max(ev.d) FILTER (WHERE ev.st <> 'pending') AS max_ms,
               array_agg(dbal.duration_bucket(ev.d)) FILTER (WHERE ev.st <> 'pending') AS buckets
          FROM ev GROUP BY 1, 2
    ), daily AS (
        SELECT ev.wf, date_trunc('day', ev.at, 'UTC') AS period,
               count(*) FILTER (WHERE ev.st = 'success') AS success,
               count(*) FILTER (WHERE ev.st = 'failure') AS failure,
               count(*) FILTER (WHERE ev.st = 'timeout') AS timeout,
               sum(ev.dpending) AS dpending,
               (array_agg(ev.dpending ORDER BY ev.i))[1] AS first_dpending,
               count(*) FILTER (WHERE ev.st <> 'pending') AS finished,
               array_agg(ev.d ORDER BY ev.i) FILTER (WHERE ev.st <> 'pending') AS ds,
               min(ev.d) FILTER (WHERE ev.st <> 'pending') AS min_ms,
               max(ev.d) FILTER (WHERE ev.st <> 'pending') AS max_ms,
               array_agg(dbal.duration_bucket(ev.d)) FILTER (WHERE ev.st <> 'pending') AS buckets
          FROM ev GROUP BY 1, 2
    -- Roll-ups: the rows that exist (in this statement's snapshot) are updated, the others
    -- inserted; no other transaction can insert them meanwhile, since every writer of a
    -- workflow's roll-ups holds its row lock, as this one does. Retention may delete an old
    -- row meanwhile: then neither statement writes it, and the batch is retried (rolled_up). The two tables' statements
    -- differ only in table and period column; keep them in step. A new row is made by its first
    -- event, so its pending count starts at greatest(first, 0) like rollup_add's; sums are
    -- folded from the row's sum in event order.
    ), uh_old AS (
        UPDATE dbal.workflow_stats_hourly s
           SET success = s.success + h.success, failure = s.failure + h.failure,
               pending = s.pending + h.dpending, timeout = s.timeout + h.timeout,
               finished = s.finished + h.finished, sum_ms = dbal.fold_sum(s.sum_ms, h.ds),
               min_ms = least(s.min_ms, h.min_ms), max_ms = greatest(s.max_ms, h.max_ms),
               hist = dbal.hist_add(s.hist, h.buckets)
          FROM hourly h
         WHERE s.tenant_id = v_tenant AND s.workflow_id = h.wf AND s.hour = h.period
        RETURNING 1
    ), uh_new AS (
        INSERT INTO dbal.workflow_stats_hourly
               (tenant_id, workflow_id, hour, success, failure, pending, timeout, finished,
                sum_ms, min_ms, max_ms, hist)
        SELECT v_tenant, h.wf, h.period, h.success, h.failure,
               greatest(h.first_dpending, 0) + h.dpending - h.first_dpending, h.timeout,
               h.finished, dbal.fold_sum(0, h.ds), h.min_ms, h.max_ms,
               dbal.hist_add(array_fill(0, ARRAY[240]), h.buckets)
          FROM hourly h
         WHERE NOT EXISTS (SELECT FROM dbal.workflow_stats_hourly s
                            WHERE s.tenant_id = v_tenant AND s.workflow_id = h.wf
                              AND s.hour = h.period)
        RETURNING 1
    ), ud_old AS (
        UPDATE dbal.workflow_stats_daily s
           SET success = s.success + h.success, failure = s.failure + h.failure,
               pending = s.pending + h.dpending, timeout = s.timeout + h.timeout,
               finished = s.finished + h.finished, sum_ms = dbal.fold_sum(s.sum_ms, h.ds),
               min_ms = least(s.min_ms, h.min_ms), max_ms = greatest(s.max_ms, h.max_ms),
               hist = dbal.hist_add(s.hist, h.buckets)
          FROM daily h
         WHERE s.tenant_id = v_tenant AND s.workflow_id = h.wf AND s.day = h.period
        RETURNING 1
    ), ud_new AS (
        INSERT INTO dbal.workflow_stats_daily
               (tenant_id, workflow_id, day, success, failure, pending, timeout, finished,
                sum_ms, min_ms, max_ms, hist)
        SELECT v_tenant, h.wf, h.period, h.success, h.failure,
               greatest(h.first_dpending, 0) + h.dpending - h.first_dpending, h.timeout,
               h.finished, dbal.fold_sum(0, h.ds), h.min_ms, h.max_ms,
               dbal.hist_add(array_fill(0, ARRAY[240]), h.buckets)
          FROM daily h
         WHERE NOT EXISTS (SELECT FROM dbal.workflow_stats_daily s
                            WHERE s.tenant_id = v_tenant AND s.workflow_id = h.wf
                              AND s.day = h.period)
        RETURNING 1
    ), wl AS (  -- the batch's workflows' last run before the batch
        SELECT w.id, w.last_executed_at
          FROM dbal.workflows w
         WHERE w.tenant_id = v_tenant AND w.id IN (SELECT DISTINCT ev.wf FROM ev)
    ), fire AS (
        -- last_executed_at/last_execution_status, event by event as record_one sets them: a new
        -- run sets both when it started at or after the last one; a completion sets the status
        -- when its run is the last one. The last event that sets it gives the status.
        SELECT DISTINCT ON (f.wf) f.wf, f.st
          FROM (SELECT ev.wf, ev.i, ev.st, ev.completion, ev.at,
                       greatest(wl.last_executed_at,
                                max(ev.at) FILTER (WHERE NOT ev.completion)
                                    OVER (PARTITION BY ev.wf ORDER BY ev.i
                                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING))
                           AS last_before
                  FROM ev JOIN wl ON wl.id = ev.wf) f
         WHERE CASE WHEN f.completion THEN f.last_before = f.at
                    ELSE f.last_before IS NULL OR f.at >= f.last_before END
         ORDER BY f.wf, f.i DESC
    ), counters AS (
        SELECT ev.wf,
               count(*) FILTER (WHERE NOT ev.completion) AS runs,
               count(*) FILTER (WHERE ev.st <> 'pending') AS finished,
               array_agg(ev.d ORDER BY ev.i) FILTER (WHERE ev.st <> 'pending') AS ds,
               max(ev.at) FILTER (WHERE NOT ev.completion) AS last_at
          FROM ev GROUP BY ev.wf
    ), uw AS (
        UPDATE dbal.workflows w
           SET execution_count = w.execution_count + c.runs,
               finished_execution_count = w.finished_execution_count + c.finished,
               average_execution_time = dbal.fold_mean(w.average_execution_time,
                                                       w.finished_execution_count, c.ds),
               last_executed_at = greatest(w.last_executed_at, c.last_at),
               last_execution_status = coalesce(f.st, w.last_execution_status)
          FROM counters c LEFT JOIN fire f ON f.wf = c.wf
         WHERE w.tenant_id = v_tenant AND w.id = c.wf
    ), au AS (
        INSERT INTO dbal.audit_log (tenant_id, user_id, user_role, operation, workflow_id, details)
        SELECT v_ctx_tenant, v_user, v_role,
               'execution', ev.wf,
               CASE WHEN ev.completion
                    THEN jsonb_build_object('execution_id', ev.eid, 'status', ev.st,
                                            'duration_ms', ev.d, 'completed', true)
                    ELSE jsonb_build_object('execution_id', ev.eid, 'status', ev.st,
                                            'duration_ms', ev.d) END
          FROM ev ORDER BY ev.i
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
    ), late AS (  -- completions of executions recorded as pending before this batch
        SELECT array_agg(o.eid) AS ids, array_agg(o.bstarted) AS started,
               array_agg(o.st) AS statuses, array_agg(o.d) AS durations, array_agg(o.err) AS errors
          FROM o WHERE o.outcome = 'completed' AND o.ins_i IS NULL
    )
    SELECT (SELECT array_agg(res.outcome ORDER BY res.i) FROM res),
           (SELECT array_agg(res.code ORDER BY res.i) FROM res),
           (SELECT array_agg(res.message ORDER BY res.i) FROM res),
           (SELECT array_agg(res.details ORDER BY res.i) FROM res),
           late.ids, late.started, late.statuses, late.durations, late.errors,
           (SELECT count(*) FROM uh_old) + (SELECT count(*) FROM uh_new)
               = (SELECT count(*) FROM hourly)
           AND (SELECT count(*) FROM ud_old) + (SELECT count(*) FROM ud_new)
               = (SELECT count(*) FROM daily)
      INTO v_outcomes, v_codes, v_messages, v_details,
           c_ids, c_started, c_statuses, c_durations, c_errors, v_rolled_up
      FROM late;
    IF NOT v_rolled_up THEN
        RAISE EXCEPTION USING ERRCODE = 'serialization_failure',
            MESSAGE = 'a roll-up row was deleted while the batch was being recorded';
    END IF;

    -- 5. Completions of executions recorded as pending before this batch: their row (found by
    --    its key's started_at, so only its partition is touched).
    IF c_ids IS NOT NULL THEN
        UPDATE dbal.workflow_executions e
           SET status = c.st, duration_ms = c.d,
               finished_at = e.started_at + make_interval(secs => c.d / 1000.0), error = c.err
          FROM unnest(c_ids, c_started, c_statuses, c_durations, c_errors) AS c(eid, started, st, d, err)
         WHERE e.tenant_id = v_tenant AND e.execution_id = c.eid AND e.started_at = c.started;
    END IF;

    RETURN QUERY
    SELECT u.i::integer, u.eid, u.outcome, u.code, u.message, u.details
      FROM unnest(v_ids, v_outcomes, v_codes, v_messages, v_details)
           WITH ORDINALITY AS u(eid, outcome, code, message, details, i);
END
$$;

REVOKE ALL ON FUNCTION dbal.fold_sum(double precision, double precision[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbal.fold_mean(double precision, bigint, double precision[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbal.hist_add(integer[], integer[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbal.record_executions(text, text, text, uuid[], text[],
    double precision[], text[], bigint[], timestamptz[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dbal.record_executions(text, text, text, uuid[], text[],
    double precision[], text[], bigint[], timestamptz[], text[]) TO @app_role@;

RESET ROLE;
