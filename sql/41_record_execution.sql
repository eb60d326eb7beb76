-- 41_record_execution.sql — recording an execution: the row, the counters and the roll-up in
-- one transaction.

SET LOCAL ROLE @owner_role@;

-- rollup_add(...): adds one execution to its hour in workflow_stats_hourly and its day in
-- workflow_stats_daily (UTC). A new run adds one to p_status's count; p_from_pending = true moves a
-- run recorded as pending to p_status. A finished run with a duration also adds to finished, sum,
-- min, max and its histogram bucket.
CREATE FUNCTION dbal.rollup_add(
        p_tenant text, p_workflow uuid, p_started_at timestamptz, p_status text,
        p_duration_ms double precision, p_from_pending boolean)
    RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_final boolean := p_status <> 'pending' AND p_duration_ms IS NOT NULL;
    v_bucket integer := CASE WHEN v_final THEN dbal.duration_bucket(p_duration_ms) ELSE 0 END;
    v_fin integer := v_final::integer;
    v_success integer := (p_status = 'success')::integer;
    v_failure integer := (p_status = 'failure')::integer;
    v_timeout integer := (p_status = 'timeout')::integer;
    v_pending integer := CASE WHEN p_status = 'pending' THEN 1 WHEN p_from_pending THEN -1 ELSE 0 END;
    v_sum double precision := CASE WHEN v_final THEN p_duration_ms ELSE 0 END;
    v_ms double precision := CASE WHEN v_final THEN p_duration_ms END;
    v_hist integer[] := array_fill(0, ARRAY[v_bucket]) || v_fin || array_fill(0, ARRAY[239 - v_bucket]);
BEGIN
    -- The two statements differ only in table and period column; keep them in step.
    INSERT INTO dbal.workflow_stats_hourly AS s
           (tenant_id, workflow_id, hour, success, failure, pending, timeout, finished,
            sum_ms, min_ms, max_ms, hist)
    VALUES (p_tenant, p_workflow, date_trunc('hour', p_started_at, 'UTC'), v_success, v_failure,
            greatest(v_pending, 0), v_timeout, v_fin, v_sum, v_ms, v_ms, v_hist)
    ON CONFLICT (tenant_id, workflow_id, hour) DO UPDATE SET
        success = s.success + v_success, failure = s.failure + v_failure,
        pending = s.pending + v_pending, timeout = s.timeout + v_timeout,
        finished = s.finished + v_fin, sum_ms = s.sum_ms + v_sum,
        min_ms = least(s.min_ms, v_ms), max_ms = greatest(s.max_ms, v_ms),
        hist[v_bucket + 1] = s.hist[v_bucket + 1] + v_fin;
    INSERT INTO dbal.workflow_stats_daily AS s
           (tenant_id, workflow_id, day, success, failure, pending, timeout, finished,
            sum_ms, min_ms, max_ms, hist)
    VALUES (p_tenant, p_workflow, date_trunc('day', p_started_at, 'UTC'), v_success, v_failure,
            greatest(v_pending, 0), v_timeout, v_fin, v_sum, v_ms, v_ms, v_hist)
    ON CONFLICT (tenant_id, workflow_id, day) DO UPDATE SET
        success = s.success + v_success, failure = s.failure + v_failure,
        pending = s.pending + v_pending, timeout = s.timeout + v_timeout,
        finished = s.finished + v_fin, sum_ms = s.sum_ms + v_sum,
        min_ms = least(s.min_ms, v_ms), max_ms = greatest(s.max_ms, v_ms),
        hist[v_bucket + 1] = s.hist[v_bucket + 1] + v_fin;
END
$$;

