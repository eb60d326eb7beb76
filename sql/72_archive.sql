-- 72_archive.sql — deleting a workflow archives it; nothing a service does erases a record.
--
-- Guarantees:
--   * api_delete / api_delete_many set archived_at and archived_by; the row, its history
--     (workflow_versions), executions, execution keys, roll-ups and audit rows all stay.
--   * An archived workflow disappears from every read, list, search, lock and execution path:
--     the workflows policies hide it (sql/50_policies.sql) unless the transaction set
--     dbal.archived = 'visible', which only api_list (with {"archived": true}) and api_unarchive
--     do. Its name is free for a live workflow meanwhile (the unique index covers live rows).
--   * api_unarchive brings it back with its id, version, history and fencing token intact; if a
--     live workflow took its name meanwhile, it comes back as the next free "<name> (n)".
--   * Archiving releases the workflow's lease (audited as lock_release) but never resets
--     lock_token: a fencing token of a workflow id never repeats.
--   * Each archive and unarchive writes one audit row ('archive' / 'unarchive').
-- All three are SECURITY DEFINER (the application role has no write privilege), apply the same
-- role and lock rules as updates (dbal.writable, dbal.changeable_sql) and are executable by
-- @app_role@ only. Only an operator removes data (sql/73_purge.sql).

SET LOCAL ROLE @owner_role@;

-- api_delete(tenant, user, role, id): archives one workflow. True when archived, false when no
-- live workflow of the tenant has this id. FORBIDDEN (403) / WORKFLOW_LOCKED (4231) as for updates.
CREATE FUNCTION dbal.api_delete(p_tenant text, p_user text, p_role text, p_id uuid)
    RETURNS boolean
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    w dbal.workflows;
BEGIN
    PERFORM dbal.enter_app(p_tenant, p_user, p_role);
    PERFORM 1 FROM dbal.workflows x WHERE x.tenant_id = p_tenant AND x.id = p_id;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    w := dbal.writable(p_tenant, p_id);
    PERFORM dbal.archive_rows(p_tenant, ARRAY[w.id]);
    RETURN true;
END
$$;

-- api_delete_many(tenant, user, role, filter): archives the live workflows matching the filter
-- that the caller may change (see dbal.changeable_sql); returns how many.
CREATE FUNCTION dbal.api_delete_many(p_tenant text, p_user text, p_role text, p_filter jsonb)
    RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_ids uuid[];
BEGIN
    PERFORM dbal.enter_app(p_tenant, p_user, p_role);
    EXECUTE format(
        'SELECT coalesce(array_agg(w.id), ''{}'') FROM (SELECT w.id FROM dbal.workflows w
          WHERE w.tenant_id = $1 AND %s AND %s ORDER BY w.id FOR UPDATE) w',
        dbal.filter_sql(p_filter), dbal.changeable_sql())
        INTO v_ids USING p_tenant;
    RETURN dbal.archive_rows(p_tenant, v_ids);
END
$$;

-- archive_rows(tenant, ids): archives the given live workflows (already checked by the caller),
-- releasing their leases; audits each; returns how many. Internal: executable by its owner only.
CREATE FUNCTION dbal.archive_rows(p_tenant text, p_ids uuid[]) RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_count integer;
BEGIN
    -- the archived row must stay visible to this UPDATE's own RETURNING (policies check new rows)
    PERFORM set_config('dbal.archived', 'visible', true);
    WITH archived AS (
        UPDATE dbal.workflows w
           SET archived_at = clock_timestamp(), archived_by = dbal.ctx_user(),
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

-- api_unarchive(tenant, user, role, id): brings an archived workflow back and returns it (no row
-- when the tenant has no archived workflow with this id). Same role rule as updates (admin, god,
-- supergod or its creator: else FORBIDDEN 403). When a live workflow took its name, it comes
-- back as the next free "<name> (n)" (a rename: version + 1 and an 'update' audit row, as for any
-- rename); otherwise its version is unchanged.
CREATE FUNCTION dbal.api_unarchive(p_tenant text, p_user text, p_role text, p_id uuid)
    RETURNS SETOF dbal.workflows
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    w dbal.workflows;
    v_name text;
BEGIN
    PERFORM dbal.enter_app(p_tenant, p_user, p_role);
    PERFORM set_config('dbal.archived', 'visible', true);
    SELECT * INTO w FROM dbal.workflows x
     WHERE x.tenant_id = p_tenant AND x.id = p_id AND x.archived_at IS NOT NULL
       FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM set_config('dbal.archived', '', true);
        RETURN;
    END IF;
    IF NOT (dbal.ctx_is_admin() OR w.created_by = dbal.ctx_user()) THEN
        PERFORM dbal.raise_error(403, 'only its creator or an admin may unarchive this workflow',
                                 jsonb_build_object('id', p_id));
    END IF;
    -- the name must be free among live workflows (dbal.free_name sees only live ones once the
    -- archive is hidden again)
    PERFORM set_config('dbal.archived', '', true);
    v_name := dbal.free_name(p_tenant, w.name);
    PERFORM set_config('dbal.archived', 'visible', true);
    UPDATE dbal.workflows x
       SET archived_at = NULL, archived_by = NULL, name = v_name, updated_by = p_user
     WHERE x.tenant_id = p_tenant AND x.id = p_id;
    PERFORM dbal.audit('unarchive', p_id, jsonb_build_object(
        'name', v_name, 'archived_name', w.name, 'archived_at', w.archived_at));
    PERFORM set_config('dbal.archived', '', true);
    RETURN QUERY SELECT * FROM dbal.workflows x WHERE x.tenant_id = p_tenant AND x.id = p_id;
END
$$;

RESET ROLE;
