-- citus/07_analysts.sql — analysts' views served tenant by tenant on the tenants' workers.
--
-- On one node each dbal.analyst_*() function (sql/95_analysts.sql) is a SECURITY DEFINER loop
-- that sets the tenant context and reads one granted tenant at a time. Through a coordinator
-- that context never reaches the shards (their policies run on the workers), so the loop would
-- read nothing. Here each function is split in two, from its installed definition:
--   * dbal.analyst_<x>_of(p_tenant): the loop's body for one tenant — SECURITY DEFINER, one
--     generic plan, distributed by p_tenant and colocated with dbal.workflows, so it runs on the
--     worker holding the tenant. It first checks that session_user (the analyst's login, the
--     same on the worker) is granted that tenant in dbal.analyst_grants (a reference table, read
--     locally), else returns nothing; then it reads exactly as on one node.
--   * dbal.analyst_<x>(): SECURITY INVOKER now: for each tenant granted to session_user
--     (its own rows of dbal.analyst_grants), in order, the rows of analyst_<x>_of(tenant), each call
--     delegated to its worker.
-- An analyst may call analyst_<x>_of itself, for any tenant: the grant check makes that the
-- same as reading the view. The _of functions take p_tenant, so 10_distribute.sql distributes
-- them with force_delegation: they are delegated inside transaction blocks too (`pydbal sql`
-- runs READ ONLY transactions). A delegated call logs in to the worker as the current role: an
-- analyst that did SET ROLE to the NOLOGIN analyst group gets an error, never more rows.

DO $do$
DECLARE
    r record;
    v_def text;
    v_result text;
    v_query text;
    v_start integer;
    v_end integer;
BEGIN
    FOR r IN
        SELECT p.oid, p.proname::text AS name
          FROM pg_proc p
         WHERE p.pronamespace = 'dbal'::regnamespace
           AND p.proname IN ('analyst_workflows', 'analyst_executions', 'analyst_daily_stats',
                             'analyst_audit_log')
           AND p.pronargs = 0
           -- split already (the SECURITY INVOKER loop below); a migration that replaces the
           -- single-node definition (SECURITY DEFINER) has it split again, _of from its text
           AND p.prosecdef
         ORDER BY 2
    LOOP
        v_def := pg_get_functiondef(r.oid);
        v_result := pg_get_function_result(r.oid);
        v_start := position('RETURN QUERY' IN v_def);
        v_end := position('END LOOP;' IN v_def);
        IF v_start = 0 OR v_end < v_start OR position('v_tenant' IN v_def) = 0 THEN
            RAISE EXCEPTION 'sql/citus/07_analysts.sql: dbal.%() changed shape; update the '
                            'Citus rewrite', r.name;
        END IF;
        v_query := replace(substr(v_def, v_start, v_end - v_start), 'v_tenant', 'p_tenant');
        EXECUTE format($f$
CREATE OR REPLACE FUNCTION dbal.%1$s_of(p_tenant text) RETURNS %2$s
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan
    AS $body$
DECLARE
    v_prev text[];
BEGIN
    IF NOT EXISTS (SELECT FROM dbal.analyst_grants g
                    WHERE g.tenant_id = p_tenant AND g.login = session_user) THEN
        RETURN;
    END IF;
    v_prev := dbal.analyst_enter(p_tenant);
    %3$s
    PERFORM dbal.analyst_leave(v_prev);
END
$body$
$f$, r.name, v_result, v_query);
        EXECUTE format('ALTER FUNCTION dbal.%s_of(text) OWNER TO @owner_role@', r.name);
        EXECUTE format('REVOKE ALL ON FUNCTION dbal.%s_of(text) FROM PUBLIC', r.name);
        EXECUTE format('GRANT EXECUTE ON FUNCTION dbal.%s_of(text) TO @analyst_role@', r.name);
        EXECUTE format($f$
CREATE OR REPLACE FUNCTION dbal.%1$s() RETURNS %2$s
    LANGUAGE plpgsql
    SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    AS $body$
DECLARE
    v_tenant text;
BEGIN
    FOR v_tenant IN SELECT g.tenant_id FROM dbal.analyst_grants g
                     WHERE g.login = session_user ORDER BY 1 LOOP
        RETURN QUERY SELECT * FROM dbal.%1$s_of(v_tenant);
    END LOOP;
END
$body$
$f$, r.name, v_result);
    END LOOP;
END
$do$;
