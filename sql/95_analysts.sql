-- 95_analysts.sql — read-only direct SQL for analysts, isolated by the database.
--
-- The same text is migrations/0002_analysts.sql: a fresh install applies this file after
-- 90_grants.sql, an upgraded database applies the migration after 0001; both must produce the
-- same objects, so every grant for the analyst objects lives here.
--
-- Who sees what:
--   * @analyst_role@ is a NOLOGIN group; each analyst connects with an own LOGIN role that is a
--     member of it (`pydbal analysts grant LOGIN TENANT…`).
--   * dbal.analyst_grants holds (login, tenant) rows, written only by operators (superusers).
--   * dbal.analyst_tenants() returns the tenants granted to SESSION_USER: the login the
--     connection authenticated as. SET ROLE does not change it, and it reads no setting, so
--     SET / set_config of dbal.* settings change nothing for an analyst.
--   * Every tenant table has a FOR SELECT policy TO @analyst_role@ comparing tenant_id with those
--     tenants. There is no write policy and no write privilege for the analyst role anywhere.
--   * Analysts read through the views of dbal_analytics, which run with the caller's rights
--     (security_invoker), so the policies above apply. The base tables are readable (needed by
--     security_invoker views) column by column: the lock columns of dbal.workflows are not.
--   * EXECUTE: dbal.analyst_tenants() and the two pure helpers of the workflows view; none of
--     pydbal's entry points or SECURITY DEFINER functions (those are the app role's only).

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

-- policies ---------------------------------------------------------------------------------------
ALTER TABLE dbal.analyst_grants ENABLE ROW LEVEL SECURITY;
ALTER TABLE dbal.analyst_grants FORCE ROW LEVEL SECURITY;

-- An analyst reads its own grant rows only; the app role reads none (this policy exists so that
-- every tenant table names its rule for the app role). Only superusers write grants.
CREATE POLICY analyst_grants_analyst_select ON dbal.analyst_grants FOR SELECT TO @analyst_role@
    USING (login = session_user);
CREATE POLICY analyst_grants_app_select ON dbal.analyst_grants FOR SELECT TO @app_role@
    USING (false);

CREATE POLICY workflows_analyst_select ON dbal.workflows FOR SELECT TO @analyst_role@
    USING (tenant_id IN (SELECT dbal.analyst_tenants()));
CREATE POLICY workflow_versions_analyst_select ON dbal.workflow_versions
    FOR SELECT TO @analyst_role@
    USING (tenant_id IN (SELECT dbal.analyst_tenants()));
CREATE POLICY audit_log_analyst_select ON dbal.audit_log FOR SELECT TO @analyst_role@
    USING (tenant_id IN (SELECT dbal.analyst_tenants()));
CREATE POLICY workflow_executions_analyst_select ON dbal.workflow_executions
    FOR SELECT TO @analyst_role@
    USING (tenant_id IN (SELECT dbal.analyst_tenants()));
CREATE POLICY execution_keys_analyst_select ON dbal.execution_keys FOR SELECT TO @analyst_role@
    USING (tenant_id IN (SELECT dbal.analyst_tenants()));
CREATE POLICY workflow_stats_hourly_analyst_select ON dbal.workflow_stats_hourly
    FOR SELECT TO @analyst_role@
    USING (tenant_id IN (SELECT dbal.analyst_tenants()));
CREATE POLICY workflow_stats_daily_analyst_select ON dbal.workflow_stats_daily
    FOR SELECT TO @analyst_role@
    USING (tenant_id IN (SELECT dbal.analyst_tenants()));

-- the analysts' schema ---------------------------------------------------------------------------
RESET ROLE;
CREATE SCHEMA dbal_analytics AUTHORIZATION @owner_role@;
REVOKE ALL ON SCHEMA dbal_analytics FROM PUBLIC;
SET LOCAL ROLE @owner_role@;

-- workflows: definitions, validation and execution counters; no lock internals.
CREATE VIEW dbal_analytics.workflows WITH (security_invoker = true) AS
SELECT w.tenant_id, w.id, w.name, w.description, w.category, w.tags, w.enabled, w.version,
       w.nodes, w.edges, w.variables, w.config,
       dbal.effective_validation_status(w.validation_status, w.valid_until, w.validator_version)
           AS validation_status,
       w.validation_errors, w.validated_at, w.valid_until, w.validator_version,
       w.execution_count, w.finished_execution_count, w.last_executed_at,
       w.last_execution_status, w.average_execution_time AS average_execution_ms,
       w.created_at, w.updated_at, w.created_by, w.updated_by
  FROM dbal.workflows w;

-- executions: one row per recorded execution.
CREATE VIEW dbal_analytics.executions WITH (security_invoker = true) AS
SELECT e.tenant_id, e.workflow_id, e.execution_id, e.status, e.duration_ms, e.started_at,
       e.finished_at, e.executed_by, e.error, e.recorded_at
  FROM dbal.workflow_executions e;

-- daily_stats: per workflow per UTC day, from the daily roll-ups (never scans executions).
-- avg_ms/min_ms/max_ms are over finished runs with a duration.
CREATE VIEW dbal_analytics.daily_stats WITH (security_invoker = true) AS
SELECT s.tenant_id, s.workflow_id, (s.day AT TIME ZONE 'UTC')::date AS day,
       (s.success + s.failure + s.pending + s.timeout)::bigint AS total,
       s.success, s.failure, s.pending, s.timeout, s.finished,
       s.sum_ms / NULLIF(s.finished, 0) AS avg_ms, s.min_ms, s.max_ms
  FROM dbal.workflow_stats_daily s;

-- audit_log: who did what to which workflow of the analyst's tenants.
CREATE VIEW dbal_analytics.audit_log WITH (security_invoker = true) AS
SELECT a.tenant_id, a.id, a.at, a.user_id, a.user_role, a.operation, a.workflow_id,
       a.changed_fields, a.details
  FROM dbal.audit_log a;

COMMENT ON SCHEMA dbal_analytics IS
    'Read-only views for analysts (security_invoker: the analyst policies of dbal apply).';

-- grants -----------------------------------------------------------------------------------------
RESET ROLE;

REVOKE ALL ON dbal.analyst_grants FROM PUBLIC;
GRANT SELECT ON dbal.analyst_grants TO @analyst_role@;

-- The security_invoker views need the caller's rights on the base tables' columns they read.
GRANT SELECT (tenant_id, id, name, description, category, tags, enabled, version, nodes, edges,
              variables, config, validation_status, validation_errors, validated_at,
              valid_until, validator_version, execution_count, finished_execution_count,
              last_executed_at, last_execution_status, average_execution_time, created_at,
              updated_at, created_by, updated_by)
    ON dbal.workflows TO @analyst_role@;
GRANT SELECT ON dbal.workflow_executions, dbal.workflow_stats_hourly, dbal.workflow_stats_daily,
                dbal.audit_log
    TO @analyst_role@;

GRANT USAGE ON SCHEMA dbal_analytics TO @analyst_role@;
REVOKE ALL ON ALL TABLES IN SCHEMA dbal_analytics FROM PUBLIC;
GRANT SELECT ON dbal_analytics.workflows, dbal_analytics.executions, dbal_analytics.daily_stats,
                dbal_analytics.audit_log
    TO @analyst_role@;

REVOKE ALL ON FUNCTION dbal.analyst_tenants() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    dbal.analyst_tenants(),
    dbal.effective_validation_status(text, timestamptz, integer),
    dbal.current_validator_version()
    TO @analyst_role@;
