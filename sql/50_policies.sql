-- 50_policies.sql — row-level security: the tenant boundary, enforced by the database.
--
-- Every table holding tenant data has RLS ENABLED and FORCED (FORCE makes the owner subject to
-- the policies too, so the SECURITY DEFINER functions see only the request's tenant).
--
-- Application role (@app_role@), for every table: read = same tenant. It has no write privilege
-- on any table (sql/90_grants.sql), so it has no write policy either: every write is made by a
-- SECURITY DEFINER entry point that checks the request's role itself.
-- Owner role (@owner_role@), i.e. the SECURITY DEFINER functions and definer triggers:
--   same tenant for everything they read or change; the functions do their own role checks.
--   Append-only trails (audit_log, workflow_versions) accept inserts for any tenant, because the
--   definer triggers must record direct SQL changes made by operators without a request context.
-- Archived workflows (archived_at set) are hidden from both roles unless the transaction asked
-- for them (dbal.ctx_archived(), set by the entry points that list or unarchive them).
-- A missing context makes dbal.ctx_tenant() NULL: no row matches, so nothing is visible and
-- nothing can be written.
-- Every policy compares columns with the request context only (no subqueries), the shape Citus
-- accepts on distributed tables.

SET LOCAL ROLE @owner_role@;

ALTER TABLE dbal.workflows ENABLE ROW LEVEL SECURITY;
ALTER TABLE dbal.workflows FORCE ROW LEVEL SECURITY;
ALTER TABLE dbal.workflow_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE dbal.workflow_versions FORCE ROW LEVEL SECURITY;
ALTER TABLE dbal.audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE dbal.audit_log FORCE ROW LEVEL SECURITY;
ALTER TABLE dbal.workflow_executions ENABLE ROW LEVEL SECURITY;
ALTER TABLE dbal.workflow_executions FORCE ROW LEVEL SECURITY;
ALTER TABLE dbal.execution_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE dbal.execution_keys FORCE ROW LEVEL SECURITY;
ALTER TABLE dbal.workflow_stats_hourly ENABLE ROW LEVEL SECURITY;
ALTER TABLE dbal.workflow_stats_hourly FORCE ROW LEVEL SECURITY;
ALTER TABLE dbal.workflow_stats_daily ENABLE ROW LEVEL SECURITY;
ALTER TABLE dbal.workflow_stats_daily FORCE ROW LEVEL SECURITY;
ALTER TABLE dbal.tenant_counters ENABLE ROW LEVEL SECURITY;
ALTER TABLE dbal.tenant_counters FORCE ROW LEVEL SECURITY;

-- workflows ------------------------------------------------------------------------------------
CREATE POLICY workflows_app_select ON dbal.workflows FOR SELECT TO @app_role@
    USING (tenant_id = dbal.ctx_tenant() AND (archived_at IS NULL OR dbal.ctx_archived()));
CREATE POLICY workflows_owner_all ON dbal.workflows FOR ALL TO @owner_role@
    USING (tenant_id = dbal.ctx_tenant() AND (archived_at IS NULL OR dbal.ctx_archived()))
    WITH CHECK (tenant_id = dbal.ctx_tenant());

-- workflow_versions and audit_log: append-only trails ---------------------------------------------
CREATE POLICY workflow_versions_app_select ON dbal.workflow_versions FOR SELECT TO @app_role@
    USING (tenant_id = dbal.ctx_tenant());
CREATE POLICY workflow_versions_owner_select ON dbal.workflow_versions FOR SELECT TO @owner_role@
    USING (tenant_id = dbal.ctx_tenant());
CREATE POLICY workflow_versions_owner_insert ON dbal.workflow_versions FOR INSERT TO @owner_role@
    WITH CHECK (true);

CREATE POLICY audit_log_app_select ON dbal.audit_log FOR SELECT TO @app_role@
    USING (tenant_id = dbal.ctx_tenant());
CREATE POLICY audit_log_owner_select ON dbal.audit_log FOR SELECT TO @owner_role@
    USING (tenant_id = dbal.ctx_tenant());
CREATE POLICY audit_log_owner_insert ON dbal.audit_log FOR INSERT TO @owner_role@
    WITH CHECK (true);

-- executions, their keys and roll-ups: written only by the definer functions ---------------------
CREATE POLICY workflow_executions_app_select ON dbal.workflow_executions FOR SELECT TO @app_role@
    USING (tenant_id = dbal.ctx_tenant());
CREATE POLICY workflow_executions_owner_all ON dbal.workflow_executions FOR ALL TO @owner_role@
    USING (tenant_id = dbal.ctx_tenant()) WITH CHECK (tenant_id = dbal.ctx_tenant());

CREATE POLICY execution_keys_app_select ON dbal.execution_keys FOR SELECT TO @app_role@
    USING (tenant_id = dbal.ctx_tenant());
CREATE POLICY execution_keys_owner_all ON dbal.execution_keys FOR ALL TO @owner_role@
    USING (tenant_id = dbal.ctx_tenant()) WITH CHECK (tenant_id = dbal.ctx_tenant());

CREATE POLICY workflow_stats_hourly_app_select ON dbal.workflow_stats_hourly FOR SELECT TO @app_role@
    USING (tenant_id = dbal.ctx_tenant());
CREATE POLICY workflow_stats_hourly_owner_all ON dbal.workflow_stats_hourly FOR ALL TO @owner_role@
    USING (tenant_id = dbal.ctx_tenant()) WITH CHECK (tenant_id = dbal.ctx_tenant());
CREATE POLICY workflow_stats_daily_app_select ON dbal.workflow_stats_daily FOR SELECT TO @app_role@
    USING (tenant_id = dbal.ctx_tenant());
CREATE POLICY workflow_stats_daily_owner_all ON dbal.workflow_stats_daily FOR ALL TO @owner_role@
    USING (tenant_id = dbal.ctx_tenant()) WITH CHECK (tenant_id = dbal.ctx_tenant());

-- tenant_counters: written only by the counting triggers (sql/14_tenant_counters.sql) ------------
CREATE POLICY tenant_counters_app_select ON dbal.tenant_counters FOR SELECT TO @app_role@
    USING (tenant_id = dbal.ctx_tenant());
CREATE POLICY tenant_counters_owner_all ON dbal.tenant_counters FOR ALL TO @owner_role@
    USING (tenant_id = dbal.ctx_tenant()) WITH CHECK (tenant_id = dbal.ctx_tenant());

RESET ROLE;
