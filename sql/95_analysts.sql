-- 95_analysts.sql — read-only direct SQL for analysts, isolated by the database.
--
-- Installed by migrations/0002_analysts.sql and reshaped by migrations/0003_security.sql (which
-- closed the planner and statistics side channels); a fresh install applies this file after
-- 90_grants.sql, and both paths produce the same objects.
--
-- Who sees what:
--   * @analyst_role@ is a NOLOGIN group; each analyst connects with an own LOGIN role that is a
--     member of it (`pydbal analysts grant LOGIN TENANT…`).
--   * dbal.analyst_grants holds (login, tenant) rows, written only by operators (superusers).
--     Grants are keyed by SESSION_USER, the login the connection authenticated as: SET ROLE and
--     settings cannot change them.
--   * Analysts hold NO privilege on any base table or partition of dbal. What they read are the
--     views of dbal_analytics, each a thin view over a SECURITY DEFINER set-returning plpgsql
--     function (dbal.analyst_*). Such a function is opaque to the planner: it goes over the
--     caller's granted tenants one at a time, reading each with the tenant as an index
--     condition, and only then hands rows to the caller's query. No predicate of the analyst's
--     runs before the tenant filter, so EXPLAIN (ANALYZE, BUFFERS), planner settings, row
--     counts removed by a filter and the statistics counters depend only on the granted tenants'
--     rows (tests/analysts/test_side_channels.py tries each).
--   * The database-wide side channels (statistics views and functions, row estimates, relation
--     sizes, advisory locks, large objects, temporary tables) are closed in
--     sql/97_catalog_hardening.sql.
--   * EXECUTE: dbal.analyst_tenants(), the dbal.analyst_* functions behind the views and two
--     pure helpers; none of pydbal's entry points (those are the app role's only).
--   * Timing is out of scope (docs/security.md): how long a query over the granted tenants takes
--     does not depend on other tenants' values, but the server is shared.

SET LOCAL ROLE @owner_role@;

-- analyst_grants ---------------------------------------------------------------------------------
CREATE TABLE dbal.analyst_grants (
    tenant_id   text        NOT NULL,
    login       name        NOT NULL,   -- a LOGIN role, member of @analyst_role@
    granted_at  timestamptz NOT NULL DEFAULT now(),
    granted_by  text        NOT NULL DEFAULT session_user,   -- the operator who granted it
    CONSTRAINT analyst_grants_pkey PRIMARY KEY (tenant_id, login),
    CONSTRAINT analyst_grants_tenant_not_empty CHECK (tenant_id <> '' AND length(tenant_id) <= 255)
);

COMMENT ON TABLE dbal.analyst_grants IS
    'Which analyst login may read which tenant (dbal_analytics views); managed by `pydbal analysts`.';

-- Looked up by login on every analyst statement (not unique: the unique key starts with tenant_id).
CREATE INDEX analyst_grants_login_idx ON dbal.analyst_grants (login, tenant_id);

-- analyst_tenants(): the tenants granted to the connection's login (session_user), as a set.
-- SECURITY INVOKER, STABLE, no SET clause: the analyst reads its own grant rows through the
-- policy below; SET ROLE and settings cannot change the answer. Used by the analyst policies.
CREATE FUNCTION dbal.analyst_tenants() RETURNS SETOF text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT g.tenant_id FROM dbal.analyst_grants g WHERE g.login = session_user $$;

-- analyst_enter(tenant): sets the request context (tenant, archived rows visible) for the owner's
-- policies while an analyst_* function reads one granted tenant; with NULL it changes nothing.
-- Returns the context as it was, for analyst_leave. Internal: executable by the owner only.
CREATE FUNCTION dbal.analyst_enter(p_tenant text) RETURNS text[]
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_prev text[] := ARRAY[current_setting('dbal.tenant_id', true),
                           current_setting('dbal.archived', true)];
BEGIN
    IF p_tenant IS NOT NULL THEN
        PERFORM set_config('dbal.tenant_id', p_tenant, true),
                set_config('dbal.archived', 'visible', true);
    END IF;
    RETURN v_prev;
END
$$;

-- analyst_leave(previous): restores the context analyst_enter returned. Internal.
CREATE FUNCTION dbal.analyst_leave(p_prev text[]) RETURNS void
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
    AS $$ SELECT set_config('dbal.tenant_id', coalesce(p_prev[1], ''), true),
                 set_config('dbal.archived', coalesce(p_prev[2], ''), true) $$;

