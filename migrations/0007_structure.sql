-- 0007_structure.sql — one home per rule (issue 10); the text of the sql/ files named below.
--
-- * New helpers, each the one home of its rule: dbal.roles() and dbal.admin_roles()
--   (sql/01_context.sql); dbal.lease_live(), dbal.lease_expired() and dbal.visible_or_4041()
--   (sql/20_workflow_helpers.sql); executable by the application role.
-- * dbal.enter is the one implementation of the request context; dbal.enter_app is it after the
--   switch to the application role, so an empty tenant is VALIDATION_ERROR (422) in both (it was
--   FORBIDDEN in enter_app).
-- * Every function that wrote a role list, the live-lock test or the "not visible → 4041" check
--   out now calls the helper: ctx_role, ctx_is_admin, workflow_for_update, acquire_lock_lease,
--   renew_lock_lease, clear_expired_locks, record_one, execution_stats, record_executions,
--   filter_sql, changeable_sql, writable, api_list, api_history, api_executions.
-- * dbal.prune_batch deletes every kind with one statement shape from a list of tables
--   (sql/44_retention.sql) instead of one written-out DELETE per table.
-- CREATE OR REPLACE keeps owners and grants.

SET LOCAL ROLE @owner_role@;

CREATE FUNCTION dbal.roles() RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT ARRAY['user', 'admin', 'god', 'supergod'] $$;

CREATE FUNCTION dbal.admin_roles() RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT ARRAY['admin', 'god', 'supergod'] $$;

CREATE FUNCTION dbal.lease_live(p_locked boolean, p_expires_at timestamptz, p_at timestamptz)
    RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT p_locked AND p_expires_at > p_at $$;

CREATE FUNCTION dbal.lease_expired(p_locked boolean, p_expires_at timestamptz, p_at timestamptz)
    RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT p_locked AND p_expires_at <= p_at $$;

CREATE FUNCTION dbal.visible_or_4041(p_tenant text, p_id uuid, p_for_update boolean DEFAULT false)
    RETURNS dbal.workflows
    LANGUAGE plpgsql
    AS $$
DECLARE
    w dbal.workflows;
BEGIN
    IF p_for_update THEN
        SELECT * INTO w FROM dbal.workflows x WHERE x.tenant_id = p_tenant AND x.id = p_id FOR UPDATE;
    ELSE
        SELECT * INTO w FROM dbal.workflows x WHERE x.tenant_id = p_tenant AND x.id = p_id;
    END IF;
    IF NOT FOUND THEN
        PERFORM dbal.raise_error(4041, 'workflow not found', jsonb_build_object('id', p_id));
    END IF;
    RETURN w;
END
$$;

CREATE OR REPLACE FUNCTION dbal.ctx_role() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
        SELECT r FROM (SELECT NULLIF(current_setting('dbal.user_role', true), '') AS r) s
        WHERE r = ANY (dbal.roles())
    $$;

CREATE OR REPLACE FUNCTION dbal.ctx_is_admin() RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT coalesce(dbal.ctx_role() = ANY (dbal.admin_roles()), false) $$;

CREATE OR REPLACE FUNCTION dbal.enter(p_tenant text, p_user text DEFAULT NULL, p_role text DEFAULT NULL)
    RETURNS text
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_current text := dbal.ctx_tenant();
BEGIN
    IF p_tenant = '' THEN
        PERFORM dbal.raise_error(422, 'tenant id must not be empty');
    END IF;
    IF v_current <> p_tenant THEN
        PERFORM dbal.raise_error(4034, 'tenant argument does not match the request context',
                                 jsonb_build_object('context', v_current, 'argument', p_tenant));
    END IF;
    IF p_role <> ALL (dbal.roles()) THEN
        PERFORM dbal.raise_error(403, format('unknown role %L', p_role));
    END IF;
    v_current := coalesce(p_tenant, v_current);
    IF v_current IS NULL THEN
        PERFORM dbal.raise_error(403, 'no tenant context: call through pydbal or set dbal.tenant_id');
    END IF;
    PERFORM set_config('dbal.tenant_id', v_current, true);
    IF p_user IS NOT NULL THEN
        PERFORM set_config('dbal.user_id', p_user, true);
    END IF;
    IF p_role IS NOT NULL THEN
        PERFORM set_config('dbal.user_role', p_role, true);
    END IF;
    RETURN v_current;
