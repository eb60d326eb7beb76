-- 71_api_writes.sql — how a workflow is created and changed: api_insert, api_update,
-- api_update_many (archiving is sql/72_archive.sql, storing a validation result
-- sql/75_validation_store.sql).
--
-- Guarantees:
--   * One statement per request: each entry point takes the request's tenant, user and role as
--     its first arguments and sets the transaction-local context itself (dbal.enter_app).
--   * api_insert, api_update and api_update_many are SECURITY DEFINER with a pinned search_path:
--     the application role may not write any table itself, so these functions (with those of
--     sql/72_archive.sql and sql/75_validation_store.sql) are the only way a workflow row is
--     created or changed. They run as @owner_role@, whose policies still confine them to the
--     request's tenant, and make the role checks themselves.
--   * Role rules: only admin, god and supergod create; a workflow is changed by its creator or by
--     admin and up, and not while another user holds a live lock on it — dbal.writable for one
--     row (an error for each refusal), dbal.changeable_sql for bulk writes (such rows skipped).
--   * The database chooses ids (gen_random_uuid()) and versions, and stamps validation lifetimes
--     (now() + dbal.validity_period()); a caller can only ask.
--   * free_name and writable are SECURITY INVOKER helpers the definer entry points call.
-- Executable by @app_role@ only.

SET LOCAL ROLE @owner_role@;

-- free_name(tenant, name, taken): p_name if no workflow of the tenant (and no name in p_taken)
-- has it, else the first free "<name> (n)", n = 2, 3, … (trimmed to 255 characters).
-- Renaming writers of one tenant take turns: the first call of a transaction waits for the
-- tenant's naming lock (held to commit), then looks, so it sees the names other renaming writers
-- committed and two concurrent clones/imports never pick the same name.
CREATE FUNCTION dbal.free_name(p_tenant text, p_name text, p_taken text[] DEFAULT '{}')
    RETURNS text
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_candidate text := p_name;
    n integer := 1;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('dbal.free_name'), hashtext(p_tenant));
    WHILE v_candidate = ANY (coalesce(p_taken, '{}'))
          OR EXISTS (SELECT 1 FROM dbal.workflows w WHERE w.tenant_id = p_tenant AND w.name = v_candidate) LOOP
        n := n + 1;
        v_candidate := left(p_name, 255 - length(format(' (%s)', n))) || format(' (%s)', n);
    END LOOP;
    RETURN v_candidate;
END
$$;

-- writable(tenant, id): the workflow row for a change by the request's user, locked FOR UPDATE.
-- WORKFLOW_NOT_FOUND (4041) when not visible; FORBIDDEN (403) when the role may not change it
-- (neither admin/god/supergod nor its creator); WORKFLOW_LOCKED (4231), with the holder and since
-- when, while another user holds an unexpired lock on it.
CREATE FUNCTION dbal.writable(p_tenant text, p_id uuid) RETURNS dbal.workflows
    LANGUAGE plpgsql
    AS $$
DECLARE
    w dbal.workflows;
BEGIN
    w := dbal.visible_or_4041(p_tenant, p_id);
    IF NOT (dbal.ctx_is_admin() OR w.created_by = dbal.ctx_user()) THEN
        PERFORM dbal.raise_error(403, 'only its creator or an admin may change this workflow',
                                 jsonb_build_object('id', p_id));
    END IF;
    SELECT * INTO w FROM dbal.workflows x WHERE x.tenant_id = p_tenant AND x.id = p_id FOR UPDATE;
    IF dbal.lease_live(w.is_locked, w.lock_expires_at, clock_timestamp())
       AND w.locked_by <> dbal.ctx_user() THEN
        PERFORM dbal.raise_error(4231, 'workflow is locked by another user',
                                 jsonb_build_object('id', p_id, 'locked_by', w.locked_by,
                                                    'locked_at', w.locked_at,
                                                    'lock_expires_at', w.lock_expires_at));
    END IF;
    RETURN w;
END
$$;