-- policies ---------------------------------------------------------------------------------------
ALTER TABLE dbal.analyst_grants ENABLE ROW LEVEL SECURITY;
ALTER TABLE dbal.analyst_grants FORCE ROW LEVEL SECURITY;

-- An analyst reads its own grant rows only; the app role reads none (this policy exists so that
-- every tenant table names its rule for the app role). Only superusers write grants.
CREATE POLICY analyst_grants_analyst_select ON dbal.analyst_grants FOR SELECT TO @analyst_role@
    USING (login = session_user);
CREATE POLICY analyst_grants_app_select ON dbal.analyst_grants FOR SELECT TO @app_role@
    USING (false);
-- The dbal.analyst_* functions (run as the owner) read the calling login's grants.
CREATE POLICY analyst_grants_owner_select ON dbal.analyst_grants FOR SELECT TO @owner_role@
    USING (login = session_user);

-- the functions behind the views ------------------------------------------------------------------
-- Each: SECURITY DEFINER, plpgsql (never inlined), pinned search_path, and one generic plan for its
-- inner query (plan_cache_mode: the work it does never depends on the caller's session, not even
-- on how many times it ran). For each tenant granted to
-- session_user, in order, it sets the request context to that tenant (the owner's policies then
-- show that tenant's rows only, archived workflows included), returns that tenant's rows read
-- with tenant_id = the granted tenant as an index condition, and at the end restores the
-- context the caller had. No argument of the caller's reaches a query.

-- analyst_workflows(): the granted tenants' workflows (archived ones too, with archived_at),
-- validation status as readers see it; no lock internals.
CREATE FUNCTION dbal.analyst_workflows()
    RETURNS TABLE (tenant_id text, id uuid, name text, description text, category text,
                   tags text[], enabled boolean, version integer, nodes jsonb, edges jsonb,
                   variables jsonb, config jsonb, validation_status text, validation_errors jsonb,
                   validated_at timestamptz, valid_until timestamptz, validator_version integer,
                   execution_count bigint, finished_execution_count bigint,
                   last_executed_at timestamptz, last_execution_status text,
                   average_execution_ms double precision, created_at timestamptz,
                   updated_at timestamptz, created_by text, updated_by text,
                   archived_at timestamptz)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan
    AS $$
DECLARE
    v_tenant text;
    v_prev text[] := dbal.analyst_enter(NULL);
BEGIN
    FOR v_tenant IN SELECT g.tenant_id FROM dbal.analyst_grants g
                     WHERE g.login = session_user ORDER BY g.tenant_id LOOP
        PERFORM dbal.analyst_enter(v_tenant);
        RETURN QUERY
            SELECT w.tenant_id, w.id, w.name, w.description, w.category, w.tags, w.enabled,
                   w.version, w.nodes, w.edges, w.variables, w.config,
                   dbal.effective_validation_status(w.validation_status, w.valid_until,
                                                    w.validator_version),
                   w.validation_errors, w.validated_at, w.valid_until, w.validator_version,
                   w.execution_count, w.finished_execution_count, w.last_executed_at,
                   w.last_execution_status, w.average_execution_time, w.created_at,
                   w.updated_at, w.created_by, w.updated_by, w.archived_at
              FROM dbal.workflows w WHERE w.tenant_id = v_tenant;
    END LOOP;
    PERFORM dbal.analyst_leave(v_prev);
END
$$;

-- analyst_executions(): the granted tenants' recorded executions.
CREATE FUNCTION dbal.analyst_executions()
    RETURNS TABLE (tenant_id text, workflow_id uuid, execution_id text, status text,
                   duration_ms double precision, started_at timestamptz,
                   finished_at timestamptz, executed_by text, error text,
                   recorded_at timestamptz)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan
    AS $$
DECLARE
    v_tenant text;
    v_prev text[] := dbal.analyst_enter(NULL);
BEGIN
    FOR v_tenant IN SELECT g.tenant_id FROM dbal.analyst_grants g
                     WHERE g.login = session_user ORDER BY g.tenant_id LOOP
        PERFORM dbal.analyst_enter(v_tenant);
        RETURN QUERY
            SELECT e.tenant_id, e.workflow_id, e.execution_id, e.status, e.duration_ms,
                   e.started_at, e.finished_at, e.executed_by, e.error, e.recorded_at
              FROM dbal.workflow_executions e WHERE e.tenant_id = v_tenant;
    END LOOP;
    PERFORM dbal.analyst_leave(v_prev);
END
$$;

-- analyst_daily_stats(): per workflow per UTC day, from the daily roll-ups (never scans
-- executions); avg_ms/min_ms/max_ms are over finished runs with a duration.
CREATE FUNCTION dbal.analyst_daily_stats()
    RETURNS TABLE (tenant_id text, workflow_id uuid, day date, total bigint, success bigint,
                   failure bigint, pending bigint, timeout bigint, finished bigint,
                   avg_ms double precision, min_ms double precision, max_ms double precision)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan
    AS $$
DECLARE
    v_tenant text;
    v_prev text[] := dbal.analyst_enter(NULL);
BEGIN
    FOR v_tenant IN SELECT g.tenant_id FROM dbal.analyst_grants g
                     WHERE g.login = session_user ORDER BY g.tenant_id LOOP
        PERFORM dbal.analyst_enter(v_tenant);
        RETURN QUERY
            SELECT s.tenant_id, s.workflow_id, (s.day AT TIME ZONE 'UTC')::date,
                   (s.success + s.failure + s.pending + s.timeout)::bigint,
                   s.success, s.failure, s.pending, s.timeout, s.finished,
                   s.sum_ms / NULLIF(s.finished, 0), s.min_ms, s.max_ms
              FROM dbal.workflow_stats_daily s WHERE s.tenant_id = v_tenant;
    END LOOP;
    PERFORM dbal.analyst_leave(v_prev);
END
$$;

-- analyst_audit_log(): who did what to which workflow of the granted tenants.
CREATE FUNCTION dbal.analyst_audit_log()
    RETURNS TABLE (tenant_id text, id bigint, at timestamptz, user_id text, user_role text,
                   operation text, workflow_id uuid, changed_fields text[], details jsonb)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan
    AS $$
DECLARE
    v_tenant text;
    v_prev text[] := dbal.analyst_enter(NULL);
BEGIN
    FOR v_tenant IN SELECT g.tenant_id FROM dbal.analyst_grants g
                     WHERE g.login = session_user ORDER BY g.tenant_id LOOP
        PERFORM dbal.analyst_enter(v_tenant);
        RETURN QUERY
            SELECT a.tenant_id, a.id, a.at, a.user_id, a.user_role, a.operation, a.workflow_id,
                   a.changed_fields, a.details
              FROM dbal.audit_log a WHERE a.tenant_id = v_tenant;
    END LOOP;
    PERFORM dbal.analyst_leave(v_prev);
END
$$;


-- the analysts' schema ---------------------------------------------------------------------------
RESET ROLE;
CREATE SCHEMA dbal_analytics AUTHORIZATION @owner_role@;
REVOKE ALL ON SCHEMA dbal_analytics FROM PUBLIC;
SET LOCAL ROLE @owner_role@;

-- Views over the functions above; owned by @owner_role@, readable by @analyst_role@.
CREATE VIEW dbal_analytics.workflows AS SELECT * FROM dbal.analyst_workflows();
CREATE VIEW dbal_analytics.executions AS SELECT * FROM dbal.analyst_executions();
CREATE VIEW dbal_analytics.daily_stats AS SELECT * FROM dbal.analyst_daily_stats();
CREATE VIEW dbal_analytics.audit_log AS SELECT * FROM dbal.analyst_audit_log();

COMMENT ON SCHEMA dbal_analytics IS
    'Read-only views for analysts: each reads the granted tenants only, through dbal.analyst_*.';

-- grants -----------------------------------------------------------------------------------------
RESET ROLE;

REVOKE ALL ON dbal.analyst_grants FROM PUBLIC;
GRANT SELECT ON dbal.analyst_grants TO @analyst_role@;

GRANT USAGE ON SCHEMA dbal_analytics TO @analyst_role@;
REVOKE ALL ON ALL TABLES IN SCHEMA dbal_analytics FROM PUBLIC;
GRANT SELECT ON dbal_analytics.workflows, dbal_analytics.executions, dbal_analytics.daily_stats,
                dbal_analytics.audit_log
    TO @analyst_role@;

REVOKE ALL ON FUNCTION dbal.analyst_tenants() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    dbal.analyst_tenants(),
    dbal.analyst_workflows(), dbal.analyst_executions(), dbal.analyst_daily_stats(),
    dbal.analyst_audit_log(),
    dbal.effective_validation_status(text, timestamptz, integer),
    dbal.current_validator_version()
    TO @analyst_role@;
