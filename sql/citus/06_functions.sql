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
--   * archive_rows(tenant, ids): row by row as well, the archive time taken once
--     (clock_timestamp()) before the UPDATEs instead of inside them;
--   * record_execution: finished_at of a completed pending run from a variable (below);
--   * changeable_sql(): the request's role, user and time as literals (below).
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
             WHERE dbal.lease_expired(is_locked, lock_expires_at, clock_timestamp()) ORDER BY 1
        LOOP
            v_count := v_count + dbal.clear_expired_locks(v_tenant);
        END LOOP;
        RETURN v_count;
    END IF;
    FOR r IN
        SELECT id, locked_by, lock_token, lock_expires_at FROM dbal.workflows
         WHERE tenant_id = p_tenant AND dbal.lease_expired(is_locked, lock_expires_at, clock_timestamp())
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
    v_count integer := 0;
    v_now timestamptz := clock_timestamp();
    r record;
BEGIN
    -- the archived row must stay visible to this UPDATE's own RETURNING (policies check new rows)
    PERFORM set_config('dbal.archived', 'visible', true);
    FOR r IN
        SELECT x.id, x.name, x.version, x.is_locked, x.locked_by, x.lock_token
          FROM dbal.workflows x
         WHERE x.tenant_id = p_tenant AND x.id = ANY (p_ids)
         ORDER BY x.id
           FOR UPDATE
    LOOP
        UPDATE dbal.workflows
           SET archived_at = v_now, archived_by = dbal.ctx_user(),
               is_locked = false, locked_by = NULL, locked_at = NULL, lock_expires_at = NULL
         WHERE tenant_id = p_tenant AND id = r.id;
        INSERT INTO dbal.audit_log (tenant_id, user_id, user_role, operation, workflow_id, details)
        VALUES (p_tenant, coalesce(dbal.ctx_user(), session_user::text), dbal.ctx_role(),
                'archive', r.id,
                jsonb_build_object('name', r.name, 'version', r.version)
                || CASE WHEN r.is_locked
                        THEN jsonb_build_object('released_lock', jsonb_build_object(
                                 'holder', r.locked_by, 'token', r.lock_token))
                        ELSE '{}'::jsonb END);
        v_count := v_count + 1;
    END LOOP;
    PERFORM set_config('dbal.archived', '', true);
    RETURN v_count;
END
$$;
ALTER FUNCTION dbal.archive_rows(text, uuid[]) OWNER TO @owner_role@;
REVOKE ALL ON FUNCTION dbal.archive_rows(text, uuid[]) FROM PUBLIC;

-- record_execution: completing a pending run computes finished_at from the key's started_at
-- (equal to the row's, which the UPDATE matches on) instead of the row's column, since Citus
-- refuses STABLE functions of columns (timestamptz + interval) in an UPDATE. Derived from the
-- installed definition, so the rest of the function stays the one of sql/41_record_execution.sql;
-- fails loudly when that definition no longer has the expected shape.
DO $$
DECLARE
    v_old constant text := 'finished_at = e.started_at + make_interval(secs => p_duration_ms / 1000.0)';
    v_new constant text := 'finished_at = v_key.started_at + make_interval(secs => p_duration_ms / 1000.0)';
    v_def text;
    r record;
BEGIN
    FOR r IN SELECT p.oid FROM pg_proc p
              WHERE p.pronamespace = 'dbal'::regnamespace
                AND p.proname IN ('record_execution', 'record_one')
    LOOP
        v_def := pg_get_functiondef(r.oid);
        CONTINUE WHEN position(v_new IN v_def) > 0  -- reshaped already
                   OR position('UPDATE dbal.workflow_executions' IN v_def) = 0;  -- no completion
        IF position(v_old IN v_def) = 0 THEN
            RAISE EXCEPTION 'sql/citus/06_functions.sql: % changed shape; update the Citus rewrite',
                            r.oid::regprocedure;
        END IF;
        EXECUTE replace(v_def, v_old, v_new);
    END LOOP;
END
$$;

-- changeable_sql(): the bulk writes' condition with the request's admin flag, user and the
-- current time written in as literals. Citus refuses, in the WHERE clause of an UPDATE on a
-- distributed table, volatile functions (clock_timestamp()) and non-immutable ones inside
-- COALESCE/CASE (dbal.ctx_is_admin() inlines to one); the rule is the one of sql/70_api_builders.sql,
-- evaluated when the statement is built, just before it runs. STABLE instead of IMMUTABLE.
CREATE OR REPLACE FUNCTION dbal.changeable_sql() RETURNS text
    LANGUAGE sql STABLE
    AS $$
        SELECT format('(%L::boolean OR w.created_by = %L)'
                      ' AND NOT (dbal.lease_live(w.is_locked, w.lock_expires_at, %L::timestamptz)'
                      ' AND w.locked_by <> %L)',
                      dbal.ctx_is_admin(), dbal.ctx_user(), clock_timestamp(), dbal.ctx_user())
    $$;

-- Plans: sql/ pins some readers to generic plans (SET plan_cache_mode = force_generic_plan, a
-- single-node saving of re-planning). A generic plan keeps the parameters (the tenant among
-- them) unresolved, and Citus cannot plan a statement on a distributed table from it ("could
-- not create distributed plan"); on Citus those functions plan as PostgreSQL does by default.
-- Not the analysts' per-tenant readers that citus/07_analysts.sql makes (analyst_<x>_of): they
-- keep their generic plan (one tenant per call, on its worker), also when this file runs again.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT p.oid::regprocedure::text AS fn
          FROM pg_proc p
         WHERE p.pronamespace = 'dbal'::regnamespace
           AND 'plan_cache_mode=force_generic_plan' = ANY (p.proconfig)
           AND p.proname !~ '^analyst_.*_of$'
         ORDER BY 1
    LOOP
        EXECUTE format('ALTER ROUTINE %s RESET plan_cache_mode', r.fn);
    END LOOP;
END
$$;