-- api_insert(...): inserts the given workflows (parallel arrays, one element per workflow) in one
-- statement and returns them. Only admin, god and supergod may create (FORBIDDEN otherwise).
-- A name already taken raises a unique violation on workflows_tenant_name_key (CONFLICT), unless
-- p_rename: then each workflow takes the next free "<name> (2)", "(3)", … A validation status
-- valid/invalid stamps validated_at = now and valid_until = now + dbal.validity_period(). Ids are
-- the database's (gen_random_uuid()): a caller cannot choose one, nor bring back a removed one.
-- SECURITY DEFINER: the only way a workflow is created.
CREATE FUNCTION dbal.api_insert(
        p_tenant text, p_user text, p_role text,
        p_names text[], p_descriptions text[], p_nodes jsonb[], p_edges jsonb[],
        p_variables jsonb[], p_config jsonb[], p_tags jsonb[], p_categories text[],
        p_enabled boolean[], p_validation_status text[], p_validation_errors jsonb[],
        p_validator_version integer, p_rename boolean DEFAULT false)
    RETURNS SETOF dbal.workflows
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_names text[] := p_names;
BEGIN
    PERFORM dbal.enter_app(p_tenant, p_user, p_role);
    IF NOT dbal.ctx_is_admin() THEN
        PERFORM dbal.raise_error(403, format('role %s may not create workflows', p_role));
    END IF;
    IF p_rename THEN
        FOR i IN 1 .. coalesce(array_length(v_names, 1), 0) LOOP
            v_names[i] := dbal.free_name(p_tenant, v_names[i], v_names[1:i - 1]);
        END LOOP;
    END IF;
    RETURN QUERY
    INSERT INTO dbal.workflows AS w (tenant_id, name, description, nodes, edges, variables, config,
                                tags, category, enabled, created_by, validation_status,
                                validation_errors, validated_at, valid_until, validator_version)
    SELECT p_tenant, r.name, r.description, r.nodes, r.edges, r.variables, r.config,
           ARRAY(SELECT jsonb_array_elements_text(coalesce(r.tags, '[]'))),
           coalesce(r.category, 'user'), coalesce(r.enabled, true), p_user,
           coalesce(r.vstatus, 'pending'), r.verrors,
           CASE WHEN r.vstatus IN ('valid', 'invalid') THEN now() END,
           CASE WHEN r.vstatus IN ('valid', 'invalid') THEN now() + dbal.validity_period() END,
           CASE WHEN r.vstatus IN ('valid', 'invalid') THEN p_validator_version END
      FROM unnest(v_names, p_descriptions, p_nodes, p_edges, p_variables, p_config,
                  p_tags, p_categories, p_enabled, p_validation_status, p_validation_errors)
           AS r(name, description, nodes, edges, variables, config, tags, category, enabled,
                vstatus, verrors)
    RETURNING *;
END
$$;

-- api_update(...): applies a patch to one workflow and returns it. Checks (dbal.writable):
-- not found 4041, forbidden 403, locked 4231; a p_expected_version other than the current
-- version is CONFLICT (409) and nothing is written. Every update bumps version. An archived
-- workflow is not found. SECURITY DEFINER: the only way a workflow's definition changes.
CREATE FUNCTION dbal.api_update(
        p_tenant text, p_user text, p_role text, p_id uuid, p_patch jsonb,
        p_expected_version integer, p_validation_status text, p_validation_errors jsonb,
        p_validator_version integer)
    RETURNS SETOF dbal.workflows
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    w dbal.workflows;
BEGIN
    PERFORM dbal.enter_app(p_tenant, p_user, p_role);
    w := dbal.writable(p_tenant, p_id);
    IF p_expected_version IS NOT NULL AND w.version <> p_expected_version THEN
        PERFORM dbal.raise_error(409, format('version is %s, not the expected %s', w.version, p_expected_version),
                                 jsonb_build_object('id', p_id, 'version', w.version,
                                                    'expected_version', p_expected_version));
    END IF;
    RETURN QUERY EXECUTE format(
        'UPDATE dbal.workflows SET %s%s WHERE tenant_id = $1 AND id = $2 RETURNING *',
        dbal.patch_set_sql(p_patch || jsonb_build_object('updated_by', p_user)),
        dbal.validation_set_sql(p_validation_status, p_validation_errors, p_validator_version))
        USING p_tenant, p_id;
END
$$;

-- api_update_many: applies a patch to every live workflow matching the filter that the caller
-- may change; rows of another creator (for role user) and rows locked by another user are left
-- untouched and not counted. Returns the number changed. SECURITY DEFINER, like api_update.
CREATE FUNCTION dbal.api_update_many(
        p_tenant text, p_user text, p_role text, p_filter jsonb, p_patch jsonb,
        p_validation_status text, p_validation_errors jsonb, p_validator_version integer)
    RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_count integer;
BEGIN
    PERFORM dbal.enter_app(p_tenant, p_user, p_role);
    EXECUTE format(
        'UPDATE dbal.workflows w SET %s%s WHERE w.tenant_id = $1 AND %s AND %s',
        dbal.patch_set_sql(p_patch || jsonb_build_object('updated_by', p_user)),
        dbal.validation_set_sql(p_validation_status, p_validation_errors, p_validator_version),
        dbal.filter_sql(p_filter), dbal.changeable_sql())
        USING p_tenant;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

RESET ROLE;
