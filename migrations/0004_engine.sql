-- 0004_engine.sql — executions at engine scale: the batched recorder's entry point, the
-- scheduler's maintenance (expired-lock sweep, pg_partman, retention) and retention policies.
--
-- The same objects as sql/41_record_execution.sql (record_one; record_execution now calls it),
-- sql/43_record_batch.sql, sql/44_maintenance.sql and sql/45_retention.sql: a fresh install applies
-- those files, an upgraded database this migration; tests/test_catalog.py checks both agree.

SET LOCAL ROLE @owner_role@;

-- record_one(tenant, workflow, status, duration_ms, execution_id, token, started_at, error):
-- the one place where an execution is recorded; record_execution (one item) and
-- record_executions (a batch, sql/43_record_batch.sql) both call it. Internal: executable by no
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
        IF NOT coalesce(w.is_locked AND w.lock_token = p_token AND w.locked_by = dbal.ctx_user()
                        AND w.lock_expires_at > v_now, false) THEN
            o_code := 4233; o_message := 'the lock token is not the current holder''s';
            o_details := jsonb_build_object('id', w.id, 'token', p_token);
            RETURN;
        END IF;
    ELSIF w.is_locked AND w.lock_expires_at > v_now AND w.locked_by IS DISTINCT FROM dbal.ctx_user() THEN
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
CREATE OR REPLACE FUNCTION dbal.record_execution(
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

REVOKE ALL ON FUNCTION dbal.record_one(text, uuid, text, double precision, text, bigint, timestamptz, text) FROM PUBLIC;

RESET ROLE;

-- ==============================================================================================
-- sql/43_record_batch.sql

-- 43_record_batch.sql — recording many executions of one tenant in one statement.
--
-- record_executions is the batch entry point of pydbal's recorder (pydbal/recorder.py): one
-- statement per tenant and batch (on Citus, one call delegated to the tenant's worker), with the
-- guarantees of record_execution for every item, because each item goes through the same
-- dbal.record_one (sql/41_record_execution.sql):
--   * idempotent per execution id, within a batch too: a repeated id is 'duplicate', a 'pending'
--     followed by its final status in the same batch is 'completed', so a retried batch counts
--     nothing twice;
--   * fencing per item: an item with a stale token is 'refused' (4233), and only that item;
--   * the rows, the workflow's counters and the roll-ups change in the same transaction.
-- The workflows of a batch are locked first, in id order, so concurrent batches and single
-- calls over the same workflows wait for each other instead of deadlocking.

SET LOCAL ROLE @owner_role@;

-- record_executions(tenant, user, role, workflows[], statuses[], durations[], execution_ids[],
-- tokens[], started_at[], errors[]): records the items in array order and returns one row per
-- item: ord (1-based), execution_id, outcome ('recorded' | 'completed' | 'duplicate' |
-- 'refused') and, for 'refused', code, message and details (see record_one). Arrays must have
-- the same length, at most 10000 (else VALIDATION_ERROR 422 for the whole call); NULL elements
-- mean what NULL arguments of record_execution mean. FORBIDDEN (403) without a user and role.
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
    r record;
BEGIN
    IF dbal.ctx_role() IS NULL OR dbal.ctx_user() IS NULL THEN
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
    PERFORM 1 FROM dbal.workflows w
     WHERE w.tenant_id = v_tenant AND w.id = ANY (p_workflows)
     ORDER BY w.id
       FOR UPDATE;
    FOR i IN 1 .. v_n LOOP
        r := dbal.record_one(v_tenant, p_workflows[i], p_statuses[i], p_durations[i],
                             p_execution_ids[i], p_tokens[i], p_started_at[i], p_errors[i]);
        ord := i;
        execution_id := r.o_execution_id;
        outcome := r.o_outcome;
        code := r.o_code;
        message := r.o_message;
        details := r.o_details;
        RETURN NEXT;
    END LOOP;
END
$$;

REVOKE ALL ON FUNCTION dbal.record_executions(text, text, text, uuid[], text[],
    double precision[], text[], bigint[], timestamptz[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dbal.record_executions(text, text, text, uuid[], text[],
    double precision[], text[], bigint[], timestamptz[], text[]) TO @app_role@;

RESET ROLE;

-- ==============================================================================================
-- sql/44_retention.sql

-- 44_retention.sql — how long executions, roll-ups and the audit trail are kept.
--
-- * dbal.retention_defaults holds one row per kind of data (the registry of kinds):
--     executions    workflow_executions rows and their execution_keys (by started_at)
--     stats_hourly  workflow_stats_hourly (by hour)
--     stats_daily   workflow_stats_daily (by day)
--     audit         audit_log (by at)
--   A new kind (e.g. archived_workflows) is a row here plus a branch in dbal.prune_batch.
-- * dbal.retention_overrides holds per-tenant values; a tenant without one uses the default.
-- * A row is removed once its time is before now − keep (its tenant's keep for its kind).
--   pg_partman drops whole daily partitions older than the longest keep of any tenant
--   (sql/45_maintenance.sql sets part_config.retention from these tables); dbal.prune_batch
--   deletes the rest in bounded batches (everything on a server without pg_partman).
-- * Who may change what: operators (superusers) set defaults (set_retention_default) and any
--   tenant's override; a tenant's admin, god or supergod may set their own tenant's override
--   up to the default (a shorter keep, not a longer one) through set_retention.

SET LOCAL ROLE @owner_role@;

CREATE TABLE dbal.retention_defaults (
    kind        text        PRIMARY KEY,
    keep        interval    NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text        NOT NULL DEFAULT session_user,
    CONSTRAINT retention_defaults_keep_sane CHECK (keep >= interval '1 hour')
);

COMMENT ON TABLE dbal.retention_defaults IS
    'Retention per kind of data (executions, stats_hourly, stats_daily, audit); see sql/44_retention.sql.';

INSERT INTO dbal.retention_defaults (kind, keep, updated_by) VALUES
    ('executions',   interval '30 days',  'pydbal'),
    ('stats_hourly', interval '90 days',  'pydbal'),
    ('stats_daily',  interval '730 days', 'pydbal'),
    ('audit',        interval '365 days', 'pydbal');

CREATE TABLE dbal.retention_overrides (
    tenant_id   text        NOT NULL,
    kind        text        NOT NULL,
    keep        interval    NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text        NOT NULL,
    CONSTRAINT retention_overrides_pkey PRIMARY KEY (tenant_id, kind),
    CONSTRAINT retention_overrides_kind_fkey FOREIGN KEY (kind)
        REFERENCES dbal.retention_defaults (kind) ON DELETE CASCADE,
    CONSTRAINT retention_overrides_keep_sane CHECK (keep >= interval '1 hour')
);

ALTER TABLE dbal.retention_overrides ENABLE ROW LEVEL SECURITY;
ALTER TABLE dbal.retention_overrides FORCE ROW LEVEL SECURITY;
CREATE POLICY retention_overrides_app_select ON dbal.retention_overrides FOR SELECT TO @app_role@
    USING (tenant_id = dbal.ctx_tenant());
CREATE POLICY retention_overrides_owner_all ON dbal.retention_overrides FOR ALL TO @owner_role@
    USING (tenant_id = dbal.ctx_tenant()) WITH CHECK (tenant_id = dbal.ctx_tenant());

-- retention(): the effective retention of the request's tenant: one row per kind with keep and
-- source ('tenant' for an override, else 'default'). Any role may read it.
CREATE FUNCTION dbal.retention(
        p_tenant text DEFAULT NULL, p_user text DEFAULT NULL, p_role text DEFAULT NULL)
    RETURNS TABLE (kind text, keep interval, source text, default_keep interval)
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    v_tenant text := dbal.enter(p_tenant, p_user, p_role);
BEGIN
    RETURN QUERY
    SELECT d.kind, coalesce(o.keep, d.keep),
           CASE WHEN o.keep IS NULL THEN 'default' ELSE 'tenant' END, d.keep
      FROM dbal.retention_defaults d
      LEFT JOIN dbal.retention_overrides o ON o.tenant_id = v_tenant AND o.kind = d.kind
     ORDER BY d.kind;
END
$$;

-- set_retention(kind, keep): sets (keep NULL: removes) the request tenant's override of one
-- kind and returns the effective keep. FORBIDDEN (403) unless the role is admin, god or
-- supergod; a keep longer than the default is FORBIDDEN unless the login is a superuser (an
-- operator); an unknown kind or a keep under one hour is VALIDATION_ERROR (422). Audited.
CREATE FUNCTION dbal.set_retention(
        p_kind text, p_keep interval,
        p_tenant text DEFAULT NULL, p_user text DEFAULT NULL, p_role text DEFAULT NULL)
    RETURNS interval
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_tenant text := dbal.enter(p_tenant, p_user, p_role);
    v_default interval;
BEGIN
    IF NOT dbal.ctx_is_admin() THEN
        PERFORM dbal.raise_error(403, 'only admin, god and supergod may change retention');
    END IF;
    SELECT d.keep INTO v_default FROM dbal.retention_defaults d WHERE d.kind = p_kind;
    IF NOT FOUND THEN
        PERFORM dbal.raise_error(422, format('unknown retention kind %L', p_kind),
                                 jsonb_build_object('kind', p_kind));
    END IF;
    IF p_keep IS NOT NULL AND p_keep < interval '1 hour' THEN
        PERFORM dbal.raise_error(422, 'retention must be at least one hour',
                                 jsonb_build_object('keep', p_keep));
    END IF;
    IF p_keep > v_default
       AND NOT coalesce((SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = session_user), false) THEN
        PERFORM dbal.raise_error(403, 'a tenant may shorten its retention, not extend it past the default',
                                 jsonb_build_object('kind', p_kind, 'keep', p_keep,
                                                    'default', v_default));
    END IF;
    IF p_keep IS NULL THEN
        DELETE FROM dbal.retention_overrides o WHERE o.tenant_id = v_tenant AND o.kind = p_kind;
    ELSE
        INSERT INTO dbal.retention_overrides AS o (tenant_id, kind, keep, updated_by)
        VALUES (v_tenant, p_kind, p_keep, dbal.ctx_user())
        ON CONFLICT (tenant_id, kind) DO UPDATE
            SET keep = excluded.keep, updated_at = now(), updated_by = excluded.updated_by;
    END IF;
    PERFORM dbal.audit('retention_set', NULL, jsonb_build_object('kind', p_kind, 'keep', p_keep));
    RETURN coalesce(p_keep, v_default);
END
$$;

-- set_retention_default(kind, keep): the operator's default for one kind (a new kind is
-- added by a migration, not here). SECURITY INVOKER and executable by no role: superusers only.
CREATE FUNCTION dbal.set_retention_default(p_kind text, p_keep interval) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    UPDATE dbal.retention_defaults
       SET keep = p_keep, updated_at = now(), updated_by = session_user
     WHERE kind = p_kind;
    IF NOT FOUND THEN
        PERFORM dbal.raise_error(422, format('unknown retention kind %L', p_kind),
                                 jsonb_build_object('kind', p_kind));
    END IF;
END
$$;

-- prune_batch(kind, now, limit): deletes at most `limit` rows of one kind whose time is before
-- now − keep (each tenant's keep); returns how many. 'executions' deletes execution rows, then
-- (in the same call, up to `limit` more) execution keys. SECURITY INVOKER, executable by no role:
-- run by dbal.run_maintenance as a superuser, which row-level security does not restrict.
CREATE FUNCTION dbal.prune_batch(p_kind text, p_now timestamptz, p_limit integer)
    RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_default interval;
    v_cut timestamptz;  -- nothing newer than this can be due, whoever the tenant
    v_count integer := 0;
    v_more integer := 0;
BEGIN
    SELECT d.keep INTO v_default FROM dbal.retention_defaults d WHERE d.kind = p_kind;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    SELECT p_now - least(v_default, min(o.keep)) INTO v_cut
      FROM dbal.retention_overrides o WHERE o.kind = p_kind;
    IF p_kind = 'executions' THEN
        WITH victims AS (
            SELECT e.tenant_id, e.execution_id, e.started_at
              FROM dbal.workflow_executions e
              LEFT JOIN dbal.retention_overrides o ON o.tenant_id = e.tenant_id AND o.kind = p_kind
             WHERE e.started_at < v_cut AND e.started_at < p_now - coalesce(o.keep, v_default)
             LIMIT p_limit)
        DELETE FROM dbal.workflow_executions e USING victims v
         WHERE e.tenant_id = v.tenant_id AND e.execution_id = v.execution_id
           AND e.started_at = v.started_at;
        GET DIAGNOSTICS v_count = ROW_COUNT;
        WITH victims AS (
            SELECT k.tenant_id, k.execution_id
              FROM dbal.execution_keys k
              LEFT JOIN dbal.retention_overrides o ON o.tenant_id = k.tenant_id AND o.kind = p_kind
             WHERE k.started_at < v_cut AND k.started_at < p_now - coalesce(o.keep, v_default)
             LIMIT p_limit)
        DELETE FROM dbal.execution_keys k USING victims v
         WHERE k.tenant_id = v.tenant_id AND k.execution_id = v.execution_id;
        GET DIAGNOSTICS v_more = ROW_COUNT;
    ELSIF p_kind = 'stats_hourly' THEN
        WITH victims AS (
            SELECT s.tenant_id, s.workflow_id, s.hour
              FROM dbal.workflow_stats_hourly s
              LEFT JOIN dbal.retention_overrides o ON o.tenant_id = s.tenant_id AND o.kind = p_kind
             WHERE s.hour < v_cut AND s.hour < p_now - coalesce(o.keep, v_default)
             LIMIT p_limit)
        DELETE FROM dbal.workflow_stats_hourly s USING victims v
         WHERE s.tenant_id = v.tenant_id AND s.workflow_id = v.workflow_id AND s.hour = v.hour;
        GET DIAGNOSTICS v_count = ROW_COUNT;
    ELSIF p_kind = 'stats_daily' THEN
        WITH victims AS (
            SELECT s.tenant_id, s.workflow_id, s.day
              FROM dbal.workflow_stats_daily s
              LEFT JOIN dbal.retention_overrides o ON o.tenant_id = s.tenant_id AND o.kind = p_kind
             WHERE s.day < v_cut AND s.day < p_now - coalesce(o.keep, v_default)
             LIMIT p_limit)
        DELETE FROM dbal.workflow_stats_daily s USING victims v
         WHERE s.tenant_id = v.tenant_id AND s.workflow_id = v.workflow_id AND s.day = v.day;
        GET DIAGNOSTICS v_count = ROW_COUNT;
    ELSIF p_kind = 'audit' THEN
        WITH victims AS (
            SELECT a.tenant_id, a.id, a.at
              FROM dbal.audit_log a
              LEFT JOIN dbal.retention_overrides o ON o.tenant_id = a.tenant_id AND o.kind = p_kind
             WHERE a.at < v_cut AND a.at < p_now - coalesce(o.keep, v_default)
             LIMIT p_limit)
        DELETE FROM dbal.audit_log a USING victims v
         WHERE a.tenant_id = v.tenant_id AND a.id = v.id AND a.at = v.at;
        GET DIAGNOSTICS v_count = ROW_COUNT;
    END IF;
    RETURN v_count + v_more;
END
$$;

REVOKE ALL ON dbal.retention_defaults, dbal.retention_overrides FROM PUBLIC;
GRANT SELECT ON dbal.retention_defaults, dbal.retention_overrides TO @app_role@;
REVOKE ALL ON FUNCTION dbal.retention(text, text, text),
    dbal.set_retention(text, interval, text, text, text),
    dbal.set_retention_default(text, interval),
    dbal.prune_batch(text, timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dbal.retention(text, text, text),
    dbal.set_retention(text, interval, text, text, text) TO @app_role@;

RESET ROLE;

-- ==============================================================================================
-- sql/45_maintenance.sql

-- 45_maintenance.sql — the scheduler's one job: sweep expired locks, pg_partman, retention.
--
-- CALL dbal.run_maintenance(runner, min_interval_s, batch, max_batches) is what pg_cron runs
-- every minute (scheduled by `pydbal migrate` where pg_cron is installed, see
-- pydbal/maintenance.py) and what the in-process scheduler of a pydbal process runs otherwise.
-- Guarantees:
--   * one run at a time per database: a session advisory lock is taken with try-lock, so a
--     second runner (another process, pg_cron) skips instead of waiting; a run that started less
--     than min_interval_s seconds ago makes the others skip too (so N processes do not sweep N
--     times per interval);
--   * expired leases are cleared in the table (is_locked = false) and audited ('lock_expired',
--     user 'maintenance:<runner>');
--   * pg_partman (where installed) gets retention = the longest keep of any tenant for the
--     executions and audit parents, then run_maintenance_proc() creates and drops partitions;
--   * then bounded batched deletes (dbal.prune_batch) remove what is older than each tenant's
--     retention, committing after each batch (short locks), at most max_batches per kind;
--   * each run is a row of dbal.maintenance_runs: when, by whom, what it removed, errors.
-- It commits between steps, so it is a procedure, SECURITY INVOKER (SECURITY DEFINER procedures
-- cannot commit), executable by no role: superusers only (pg_cron's job runs as one; the
-- in-process scheduler needs a superuser DSN, which the embedded server's is).

SET LOCAL ROLE @owner_role@;

CREATE TABLE dbal.maintenance_runs (
    id                  bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    runner              text        NOT NULL,   -- 'pg_cron', 'pydbal:<host>:<pid>', 'cli'
    started_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at         timestamptz,            -- NULL: running, or died (see error)
    locks_cleared       integer,
    partitions_dropped  integer,
    removed             jsonb,                  -- rows deleted per kind
    error               text
);

COMMENT ON TABLE dbal.maintenance_runs IS
    'One row per run of dbal.run_maintenance (kept 30 days); shown by `pydbal status`.';

CREATE INDEX maintenance_runs_started_idx ON dbal.maintenance_runs (started_at DESC);

CREATE PROCEDURE dbal.run_maintenance(
        p_runner text DEFAULT 'pg_cron',
        p_min_interval_s double precision DEFAULT 0,
        p_batch integer DEFAULT 5000,
        p_max_batches integer DEFAULT 100)
    LANGUAGE plpgsql
    AS $$
DECLARE
    c_lock CONSTANT bigint := 8101238223536500852;  -- 'pydbalmt'
    v_run bigint;
    v_now timestamptz;
    v_locks integer := 0;
    v_dropped integer := NULL;
    v_removed jsonb := '{}';
    v_errors text[] := '{}';
    v_kind text;
    v_n integer;
    v_total integer;
    v_batches integer;
    v_before text[];
BEGIN
    IF NOT pg_catalog.pg_try_advisory_lock(c_lock) THEN
        RAISE NOTICE 'dbal.run_maintenance: another run is in progress; skipped';
        RETURN;
    END IF;
    IF EXISTS (SELECT FROM dbal.maintenance_runs r
                WHERE r.started_at > pg_catalog.clock_timestamp()
                                     - pg_catalog.make_interval(secs => p_min_interval_s)) THEN
        PERFORM pg_catalog.pg_advisory_unlock(c_lock);
        RETURN;
    END IF;
    INSERT INTO dbal.maintenance_runs (runner) VALUES (p_runner) RETURNING id INTO v_run;
    v_now := pg_catalog.clock_timestamp();
    COMMIT;

    -- 1. expired leases
    BEGIN
        PERFORM pg_catalog.set_config('dbal.user_id', 'maintenance:' || p_runner, true);
        v_locks := dbal.sweep_expired_locks();
    EXCEPTION WHEN OTHERS THEN
        v_errors := v_errors || ('locks: ' || SQLERRM);
    END;
    COMMIT;

    -- 2. pg_partman: retention from the policy, then its own maintenance
    IF EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_partman') THEN
        UPDATE partman.part_config c
           SET retention = (SELECT pg_catalog.max(k.keep)::text FROM (
                               SELECT d.keep FROM dbal.retention_defaults d WHERE d.kind = x.kind
                               UNION ALL
                               SELECT o.keep FROM dbal.retention_overrides o WHERE o.kind = x.kind) k),
               retention_keep_table = false
          FROM (VALUES ('dbal.workflow_executions', 'executions'),
                       ('dbal.audit_log', 'audit')) AS x(parent, kind)
         WHERE c.parent_table = x.parent;
        SELECT pg_catalog.array_agg(i.inhrelid::regclass::text) INTO v_before
          FROM pg_catalog.pg_inherits i
         WHERE i.inhparent IN ('dbal.workflow_executions'::regclass, 'dbal.audit_log'::regclass);
        COMMIT;
        CALL partman.run_maintenance_proc();
        SELECT pg_catalog.count(*) INTO v_dropped
          FROM pg_catalog.unnest(v_before) b(name)
         WHERE pg_catalog.to_regclass(b.name) IS NULL;
    END IF;

    -- 3. batched deletes, per kind, committing after each batch
    FOR v_kind IN SELECT d.kind FROM dbal.retention_defaults d ORDER BY d.kind LOOP
        v_total := 0;
        v_batches := 0;
        LOOP
            v_n := 0;
            BEGIN
                v_n := dbal.prune_batch(v_kind, v_now, p_batch);
            EXCEPTION WHEN OTHERS THEN
                v_errors := v_errors || (v_kind || ': ' || SQLERRM);
            END;
            COMMIT;
            v_total := v_total + v_n;
            v_batches := v_batches + 1;
            EXIT WHEN v_n < p_batch OR v_batches >= p_max_batches;
        END LOOP;
        v_removed := v_removed || pg_catalog.jsonb_build_object(v_kind, v_total);
    END LOOP;

    DELETE FROM dbal.maintenance_runs r WHERE r.started_at < v_now - interval '30 days';
    UPDATE dbal.maintenance_runs
       SET finished_at = pg_catalog.clock_timestamp(), locks_cleared = v_locks,
           partitions_dropped = v_dropped, removed = v_removed,
           error = CASE WHEN pg_catalog.cardinality(v_errors) > 0
                        THEN pg_catalog.array_to_string(v_errors, '; ') END
     WHERE id = v_run;
    COMMIT;
    PERFORM pg_catalog.pg_advisory_unlock(c_lock);
END
$$;

COMMENT ON PROCEDURE dbal.run_maintenance(text, double precision, integer, integer) IS
    'Sweep expired locks, pg_partman maintenance, retention; one run at a time (sql/45_maintenance.sql).';

REVOKE ALL ON dbal.maintenance_runs FROM PUBLIC;
REVOKE ALL ON PROCEDURE dbal.run_maintenance(text, double precision, integer, integer) FROM PUBLIC;

RESET ROLE;
