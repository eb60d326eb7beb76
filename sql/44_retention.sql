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