END
$$;

CREATE OR REPLACE FUNCTION dbal.enter_app(p_tenant text, p_user text, p_role text) RETURNS text
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF current_user::text NOT IN ('@app_role@', '@owner_role@') THEN
        PERFORM set_config('role', '@app_role@', true);
    END IF;
    IF p_tenant IS NULL OR p_user IS NULL OR p_role IS NULL THEN
        PERFORM dbal.raise_error(403, 'tenant, user and role are required');
    END IF;
    RETURN dbal.enter(p_tenant, p_user, p_role);
END
$$;

CREATE OR REPLACE FUNCTION dbal.workflow_for_update(p_tenant text, p_workflow uuid)
    RETURNS dbal.workflows
    LANGUAGE sql
    AS $$ SELECT dbal.visible_or_4041(p_tenant, p_workflow, true) $$;

CREATE OR REPLACE FUNCTION dbal.acquire_lock_lease(
        p_workflow uuid,
        p_timeout_ms integer DEFAULT 30000,
        p_tenant text DEFAULT NULL, p_user text DEFAULT NULL, p_role text DEFAULT NULL)
    RETURNS TABLE (token bigint, expires_at timestamptz)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_tenant text := dbal.enter(p_tenant, p_user, p_role);
    v_now timestamptz := clock_timestamp();
    v_status text;
    w dbal.workflows;
BEGIN
    IF dbal.ctx_role() IS NULL OR dbal.ctx_user() IS NULL THEN
        PERFORM dbal.raise_error(403, 'a user and a role are required to lock a workflow');
    END IF;
    PERFORM dbal.check_lease(p_timeout_ms);
    w := dbal.workflow_for_update(v_tenant, p_workflow);
    IF NOT w.enabled THEN
        PERFORM dbal.raise_error(4042, 'workflow is disabled', jsonb_build_object('id', w.id));
    END IF;
    v_status := dbal.effective_validation_status(w.validation_status, w.valid_until, w.validator_version);
    IF v_status <> 'valid' THEN
        PERFORM dbal.raise_error(4243, format('workflow validation is %s, not valid', v_status),
                                 jsonb_build_object('id', w.id, 'validation_status', v_status,
                                                    'valid_until', w.valid_until,
                                                    'validator_version', w.validator_version));
    END IF;
    IF dbal.lease_live(w.is_locked, w.lock_expires_at, v_now) THEN
        RETURN;
    END IF;
    IF w.is_locked THEN
        PERFORM dbal.audit('lock_expired', w.id,
                           jsonb_build_object('holder', w.locked_by, 'token', w.lock_token,
                                              'expired_at', w.lock_expires_at));
    END IF;
    UPDATE dbal.workflows
       SET is_locked = true, locked_by = dbal.ctx_user(), locked_at = v_now,
           lock_expires_at = v_now + make_interval(secs => p_timeout_ms / 1000.0),
           lock_token = w.lock_token + 1
     WHERE tenant_id = v_tenant AND id = w.id;
    PERFORM dbal.audit('lock_acquire', w.id, jsonb_build_object('token', w.lock_token + 1,
                                                                  'timeout_ms', p_timeout_ms));
    RETURN QUERY SELECT w.lock_token + 1, v_now + make_interval(secs => p_timeout_ms / 1000.0);
END
$$;

CREATE OR REPLACE FUNCTION dbal.renew_lock_lease(
        p_workflow uuid, p_token bigint, p_timeout_ms integer DEFAULT 30000,
        p_tenant text DEFAULT NULL, p_user text DEFAULT NULL, p_role text DEFAULT NULL)
    RETURNS timestamptz
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_tenant text := dbal.enter(p_tenant, p_user, p_role);
    v_now timestamptz := clock_timestamp();
    w dbal.workflows;
BEGIN
    PERFORM dbal.check_lease(p_timeout_ms);
    w := dbal.workflow_for_update(v_tenant, p_workflow);
    IF NOT coalesce(dbal.lease_live(w.is_locked, w.lock_expires_at, v_now)
                    AND w.lock_token = p_token AND w.locked_by = dbal.ctx_user(), false) THEN
        RETURN NULL;
    END IF;
    UPDATE dbal.workflows
       SET lock_expires_at = v_now + make_interval(secs => p_timeout_ms / 1000.0)
     WHERE tenant_id = v_tenant AND id = w.id;
    RETURN v_now + make_interval(secs => p_timeout_ms / 1000.0);
