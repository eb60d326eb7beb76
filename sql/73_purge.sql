-- 73_purge.sql — the only way data leaves pydbal: an operator purging old archived workflows.
--
-- Guarantees:
--   * purge_archived(older_than, tenant) removes the workflows archived before now() - older_than
--     (of one tenant, or of all with NULL) together with their history, executions, execution
--     keys and roll-ups; live workflows and workflows archived more recently are untouched.
--   * Each purged workflow leaves one audit row (operation 'purge', user = the operator's login,
--     written by the workflows trigger); audit rows themselves are kept (their retention is
--     separate).
--   * SECURITY INVOKER and executable by no role: only a superuser (which row-level security does
--     not apply to) can run it, through `pydbal purge --older-than 30d`. The application role
--     cannot: it has no DELETE privilege anywhere.
--   * Ids are chosen by the database, so a purged id never comes back, and its fencing tokens
--     never repeat.

SET LOCAL ROLE @owner_role@;

-- purge_archived(older_than, tenant): what is described above; returns the purged workflows.
CREATE FUNCTION dbal.purge_archived(p_older_than interval, p_tenant text DEFAULT NULL)
    RETURNS TABLE (tenant_id text, workflow_id uuid, name text, archived_at timestamptz)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    v_cutoff timestamptz;
    v_tenants text[];
    v_ids uuid[];
BEGIN
    IF p_older_than IS NULL OR p_older_than < interval '0' THEN
        PERFORM dbal.raise_error(422, 'older_than must be a non-negative interval');
    END IF;
    v_cutoff := now() - p_older_than;
    SELECT coalesce(array_agg(w.tenant_id), '{}'), coalesce(array_agg(w.id), '{}')
      INTO v_tenants, v_ids
      FROM (SELECT w.tenant_id, w.id FROM dbal.workflows w
             WHERE w.archived_at < v_cutoff AND (p_tenant IS NULL OR w.tenant_id = p_tenant)
             ORDER BY w.tenant_id, w.id
               FOR UPDATE) w;
    -- children first: their foreign keys have no ON DELETE CASCADE
    DELETE FROM dbal.workflow_versions v USING unnest(v_tenants, v_ids) p(tenant_id, id)
     WHERE v.tenant_id = p.tenant_id AND v.workflow_id = p.id;
    DELETE FROM dbal.workflow_executions e USING unnest(v_tenants, v_ids) p(tenant_id, id)
     WHERE e.tenant_id = p.tenant_id AND e.workflow_id = p.id;
    DELETE FROM dbal.execution_keys k USING unnest(v_tenants, v_ids) p(tenant_id, id)
     WHERE k.tenant_id = p.tenant_id AND k.workflow_id = p.id;
    DELETE FROM dbal.workflow_stats_hourly s USING unnest(v_tenants, v_ids) p(tenant_id, id)
     WHERE s.tenant_id = p.tenant_id AND s.workflow_id = p.id;
    DELETE FROM dbal.workflow_stats_daily s USING unnest(v_tenants, v_ids) p(tenant_id, id)
     WHERE s.tenant_id = p.tenant_id AND s.workflow_id = p.id;
    RETURN QUERY
        DELETE FROM dbal.workflows w USING unnest(v_tenants, v_ids) p(tenant_id, id)
         WHERE w.tenant_id = p.tenant_id AND w.id = p.id
        RETURNING w.tenant_id, w.id, w.name, w.archived_at;
END
$$;

RESET ROLE;
