-- 44_retention.sql — how long executions, roll-ups and the audit trail are kept.
--
-- * dbal.retention_defaults holds one row per kind of data (the registry of kinds):
--     executions    workflow_executions rows and their execution_keys (by started_at)
--     stats_hourly  workflow_stats_hourly (by hour)
--     stats_daily   workflow_stats_daily (by day)
--     audit         audit_log (by at)
--   A new kind (e.g. archived_workflows) is a row here plus a row in dbal.prune_batch's list.
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
-- (in the same call, up to `limit` more) execution keys. One statement shape for every table,
-- from the list below (table, time column, the key columns after tenant_id). SECURITY INVOKER,
-- executable by no role: run by dbal.run_maintenance as a superuser, which row-level security
-- does not restrict.
CREATE FUNCTION dbal.prune_batch(p_kind text, p_now timestamptz, p_limit integer)
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

REVOKE ALL ON dbal.retention_defaults, dbal.retention_overrides FROM PUBLIC;
GRANT SELECT ON dbal.retention_defaults, dbal.retention_overrides TO @app_role@;
REVOKE ALL ON FUNCTION dbal.retention(text, text, text),
    dbal.set_retention(text, interval, text, text, text),
    dbal.set_retention_default(text, interval),
    dbal.prune_batch(text, timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dbal.retention(text, text, text),
    dbal.set_retention(text, interval, text, text, text) TO @app_role@;

RESET ROLE;