END
$$;

CREATE OR REPLACE FUNCTION dbal.clear_expired_locks(p_tenant text) RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_count integer;
BEGIN
    WITH cleared AS (
        UPDATE dbal.workflows w
           SET is_locked = false, locked_by = NULL, locked_at = NULL, lock_expires_at = NULL
          FROM (SELECT tenant_id, id, locked_by, lock_token, lock_expires_at
                  FROM dbal.workflows
                 WHERE dbal.lease_expired(is_locked, lock_expires_at, clock_timestamp())
                   AND (p_tenant IS NULL OR tenant_id = p_tenant)
                   FOR UPDATE) old
         WHERE w.tenant_id = old.tenant_id AND w.id = old.id
        RETURNING old.*
    ), audited AS (
        INSERT INTO dbal.audit_log (tenant_id, user_id, user_role, operation, workflow_id, details)
        SELECT c.tenant_id, coalesce(dbal.ctx_user(), session_user::text), dbal.ctx_role(),
               'lock_expired', c.id,
               jsonb_build_object('holder', c.locked_by, 'token', c.lock_token,
                                  'expired_at', c.lock_expires_at)
          FROM cleared c
        RETURNING 1
    )
    SELECT count(*) INTO v_count FROM audited;
    RETURN v_count;
END
$$;

