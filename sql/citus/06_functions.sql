-- citus/06_functions.sql — function bodies reshaped for Citus, same contracts as on one node.
--
-- A call of an entry point runs on the worker holding its tenant (sql/citus/10_distribute.sql:
-- force_delegation). There Citus accepts a statement only when it visibly targets that tenant
-- (a `tenant_id = <the tenant>` condition it can prune on), and refuses volatile functions
-- inside UPDATE statements on distributed tables. The functions below do what their
-- single-node versions in sql/ do, written in those shapes:
--   * clear_expired_locks(tenant): one tenant's expired locks, row by row with an explicit
--     tenant condition in each statement (a modifying CTE is planned as a distributed subplan
--     that leaves the worker); for all tenants (NULL, the operator's sweep) tenant by tenant;
--   * archive_rows(tenant, ids): the archive time is taken once (clock_timestamp()) before the
--     UPDATE instead of inside it.
-- Replaced before distribution (fresh install, `pydbal distribute`) and kept in step on every
-- later run (CREATE OR REPLACE reaches the workers once the function is distributed).

CREATE OR REPLACE FUNCTION dbal.clear_expired_locks(p_tenant text) RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_count integer := 0;
    v_tenant text;
    r record;
BEGIN
    IF p_tenant IS NULL THEN
        FOR v_tenant IN
            SELECT DISTINCT tenant_id FROM dbal.workflows
             WHERE is_locked AND lock_expires_at <= clock_timestamp() ORDER BY 1
        LOOP
            v_count := v_count + dbal.clear_expired_locks(v_tenant);
        END LOOP;
        RETURN v_count;
    END IF;
    FOR r IN
        SELECT id, locked_by, lock_token, lock_expires_at FROM dbal.workflows
         WHERE tenant_id = p_tenant AND is_locked AND lock_expires_at <= clock_timestamp()
         ORDER BY id
           FOR UPDATE
    LOOP
        UPDATE dbal.workflows
           SET is_locked = false, locked_by = NULL, locked_at = NULL, lock_expires_at = NULL
         WHERE tenant_id = p_tenant AND id = r.id;
        INSERT INTO dbal.audit_log (tenant_id, user_id, user_role, operation, workflow_id, details)
        VALUES (p_tenant, coalesce(dbal.ctx_user(), session_user::text), dbal.ctx_role(),
                'lock_expired', r.id,
                jsonb_build_object('holder', r.locked_by, 'token', r.lock_token,
                                   'expired_at', r.lock_expires_at));
        v_count := v_count + 1;
    END LOOP;
    RETURN v_count;
END
$$;
ALTER FUNCTION dbal.clear_expired_locks(text) OWNER TO @owner_role@;
REVOKE ALL ON FUNCTION dbal.clear_expired_locks(text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION dbal.archive_rows(p_tenant text, p_ids uuid[]) RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_count integer;
    v_now timestamptz := clock_timestamp();
BEGIN
    -- the archived row must stay visible to this UPDATE's own RETURNING (policies check new rows)
    PERFORM set_config('dbal.archived', 'visible', true);
    WITH archived AS (
        UPDATE dbal.workflows w
           SET archived_at = v_now, archived_by = dbal.ctx_user(),
               is_locked = false, locked_by = NULL, locked_at = NULL, lock_expires_at = NULL
          FROM (SELECT x.id, x.is_locked, x.locked_by, x.lock_token FROM dbal.workflows x
                 WHERE x.tenant_id = p_tenant AND x.id = ANY (p_ids)) old
         WHERE w.tenant_id = p_tenant AND w.id = old.id
        RETURNING w.id, w.name, w.version, old.is_locked, old.locked_by, old.lock_token
    ), audited AS (
        INSERT INTO dbal.audit_log (tenant_id, user_id, user_role, operation, workflow_id, details)
        SELECT p_tenant, coalesce(dbal.ctx_user(), session_user::text), dbal.ctx_role(),
               'archive', a.id,
               jsonb_build_object('name', a.name, 'version', a.version)
               || CASE WHEN a.is_locked
                       THEN jsonb_build_object('released_lock', jsonb_build_object(
                                'holder', a.locked_by, 'token', a.lock_token))
                       ELSE '{}'::jsonb END
          FROM archived a
        RETURNING 1
    )
    SELECT count(*) INTO v_count FROM audited;
    PERFORM set_config('dbal.archived', '', true);
    RETURN v_count;
END
$$;
ALTER FUNCTION dbal.archive_rows(text, uuid[]) OWNER TO @owner_role@;
REVOKE ALL ON FUNCTION dbal.archive_rows(text, uuid[]) FROM PUBLIC;