-- record_one(tenant, workflow, status, duration_ms, execution_id, token, started_at, error):
-- records one execution; record_execution calls it. record_executions (a batch,
-- sql/43_record_batch.sql) implements the same rules set-based, with the same outcomes, rows,
-- counters and roll-ups as calling this for each item in order (tests/api/test_recorder.py
-- checks they agree: change both together). Internal: executable by no
-- one but the owner; the caller has set the request context (dbal.enter) and checked that it has
-- a user and a role. Returns the execution id and an outcome:
--   'recorded'   a new execution: row inserted, counters and roll-up updated;
--   'completed'  a 'pending' execution got its final status (counted once, moved in the roll-up);
--   'duplicate'  the execution id was recorded already with this status (or finished already and
--                this is a late 'pending'): nothing changed;
--   'refused'    nothing changed, and o_code/o_message/o_details say why, with the codes
--                record_execution raises: 422 bad input, 4041 workflow not found (or another
--                tenant's), 4233 a token that is not the current holder's, 4231 locked by another
--                user (no token given), 409 an execution id recorded with another final status or
--                for another workflow.
-- Refusals are returned, not raised, so one bad item of a batch refuses only that item.
-- With a token, the caller must hold the lock with that token and user: a worker whose lease
-- expired cannot write results. started_at defaults to now - duration and may be in the past
-- (imports), not more than 5 minutes in the future.
-- Counters: execution_count counts executions; average_execution_time is the running mean over
-- finished runs; last_executed_at/last_execution_status follow the latest started_at.
CREATE FUNCTION dbal.record_one(
        p_tenant text,
        p_workflow uuid,
        p_status text,
        p_duration_ms double precision,
        p_execution_id text,
        p_token bigint,
        p_started_at timestamptz,
        p_error text,
        OUT o_execution_id text, OUT o_outcome text,
        OUT o_code integer, OUT o_message text, OUT o_details jsonb)
    LANGUAGE plpgsql
    AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz := clock_timestamp();
    v_id text := coalesce(p_execution_id, gen_random_uuid()::text);
    v_started timestamptz;
    v_final boolean := p_status <> 'pending';
    v_key dbal.execution_keys;
    w dbal.workflows;
BEGIN
    o_execution_id := v_id;
    o_outcome := 'refused';
    IF p_status IS NULL OR p_status NOT IN ('success', 'failure', 'pending', 'timeout') THEN
        o_code := 422; o_message := format('unknown execution status %L', p_status);
        o_details := jsonb_build_object('status', p_status);
        RETURN;
    END IF;
    IF p_duration_ms < 0 OR p_duration_ms = 'NaN'::float8 OR p_duration_ms = 'Infinity'::float8
       OR (v_final AND p_duration_ms IS NULL) THEN
        o_code := 422;
        o_message := 'duration_ms must be a finite number >= 0 (required for a final status)';
        o_details := jsonb_build_object('duration_ms', p_duration_ms);
        RETURN;
    END IF;
    IF length(v_id) NOT BETWEEN 1 AND 255 THEN
        o_code := 422; o_message := 'execution_id must be 1 to 255 characters';
        RETURN;
    END IF;
    v_started := coalesce(p_started_at,
                          v_now - make_interval(secs => coalesce(p_duration_ms, 0) / 1000.0));
    IF v_started > v_now + interval '5 minutes' THEN
        o_code := 422; o_message := 'started_at is in the future';
        o_details := jsonb_build_object('started_at', v_started);
        RETURN;
    END IF;

    SELECT * INTO w FROM dbal.workflows
     WHERE tenant_id = p_tenant AND id = p_workflow
       FOR UPDATE;
    IF NOT FOUND THEN
        o_code := 4041; o_message := 'workflow not found';
        o_details := jsonb_build_object('id', p_workflow);
        RETURN;
    END IF;
    IF p_token IS NOT NULL THEN
        IF NOT coalesce(dbal.lease_live(w.is_locked, w.lock_expires_at, v_now)
                        AND w.lock_token = p_token AND w.locked_by = dbal.ctx_user(), false) THEN
            o_code := 4233; o_message := 'the lock token is not the current holder''s';
            o_details := jsonb_build_object('id', w.id, 'token', p_token);
            RETURN;
        END IF;
    ELSIF dbal.lease_live(w.is_locked, w.lock_expires_at, v_now)
          AND w.locked_by IS DISTINCT FROM dbal.ctx_user() THEN
        o_code := 4231; o_message := 'workflow is locked by another user';
        o_details := jsonb_build_object('id', w.id, 'locked_by', w.locked_by,
                                        'locked_at', w.locked_at);
        RETURN;
    END IF;

    INSERT INTO dbal.execution_keys AS k (tenant_id, execution_id, workflow_id, started_at, status)
    VALUES (p_tenant, v_id, w.id, v_started, p_status)
    ON CONFLICT (tenant_id, execution_id) DO NOTHING;

    IF NOT FOUND THEN
        SELECT * INTO v_key FROM dbal.execution_keys k
         WHERE k.tenant_id = p_tenant AND k.execution_id = v_id FOR UPDATE;
        IF v_key.workflow_id <> w.id THEN
            o_code := 409; o_message := 'execution id already recorded for another workflow';
            o_details := jsonb_build_object('execution_id', v_id);
            RETURN;
        END IF;
        IF v_key.status = p_status OR (v_key.status <> 'pending' AND p_status = 'pending') THEN
            o_outcome := 'duplicate';
            RETURN;
        END IF;
        IF v_key.status <> 'pending' THEN
            o_code := 409; o_message := format('execution already recorded as %s', v_key.status);
            o_details := jsonb_build_object('execution_id', v_id, 'status', v_key.status);
            RETURN;
        END IF;
        -- complete a pending execution
        UPDATE dbal.execution_keys k SET status = p_status
         WHERE k.tenant_id = p_tenant AND k.execution_id = v_id;
        UPDATE dbal.workflow_executions e
           SET status = p_status, duration_ms = p_duration_ms,
               finished_at = e.started_at + make_interval(secs => p_duration_ms / 1000.0),
               error = p_error
         WHERE e.tenant_id = p_tenant AND e.execution_id = v_id AND e.started_at = v_key.started_at;
        PERFORM dbal.rollup_add(p_tenant, w.id, v_key.started_at, p_status, p_duration_ms, true);
        UPDATE dbal.workflows
           SET finished_execution_count = w.finished_execution_count + 1,
               average_execution_time = coalesce(w.average_execution_time, 0)
                   + (p_duration_ms - coalesce(w.average_execution_time, 0)) / (w.finished_execution_count + 1),
               last_execution_status = CASE WHEN w.last_executed_at = v_key.started_at
                                            THEN p_status ELSE w.last_execution_status END
         WHERE tenant_id = p_tenant AND id = w.id;
        PERFORM dbal.audit('execution', w.id, jsonb_build_object(
            'execution_id', v_id, 'status', p_status, 'duration_ms', p_duration_ms, 'completed', true));
        o_outcome := 'completed';
        RETURN;
    END IF;

    INSERT INTO dbal.workflow_executions (tenant_id, workflow_id, execution_id, status, duration_ms,
                                          started_at, finished_at, executed_by, error)
    VALUES (p_tenant, w.id, v_id, p_status, CASE WHEN v_final THEN p_duration_ms END, v_started,
            CASE WHEN v_final THEN v_started + make_interval(secs => p_duration_ms / 1000.0) END,
            dbal.ctx_user(), p_error);
    PERFORM dbal.rollup_add(p_tenant, w.id, v_started, p_status, p_duration_ms, false);
    UPDATE dbal.workflows
       SET execution_count = w.execution_count + 1,
           finished_execution_count = w.finished_execution_count + v_final::integer,
           average_execution_time = CASE WHEN v_final
               THEN coalesce(w.average_execution_time, 0)
                    + (p_duration_ms - coalesce(w.average_execution_time, 0)) / (w.finished_execution_count + 1)
               ELSE w.average_execution_time END,
           last_executed_at = CASE WHEN w.last_executed_at IS NULL OR v_started >= w.last_executed_at
                                   THEN v_started ELSE w.last_executed_at END,
           last_execution_status = CASE WHEN w.last_executed_at IS NULL OR v_started >= w.last_executed_at
                                        THEN p_status ELSE w.last_execution_status END
     WHERE tenant_id = p_tenant AND id = w.id;
    PERFORM dbal.audit('execution', w.id, jsonb_build_object(
        'execution_id', v_id, 'status', p_status, 'duration_ms', p_duration_ms));
    o_outcome := 'recorded';
END
$$;

-- record_execution(workflow, status, duration_ms, execution_id, token, started_at, error):
-- records one execution through record_one and returns its id and outcome ('recorded',
-- 'completed', 'duplicate'); a refusal is raised with its code (422, 4041, 4231, 4233, 409).
-- FORBIDDEN (403) without a user and a role. For many executions use record_executions.
CREATE FUNCTION dbal.record_execution(
        p_workflow uuid,
        p_status text,
        p_duration_ms double precision,
        p_execution_id text DEFAULT NULL,
        p_token bigint DEFAULT NULL,
        p_started_at timestamptz DEFAULT NULL,
        p_error text DEFAULT NULL,
        p_tenant text DEFAULT NULL, p_user text DEFAULT NULL, p_role text DEFAULT NULL)
    RETURNS TABLE (execution_id text, outcome text)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_tenant text := dbal.enter(p_tenant, p_user, p_role);
    r record;
BEGIN
    IF dbal.ctx_role() IS NULL OR dbal.ctx_user() IS NULL THEN
        PERFORM dbal.raise_error(403, 'a user and a role are required to record an execution');
    END IF;
    r := dbal.record_one(v_tenant, p_workflow, p_status, p_duration_ms, p_execution_id, p_token,
                         p_started_at, p_error);
    IF r.o_code IS NOT NULL THEN
        PERFORM dbal.raise_error(r.o_code, r.o_message, r.o_details);
    END IF;
    RETURN QUERY SELECT r.o_execution_id, r.o_outcome;
END
$$;

RESET ROLE;