CREATE OR REPLACE FUNCTION dbal.record_one(
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

CREATE OR REPLACE FUNCTION dbal.execution_stats(
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

CREATE OR REPLACE FUNCTION dbal.filter_sql(p_filter jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE
    AS $$
DECLARE
    v_parts text[] := ARRAY['true'];
    v_key text;
    v_value jsonb;
    v_list text[];  -- the value as a list of texts (a single value: a list of one)
BEGIN
    IF p_filter IS NULL OR p_filter = 'null'::jsonb THEN
        RETURN 'true';
    END IF;
    IF jsonb_typeof(p_filter) <> 'object' THEN
        PERFORM dbal.raise_error(422, 'filter must be an object');
    END IF;
    FOR v_key, v_value IN SELECT key, value FROM jsonb_each(p_filter) LOOP
        CONTINUE WHEN v_value = 'null'::jsonb;
        v_list := CASE WHEN jsonb_typeof(v_value) = 'array'
                       THEN ARRAY(SELECT jsonb_array_elements_text(v_value))
                       ELSE ARRAY[v_value #>> '{}'] END;
        CASE v_key
        WHEN 'enabled' THEN
            v_parts := v_parts || format('w.enabled = %L::boolean', v_value #>> '{}');
        WHEN 'archived' THEN
            v_parts := v_parts || format('(w.archived_at IS NOT NULL) = %L::boolean',
                                         v_value #>> '{}');
        WHEN 'is_locked' THEN
            v_parts := v_parts || format(
                'dbal.lease_live(w.is_locked, w.lock_expires_at, clock_timestamp()) = %L::boolean',
                v_value #>> '{}');
        WHEN 'category', 'created_by', 'name', 'last_execution_status' THEN
            v_parts := v_parts || format('w.%I = ANY (%L::text[])', v_key, v_list);
        WHEN 'validation_status' THEN
            v_parts := v_parts || format(
                'dbal.effective_validation_status(w.validation_status, w.valid_until, '
                'w.validator_version) = ANY (%L::text[])', v_list);
        WHEN 'ids' THEN
            v_parts := v_parts || format('w.id = ANY (%L::uuid[])',
                ARRAY(SELECT jsonb_array_elements_text(v_value)));
        WHEN 'tags' THEN
            v_parts := v_parts || format('w.tags OPERATOR(dbal.&&) %L::text[]', v_list);
        WHEN 'search' THEN
            v_parts := v_parts || format(
                'w.search_document OPERATOR(dbal.@@) websearch_to_tsquery(''english''::regconfig, %L)',
                dbal.check_search(v_value #>> '{}', 'filter.search'));
        ELSE
            PERFORM dbal.raise_error(422, format('unknown filter field %L', v_key),
                                     jsonb_build_object('field', v_key));
        END CASE;
    END LOOP;
    RETURN array_to_string(v_parts, ' AND ');
END
$$;

CREATE OR REPLACE FUNCTION dbal.changeable_sql() RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$
        SELECT '(dbal.ctx_is_admin() OR w.created_by = dbal.ctx_user())'
               ' AND NOT (dbal.lease_live(w.is_locked, w.lock_expires_at, clock_timestamp())'
               ' AND w.locked_by <> dbal.ctx_user())'
    $$;

CREATE OR REPLACE FUNCTION dbal.writable(p_tenant text, p_id uuid) RETURNS dbal.workflows
    LANGUAGE plpgsql
    AS $$
DECLARE
    w dbal.workflows;
BEGIN
    w := dbal.visible_or_4041(p_tenant, p_id);
    IF NOT (dbal.ctx_is_admin() OR w.created_by = dbal.ctx_user()) THEN
        PERFORM dbal.raise_error(403, 'only its creator or an admin may change this workflow',
                                 jsonb_build_object('id', p_id));
    END IF;
    SELECT * INTO w FROM dbal.workflows x WHERE x.tenant_id = p_tenant AND x.id = p_id FOR UPDATE;
    IF dbal.lease_live(w.is_locked, w.lock_expires_at, clock_timestamp())
       AND w.locked_by <> dbal.ctx_user() THEN
        PERFORM dbal.raise_error(4231, 'workflow is locked by another user',
                                 jsonb_build_object('id', p_id, 'locked_by', w.locked_by,
                                                    'locked_at', w.locked_at,
                                                    'lock_expires_at', w.lock_expires_at));
    END IF;
    RETURN w;
END
$$;

CREATE OR REPLACE FUNCTION dbal.api_list(
        p_tenant text, p_user text, p_role text, p_filter jsonb, p_sort text, p_desc boolean,
        p_offset integer, p_limit integer, p_after_key text DEFAULT NULL,
        p_after_id uuid DEFAULT NULL)
    RETURNS TABLE (
        id uuid, tenant_id text, name text, description text, nodes jsonb, edges jsonb,
        enabled boolean, version integer, execution_count bigint, last_executed_at timestamptz,
        last_execution_status text, average_execution_time double precision,
        created_at timestamptz, updated_at timestamptz, created_by text, updated_by text,
        variables jsonb, config jsonb, tags text[], category text, validation_status text,
        validation_errors jsonb, validated_at timestamptz, valid_until timestamptz,
        validator_version integer, is_locked boolean, locked_by text, locked_at timestamptz,
        lock_expires_at timestamptz, archived_at timestamptz,
        total bigint, total_exact boolean, has_more boolean)
    LANGUAGE plpgsql
    -- the static statements' plans are made once per session (custom plans were re-made on
    -- every call: ~0.2 ms of a 0.4 ms page)
    SET plan_cache_mode = force_generic_plan
    AS $$
#variable_conflict use_column
DECLARE
    c_cap constant integer := 1000;  -- filtered totals are exact up to this many matches
    v_where text;
    v_dir text := CASE WHEN p_desc THEN 'DESC' ELSE 'ASC' END;
    v_op text := CASE WHEN p_desc THEN '<' ELSE '>' END;
    v_type text;
    v_archived boolean;
    v_plain boolean;
    v_total bigint;
    v_exact boolean := true;
    v_ts timestamptz;
    v_id uuid;
    v_ids uuid[];
BEGIN
    PERFORM dbal.enter_app(p_tenant, p_user, p_role);
    v_type := CASE p_sort WHEN 'name' THEN 'text' WHEN 'execution_count' THEN 'bigint'
                          WHEN 'created_at' THEN 'timestamptz' WHEN 'updated_at' THEN 'timestamptz'
                          WHEN 'last_executed_at' THEN 'timestamptz' END;
    IF v_type IS NULL THEN
        PERFORM dbal.raise_error(422, format('unknown sort field %L', p_sort),
                                 jsonb_build_object('field', p_sort));
    END IF;
    IF p_limit NOT BETWEEN 1 AND 1000 OR p_offset < 0 THEN
        PERFORM dbal.raise_error(422, 'limit must be 1..1000 and offset >= 0');
    END IF;
    PERFORM dbal.within(p_offset::bigint + p_limit, 'page', 'list_window');
    IF p_filter IS NULL OR p_filter IN ('{}'::jsonb, 'null'::jsonb) THEN
        v_archived := false;
        v_plain := true;
    ELSE
        v_where := dbal.filter_sql(p_filter);
        v_archived := coalesce((p_filter ->> 'archived')::boolean, false);
        v_plain := NOT EXISTS (SELECT FROM jsonb_each(p_filter) e
                                WHERE e.key <> 'archived' AND e.value <> 'null');
        IF v_archived THEN
            PERFORM set_config('dbal.archived', 'visible', true);
        END IF;
    END IF;
    IF v_plain THEN
        SELECT CASE WHEN v_archived THEN c.archived ELSE c.live END INTO v_total
          FROM dbal.tenant_counters c WHERE c.tenant_id = p_tenant;
        v_total := coalesce(v_total, 0);
    ELSE
        -- one pass over at most c_cap + 1 matches (in any order, e.g. from a bitmap of the
        -- filter's index): how many there are and, when that is all of them, the page among them
        EXECUTE format(
            'WITH m AS MATERIALIZED (SELECT w.id, w.%1$I AS k FROM dbal.workflows w
                                      WHERE w.tenant_id = $1 AND %2$s LIMIT $6)
             SELECT (SELECT count(*) FROM m),
                    ARRAY(SELECT m.id FROM m WHERE %3$s
                           ORDER BY m.k %4$s NULLS LAST, m.id %4$s OFFSET $2 LIMIT $3)',
            p_sort, v_where,
            CASE WHEN p_after_id IS NULL THEN 'true'
                 WHEN p_after_key IS NULL THEN format('m.k IS NULL AND m.id %s $5', v_op)
                 ELSE format('(m.k IS NULL OR (m.k, m.id) %s ($4::%s, $5))', v_op, v_type) END,
            v_dir)
           INTO v_total, v_ids
          USING p_tenant, p_offset, p_limit + 1, p_after_key, p_after_id, c_cap + 1;
        v_exact := v_total <= c_cap;
        v_total := least(v_total, c_cap);
    END IF;

    IF v_exact AND NOT v_plain THEN
        NULL;  -- the page was read with the count
    ELSIF v_plain AND NOT v_archived AND p_sort IN ('created_at', 'updated_at') THEN
        -- before the first row: a key past every row (±infinity with the extreme id)
        IF p_after_id IS NULL THEN
            v_ts := CASE WHEN p_desc THEN 'infinity'::timestamptz ELSE '-infinity' END;
            v_id := CASE WHEN p_desc THEN 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid
                         ELSE '00000000-0000-0000-0000-000000000000' END;
        ELSE
            v_ts := p_after_key::timestamptz;
            v_id := p_after_id;
        END IF;
        IF p_sort = 'created_at' AND p_desc THEN
            v_ids := ARRAY(SELECT w.id FROM dbal.workflows w
                            WHERE w.tenant_id = p_tenant AND (w.created_at, w.id) < (v_ts, v_id)
                            ORDER BY w.created_at DESC, w.id DESC OFFSET p_offset LIMIT p_limit + 1);
        ELSIF p_sort = 'created_at' THEN
            v_ids := ARRAY(SELECT w.id FROM dbal.workflows w
                            WHERE w.tenant_id = p_tenant AND (w.created_at, w.id) > (v_ts, v_id)
                            ORDER BY w.created_at, w.id OFFSET p_offset LIMIT p_limit + 1);
        ELSIF p_desc THEN
            v_ids := ARRAY(SELECT w.id FROM dbal.workflows w
                            WHERE w.tenant_id = p_tenant AND (w.updated_at, w.id) < (v_ts, v_id)
                            ORDER BY w.updated_at DESC, w.id DESC OFFSET p_offset LIMIT p_limit + 1);
        ELSE
            v_ids := ARRAY(SELECT w.id FROM dbal.workflows w
                            WHERE w.tenant_id = p_tenant AND (w.updated_at, w.id) > (v_ts, v_id)
                            ORDER BY w.updated_at, w.id OFFSET p_offset LIMIT p_limit + 1);
        END IF;
    ELSIF v_plain AND NOT v_archived AND p_sort = 'name' AND NOT (p_desc AND p_after_id IS NULL) THEN
        -- names are never empty: ('', the smallest id) is before every row
        IF p_desc THEN
            v_ids := ARRAY(SELECT w.id FROM dbal.workflows w
                            WHERE w.tenant_id = p_tenant AND (w.name, w.id) < (p_after_key, p_after_id)
                            ORDER BY w.name DESC, w.id DESC OFFSET p_offset LIMIT p_limit + 1);
        ELSE
            v_ids := ARRAY(SELECT w.id FROM dbal.workflows w
                            WHERE w.tenant_id = p_tenant
                              AND (w.name, w.id) > (coalesce(p_after_key, ''), coalesce(p_after_id,
                                   '00000000-0000-0000-0000-000000000000'::uuid))
                            ORDER BY w.name, w.id OFFSET p_offset LIMIT p_limit + 1);
        END IF;
    ELSIF p_sort <> 'last_executed_at' THEN
        EXECUTE format(
            'SELECT ARRAY(SELECT w.id FROM dbal.workflows w WHERE w.tenant_id = $1 AND %s AND %s
                           ORDER BY w.%I %s, w.id %s OFFSET $2 LIMIT $3)',
            coalesce(v_where, 'true'),
            CASE WHEN p_after_id IS NULL THEN 'true'
                 ELSE format('(w.%I, w.id) %s ($4::%s, $5)', p_sort, v_op, v_type) END,
            p_sort, v_dir, v_dir)
           INTO v_ids USING p_tenant, p_offset, p_limit + 1, p_after_key, p_after_id;
    ELSE
        -- NULLS LAST in both directions: the rows with a key, then those without (by id), each
        -- part read in key order and bounded by the page, then merged.
        EXECUTE format(
            'SELECT ARRAY(SELECT u.i FROM (
                 (SELECT w.last_executed_at AS k, w.id AS i FROM dbal.workflows w
                   WHERE w.tenant_id = $1 AND %1$s AND w.last_executed_at IS NOT NULL AND %2$s
                   ORDER BY w.last_executed_at %4$s, w.id %4$s LIMIT $2 + $3)
                 UNION ALL
                 (SELECT NULL::timestamptz, w.id FROM dbal.workflows w
                   WHERE w.tenant_id = $1 AND %1$s AND w.last_executed_at IS NULL AND %3$s
                   ORDER BY w.id %4$s LIMIT $2 + $3)) u
              ORDER BY u.k %4$s NULLS LAST, u.i %4$s OFFSET $2 LIMIT $3)',
            coalesce(v_where, 'true'),
            CASE WHEN p_after_id IS NULL THEN 'true'
                 WHEN p_after_key IS NULL THEN 'false'
                 ELSE format('(w.last_executed_at, w.id) %s ($4::timestamptz, $5)', v_op) END,
            CASE WHEN p_after_id IS NULL OR p_after_key IS NOT NULL THEN 'true'
                 ELSE format('w.id %s $5', v_op) END,
            v_dir)
           INTO v_ids USING p_tenant, p_offset, p_limit + 1, p_after_key, p_after_id;
    END IF;

    IF cardinality(v_ids) = 0 THEN
        total := v_total;
        total_exact := v_exact;
        has_more := false;
        RETURN NEXT;
        RETURN;
    END IF;
    RETURN QUERY
        SELECT w.id, w.tenant_id, w.name, w.description, w.nodes, w.edges, w.enabled, w.version,
               w.execution_count, w.last_executed_at, w.last_execution_status,
               w.average_execution_time, w.created_at, w.updated_at, w.created_by, w.updated_by,
               w.variables, w.config, w.tags, w.category,
               dbal.effective_validation_status(w.validation_status, w.valid_until,
                                                w.validator_version),
               w.validation_errors, w.validated_at, w.valid_until, w.validator_version,
               dbal.lease_live(w.is_locked, w.lock_expires_at, clock_timestamp()),
               CASE WHEN dbal.lease_live(w.is_locked, w.lock_expires_at, clock_timestamp())
                    THEN w.locked_by END,
               CASE WHEN dbal.lease_live(w.is_locked, w.lock_expires_at, clock_timestamp())
                    THEN w.locked_at END,
               CASE WHEN dbal.lease_live(w.is_locked, w.lock_expires_at, clock_timestamp())
                    THEN w.lock_expires_at END,
               w.archived_at, v_total, v_exact, cardinality(v_ids) > p_limit
          FROM unnest(v_ids[1:p_limit]) WITH ORDINALITY AS u(id, n)
          JOIN dbal.workflows w ON w.tenant_id = p_tenant AND w.id = u.id
         ORDER BY u.n;
END
$$;

CREATE OR REPLACE FUNCTION dbal.api_history(p_tenant text, p_user text, p_role text, p_id uuid)
    RETURNS SETOF dbal.workflow_versions
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM dbal.enter_app(p_tenant, p_user, p_role);
    PERFORM dbal.visible_or_4041(p_tenant, p_id);
    RETURN QUERY SELECT * FROM dbal.workflow_versions v
                  WHERE v.tenant_id = p_tenant AND v.workflow_id = p_id ORDER BY v.version DESC;
END
$$;

CREATE OR REPLACE FUNCTION dbal.api_executions(
        p_tenant text, p_user text, p_role text, p_id uuid, p_from timestamptz,
        p_to timestamptz, p_status text, p_limit integer)
    RETURNS SETOF dbal.workflow_executions
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM dbal.enter_app(p_tenant, p_user, p_role);
    PERFORM dbal.visible_or_4041(p_tenant, p_id);
    RETURN QUERY SELECT * FROM dbal.workflow_executions e
                  WHERE e.tenant_id = p_tenant AND e.workflow_id = p_id
                    AND e.started_at >= coalesce(p_from, '-infinity')
                    AND e.started_at < coalesce(p_to, 'infinity')
                    AND (p_status IS NULL OR e.status = p_status)
                  ORDER BY e.started_at DESC
                  LIMIT p_limit;
END
$$;

CREATE OR REPLACE FUNCTION dbal.prune_batch(p_kind text, p_now timestamptz, p_limit integer)
    RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_default interval;
    v_cut timestamptz;  -- nothing newer than this can be due, whoever the tenant
    v_count integer := 0;
    v_rows integer;
    r record;
BEGIN
    SELECT d.keep INTO v_default FROM dbal.retention_defaults d WHERE d.kind = p_kind;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    SELECT p_now - least(v_default, min(o.keep)) INTO v_cut
      FROM dbal.retention_overrides o WHERE o.kind = p_kind;
    FOR r IN
        SELECT s.tbl, s.col, s.keys
          FROM (VALUES (1, 'executions', 'workflow_executions', 'started_at',
                        ARRAY['execution_id', 'started_at']),
                       (2, 'executions', 'execution_keys', 'started_at', ARRAY['execution_id']),
                       (3, 'stats_hourly', 'workflow_stats_hourly', 'hour', ARRAY['workflow_id', 'hour']),
                       (4, 'stats_daily', 'workflow_stats_daily', 'day', ARRAY['workflow_id', 'day']),
                       (5, 'audit', 'audit_log', 'at', ARRAY['id', 'at'])) AS s(n, kind, tbl, col, keys)
         WHERE s.kind = p_kind
         ORDER BY s.n
    LOOP
        EXECUTE format(
            'WITH victims AS (
                 SELECT t.tenant_id, %3$s
                   FROM dbal.%1$I t
                   LEFT JOIN dbal.retention_overrides o ON o.tenant_id = t.tenant_id AND o.kind = $1
                  WHERE t.%2$I < $2 AND t.%2$I < $3 - coalesce(o.keep, $4)
                  LIMIT $5)
             DELETE FROM dbal.%1$I t USING victims v
              WHERE t.tenant_id = v.tenant_id AND %4$s',
            r.tbl, r.col,
            (SELECT string_agg(format('t.%I', k), ', ') FROM unnest(r.keys) k),
            (SELECT string_agg(format('t.%1$I = v.%1$I', k), ' AND ') FROM unnest(r.keys) k))
            USING p_kind, v_cut, p_now, v_default, p_limit;
        GET DIAGNOSTICS v_rows = ROW_COUNT;
        v_count := v_count + v_rows;
    END LOOP;
    RETURN v_count;
END
$$;

REVOKE ALL ON FUNCTION dbal.roles(), dbal.admin_roles(),
    dbal.lease_live(boolean, timestamptz, timestamptz),
    dbal.lease_expired(boolean, timestamptz, timestamptz),
    dbal.visible_or_4041(text, uuid, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dbal.roles(), dbal.admin_roles(),
    dbal.lease_live(boolean, timestamptz, timestamptz),
    dbal.lease_expired(boolean, timestamptz, timestamptz),
    dbal.visible_or_4041(text, uuid, boolean) TO @app_role@;

RESET ROLE;
