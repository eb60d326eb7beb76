-- 0003_security.sql — no side channels, no forged state (issue 9).
--
-- Upgrades a 0001 + 0002 database to what sql/ installs fresh:
--   * the application role writes no table: every write goes through SECURITY DEFINER entry
--     points; ids are the database's; validation results live at most dbal.validity_period();
--   * delete archives (archived_at): history, executions, roll-ups and audit stay; foreign keys
--     lose ON DELETE CASCADE; only an operator's purge (dbal.purge_archived) removes rows;
--   * analysts hold no privilege on base tables: dbal_analytics views read through opaque
--     SECURITY DEFINER functions, one granted tenant at a time; the subquery policies go;
--   * database-wide statistics, row estimates, sizes, advisory locks, large objects and
--     temporary tables are closed to PUBLIC (sql/97_catalog_hardening.sql).
-- Function bodies are the same text as in sql/; comments describing them live there.

SET LOCAL ROLE @owner_role@;

-- context helpers (sql/01_context.sql)
CREATE FUNCTION dbal.ctx_archived() RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT current_setting('dbal.archived', true) = 'visible' $$;
CREATE FUNCTION dbal.validity_period() RETURNS interval
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT interval '1 hour' $$;

-- workflows: archive columns, live-name uniqueness, bounded validation results (sql/10_workflows.sql)
ALTER TABLE dbal.workflows ADD COLUMN archived_at timestamptz, ADD COLUMN archived_by text;
ALTER TABLE dbal.workflows DROP CONSTRAINT workflows_tenant_name_key;
-- results stored before this migration that break the new rules read as stale from now on
UPDATE dbal.workflows
   SET valid_until = validated_at + dbal.validity_period()
 WHERE valid_until > validated_at + dbal.validity_period();
UPDATE dbal.workflows
   SET validation_status = 'stale', validator_version = NULL
 WHERE validator_version > dbal.current_validator_version();
ALTER TABLE dbal.workflows
    ADD CONSTRAINT workflows_validity_bounded CHECK (
        valid_until IS NULL
        OR (validated_at IS NOT NULL AND valid_until <= validated_at + dbal.validity_period())),
    ADD CONSTRAINT workflows_validator_known CHECK (
        validator_version IS NULL OR validator_version <= dbal.current_validator_version()),
    ADD CONSTRAINT workflows_archive_consistent CHECK ((archived_at IS NULL) = (archived_by IS NULL));
CREATE UNIQUE INDEX workflows_tenant_name_key ON dbal.workflows (tenant_id, name)
    WHERE archived_at IS NULL;
CREATE INDEX workflows_tenant_archived_idx ON dbal.workflows (tenant_id, archived_at DESC, id)
    WHERE archived_at IS NOT NULL;

-- no ON DELETE CASCADE from workflows to their records (sql/11, sql/13)
ALTER TABLE dbal.workflow_versions DROP CONSTRAINT workflow_versions_workflow_fkey,
    ADD CONSTRAINT workflow_versions_workflow_fkey FOREIGN KEY (tenant_id, workflow_id)
        REFERENCES dbal.workflows (tenant_id, id);
ALTER TABLE dbal.workflow_executions DROP CONSTRAINT workflow_executions_workflow_fkey,
    ADD CONSTRAINT workflow_executions_workflow_fkey FOREIGN KEY (tenant_id, workflow_id)
        REFERENCES dbal.workflows (tenant_id, id);
ALTER TABLE dbal.execution_keys DROP CONSTRAINT execution_keys_workflow_fkey,
    ADD CONSTRAINT execution_keys_workflow_fkey FOREIGN KEY (tenant_id, workflow_id)
        REFERENCES dbal.workflows (tenant_id, id);
ALTER TABLE dbal.workflow_stats_hourly DROP CONSTRAINT workflow_stats_hourly_workflow_fkey,
    ADD CONSTRAINT workflow_stats_hourly_workflow_fkey FOREIGN KEY (tenant_id, workflow_id)
        REFERENCES dbal.workflows (tenant_id, id);
ALTER TABLE dbal.workflow_stats_daily DROP CONSTRAINT workflow_stats_daily_workflow_fkey,
    ADD CONSTRAINT workflow_stats_daily_workflow_fkey FOREIGN KEY (tenant_id, workflow_id)
        REFERENCES dbal.workflows (tenant_id, id);

-- triggers (sql/30_workflow_triggers.sql)
CREATE OR REPLACE FUNCTION dbal.workflows_before_write() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF NEW.validation_status IN ('valid', 'invalid')
       AND (TG_OP = 'INSERT' OR NEW.validated_at IS DISTINCT FROM OLD.validated_at
            OR NEW.validation_status IS DISTINCT FROM OLD.validation_status) THEN
        NEW.validated_at := now();
        NEW.valid_until := least(coalesce(NEW.valid_until, 'infinity'),
                                 now() + dbal.validity_period());
    END IF;
    IF TG_OP = 'INSERT' THEN
        NEW.version := 1;
        NEW.created_at := now();
        NEW.updated_at := NEW.created_at;
        IF NEW.validation_status = 'stale' THEN
            NEW.validation_status := 'pending';
        END IF;
        RETURN NEW;
    END IF;

    IF dbal.content_changed(OLD, NEW) OR NEW.version IS DISTINCT FROM OLD.version THEN
        NEW.version := OLD.version + 1;
        NEW.updated_at := greatest(now(), OLD.updated_at);
    ELSE
        NEW.version := OLD.version;
        IF (OLD.validation_status, OLD.validated_at) IS DISTINCT FROM (NEW.validation_status, NEW.validated_at) THEN
            NEW.updated_at := greatest(now(), OLD.updated_at);
        ELSE
            NEW.updated_at := OLD.updated_at;
        END IF;
    END IF;
    NEW.created_at := OLD.created_at;
    NEW.created_by := OLD.created_by;

    IF (OLD.nodes, OLD.edges, OLD.variables) IS DISTINCT FROM (NEW.nodes, NEW.edges, NEW.variables)
       AND NEW.validated_at IS NOT DISTINCT FROM OLD.validated_at
       AND NEW.validation_status <> 'pending' THEN
        NEW.validation_status := 'stale';
    END IF;
    RETURN NEW;
END
$$;
CREATE OR REPLACE FUNCTION dbal.system_columns() RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT ARRAY['execution_count', 'finished_execution_count', 'last_executed_at',
                       'last_execution_status', 'average_execution_time', 'is_locked',
                       'locked_by', 'locked_at', 'lock_expires_at', 'lock_token',
                       'archived_at', 'archived_by'] $$;
CREATE OR REPLACE FUNCTION dbal.workflows_after_statement() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_user text := coalesce(dbal.ctx_user(), session_user::text);
    v_role text := dbal.ctx_role();
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO dbal.audit_log (tenant_id, user_id, user_role, operation, workflow_id, details)
        SELECT n.tenant_id, v_user, v_role, 'create', n.id, jsonb_build_object('name', n.name)
        FROM new_rows n;
    ELSIF TG_OP = 'DELETE' THEN
        -- only an operator's purge deletes rows (sql/73_purge.sql): audited as such
        INSERT INTO dbal.audit_log (tenant_id, user_id, user_role, operation, workflow_id, details)
        SELECT o.tenant_id, v_user, v_role, 'purge', o.id,
               jsonb_build_object('name', o.name, 'version', o.version)
        FROM old_rows o;
    ELSE
        INSERT INTO dbal.workflow_versions (tenant_id, workflow_id, version, name, description,
                                            nodes, edges, variables, config, created_by,
                                            created_at, replaced_by, replaced_at)
        SELECT o.tenant_id, o.id, o.version, o.name, o.description, o.nodes, o.edges,
               o.variables, o.config, coalesce(o.updated_by, o.created_by), o.updated_at,
               coalesce(n.updated_by, v_user), n.updated_at
        FROM old_rows o JOIN new_rows n ON n.tenant_id = o.tenant_id AND n.id = o.id
        WHERE (o.nodes, o.edges, o.variables, o.config) IS DISTINCT FROM (n.nodes, n.edges, n.variables, n.config);

        INSERT INTO dbal.audit_log (tenant_id, user_id, user_role, operation, workflow_id,
                                    changed_fields, details)
        SELECT c.tenant_id, v_user, v_role, 'update', c.id, c.fields,
               jsonb_build_object('version', c.version)
        FROM (
            SELECT n.tenant_id, n.id, n.version,
                   ARRAY(SELECT nk.key
                         FROM jsonb_each(to_jsonb(n)) nk
                         JOIN jsonb_each(to_jsonb(o)) ok ON ok.key = nk.key
                         WHERE nk.value IS DISTINCT FROM ok.value
                           AND nk.key NOT IN ('updated_at', 'version', 'search_document')
                         ORDER BY nk.key) AS fields,
                   n.version <> o.version AS bumped
            FROM old_rows o JOIN new_rows n ON n.tenant_id = o.tenant_id AND n.id = o.id
        ) c
        WHERE c.bumped OR NOT (c.fields <@ dbal.system_columns());
    END IF;
    RETURN NULL;
END
$$;

-- policies (sql/50_policies.sql)
DROP POLICY workflows_app_insert ON dbal.workflows;
DROP POLICY workflows_app_update ON dbal.workflows;
DROP POLICY workflows_app_delete ON dbal.workflows;
DROP POLICY workflows_app_select ON dbal.workflows;
DROP POLICY workflows_owner_all ON dbal.workflows;
CREATE POLICY workflows_app_select ON dbal.workflows FOR SELECT TO @app_role@
    USING (tenant_id = dbal.ctx_tenant() AND (archived_at IS NULL OR dbal.ctx_archived()));
CREATE POLICY workflows_owner_all ON dbal.workflows FOR ALL TO @owner_role@
    USING (tenant_id = dbal.ctx_tenant() AND (archived_at IS NULL OR dbal.ctx_archived()))
    WITH CHECK (tenant_id = dbal.ctx_tenant());

-- entry points (sql/70_api.sql, sql/72_archive.sql, sql/73_purge.sql)
DROP FUNCTION dbal.api_insert(text, text, text, uuid[], text[], text[], jsonb[], jsonb[], jsonb[],
                              jsonb[], jsonb[], text[], boolean[], text[], jsonb[], integer, boolean);
CREATE OR REPLACE FUNCTION dbal.enter_app(p_tenant text, p_user text, p_role text) RETURNS text
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_current text;
BEGIN
    IF current_user::text NOT IN ('@app_role@', '@owner_role@') THEN
        PERFORM set_config('role', '@app_role@', true);
    END IF;
    IF p_tenant IS NULL OR p_tenant = '' OR p_user IS NULL OR p_role IS NULL THEN
        PERFORM dbal.raise_error(403, 'tenant, user and role are required');
    END IF;
    IF p_role NOT IN ('user', 'admin', 'god', 'supergod') THEN
        PERFORM dbal.raise_error(403, format('unknown role %L', p_role));
    END IF;
    v_current := NULLIF(current_setting('dbal.tenant_id', true), '');
    IF v_current <> p_tenant THEN
        PERFORM dbal.raise_error(4034, 'tenant argument does not match the request context',
                                 jsonb_build_object('context', v_current, 'argument', p_tenant));
    END IF;
    PERFORM set_config('dbal.tenant_id', p_tenant, true), set_config('dbal.user_id', p_user, true),
            set_config('dbal.user_role', p_role, true);
    RETURN p_tenant;
END
$$;
CREATE OR REPLACE FUNCTION dbal.filter_sql(p_filter jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE
    AS $$
DECLARE
    v_parts text[] := ARRAY['true'];
    v_key text;
    v_value jsonb;
    v_list text[];  -- the value as a list of texts (a single value: a list of one)
BEGIN
    IF p_filter IS NULL OR p_filter = 'null'::jsonb THEN
        RETURN 'true';
    END IF;
    IF jsonb_typeof(p_filter) <> 'object' THEN
        PERFORM dbal.raise_error(422, 'filter must be an object');
    END IF;
    FOR v_key, v_value IN SELECT key, value FROM jsonb_each(p_filter) LOOP
        CONTINUE WHEN v_value = 'null'::jsonb;
        v_list := CASE WHEN jsonb_typeof(v_value) = 'array'
                       THEN ARRAY(SELECT jsonb_array_elements_text(v_value))
                       ELSE ARRAY[v_value #>> '{}'] END;
        CASE v_key
        WHEN 'enabled' THEN
            v_parts := v_parts || format('w.enabled = %L::boolean', v_value #>> '{}');
        WHEN 'archived' THEN
            v_parts := v_parts || format('(w.archived_at IS NOT NULL) = %L::boolean',
                                         v_value #>> '{}');
        WHEN 'is_locked' THEN
            v_parts := v_parts || format(
                '(w.is_locked AND w.lock_expires_at > clock_timestamp()) = %L::boolean',
                v_value #>> '{}');
        WHEN 'category', 'created_by', 'name', 'last_execution_status' THEN
            v_parts := v_parts || format('w.%I = ANY (%L::text[])', v_key, v_list);
        WHEN 'validation_status' THEN
            v_parts := v_parts || format(
                'dbal.effective_validation_status(w.validation_status, w.valid_until, '
                'w.validator_version) = ANY (%L::text[])', v_list);
        WHEN 'ids' THEN
            v_parts := v_parts || format('w.id = ANY (%L::uuid[])',
                ARRAY(SELECT jsonb_array_elements_text(v_value)));
        WHEN 'tags' THEN
            v_parts := v_parts || format('w.tags && %L::text[]', v_list);
        WHEN 'search' THEN
            v_parts := v_parts || format(
                'w.search_document @@ websearch_to_tsquery(''english''::regconfig, %L)',
                v_value #>> '{}');
        ELSE
            PERFORM dbal.raise_error(422, format('unknown filter field %L', v_key),
                                     jsonb_build_object('field', v_key));
        END CASE;
    END LOOP;
    RETURN array_to_string(v_parts, ' AND ');
END
$$;
CREATE OR REPLACE FUNCTION dbal.api_list(
        p_tenant text, p_user text, p_role text, p_filter jsonb, p_sort text, p_desc boolean,
        p_offset integer, p_limit integer)
    RETURNS TABLE (total bigint, wf dbal.workflows)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_where text;
    v_dir text := CASE WHEN p_desc THEN 'DESC' ELSE 'ASC' END;
BEGIN
    PERFORM dbal.enter_app(p_tenant, p_user, p_role);
    IF p_sort NOT IN ('created_at', 'updated_at', 'last_executed_at', 'execution_count', 'name') THEN
        PERFORM dbal.raise_error(422, format('unknown sort field %L', p_sort),
                                 jsonb_build_object('field', p_sort));
    END IF;
    IF p_limit NOT BETWEEN 1 AND 1000 OR p_offset < 0 THEN
        PERFORM dbal.raise_error(422, 'limit must be 1..1000 and offset >= 0');
    END IF;
    v_where := dbal.filter_sql(p_filter);
    IF coalesce((p_filter ->> 'archived')::boolean, false) THEN
        PERFORM set_config('dbal.archived', 'visible', true);
    END IF;
    -- Sort and count over (id, sort key) only, then read the page's rows by primary key: a
    -- whole-row value would detoast every matching definition, not just the page's.
    RETURN QUERY EXECUTE format(
        'SELECT p.total, w FROM (
             SELECT w.id, count(*) OVER ()::bigint AS total,
                    row_number() OVER (ORDER BY w.%I %s NULLS LAST, w.id %s) AS rn
               FROM dbal.workflows w
              WHERE w.tenant_id = $1 AND %s
              ORDER BY w.%I %s NULLS LAST, w.id %s OFFSET $2 LIMIT $3) p
           JOIN dbal.workflows w ON w.tenant_id = $1 AND w.id = p.id
          ORDER BY p.rn',
        p_sort, v_dir, v_dir, v_where, p_sort, v_dir, v_dir)
        USING p_tenant, p_offset, p_limit;
    IF NOT FOUND AND p_offset > 0 THEN
        RETURN QUERY EXECUTE format(
            'SELECT count(*)::bigint, NULL::dbal.workflows FROM dbal.workflows w
              WHERE w.tenant_id = $1 AND %s', v_where)
            USING p_tenant;
    END IF;
END
$$;
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
CREATE OR REPLACE FUNCTION dbal.validation_set_sql(p_status text, p_errors jsonb, p_validator_version integer)
    RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$
        SELECT CASE WHEN p_status IS NULL THEN ''
               ELSE format(', validation_status = %L, validation_errors = %L::jsonb, '
                           'validated_at = now(), valid_until = now() + dbal.validity_period(), '
                           'validator_version = %L::integer',
                           p_status, p_errors::text, p_validator_version) END
    $$;
CREATE OR REPLACE FUNCTION dbal.api_update(
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
CREATE OR REPLACE FUNCTION dbal.api_update_many(
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
CREATE OR REPLACE FUNCTION dbal.store_validation(
        p_tenant text, p_user text, p_role text, p_id uuid, p_version integer,
        p_status text, p_errors jsonb, p_validator_version integer)
    RETURNS boolean
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_count integer;
BEGIN
    PERFORM dbal.enter(p_tenant, p_user, p_role);
    IF p_status NOT IN ('valid', 'invalid') THEN
        PERFORM dbal.raise_error(422, 'a validation result is valid or invalid');
    END IF;
    UPDATE dbal.workflows w
       SET validation_status = p_status, validation_errors = p_errors, validated_at = now(),
           valid_until = now() + dbal.validity_period(), validator_version = p_validator_version
     WHERE w.tenant_id = p_tenant AND w.id = p_id AND w.version = p_version;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count = 1;
END
$$;
CREATE OR REPLACE FUNCTION dbal.api_delete(p_tenant text, p_user text, p_role text, p_id uuid)
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
CREATE OR REPLACE FUNCTION dbal.api_delete_many(p_tenant text, p_user text, p_role text, p_filter jsonb)
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

-- analysts (sql/95_analysts.sql)
DROP POLICY workflows_analyst_select ON dbal.workflows;
DROP POLICY workflow_versions_analyst_select ON dbal.workflow_versions;
DROP POLICY audit_log_analyst_select ON dbal.audit_log;
DROP POLICY workflow_executions_analyst_select ON dbal.workflow_executions;
DROP POLICY execution_keys_analyst_select ON dbal.execution_keys;
DROP POLICY workflow_stats_hourly_analyst_select ON dbal.workflow_stats_hourly;
DROP POLICY workflow_stats_daily_analyst_select ON dbal.workflow_stats_daily;
CREATE POLICY analyst_grants_owner_select ON dbal.analyst_grants FOR SELECT TO @owner_role@
    USING (login = session_user);
CREATE POLICY audit_log_owner_select ON dbal.audit_log FOR SELECT TO @owner_role@
    USING (tenant_id = dbal.ctx_tenant());
DROP VIEW dbal_analytics.workflows, dbal_analytics.executions, dbal_analytics.daily_stats,
          dbal_analytics.audit_log;
CREATE FUNCTION dbal.analyst_enter(p_tenant text) RETURNS text[]
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_prev text[] := ARRAY[current_setting('dbal.tenant_id', true),
                           current_setting('dbal.archived', true)];
BEGIN
    IF p_tenant IS NOT NULL THEN
        PERFORM set_config('dbal.tenant_id', p_tenant, true),
                set_config('dbal.archived', 'visible', true);
    END IF;
    RETURN v_prev;
END
$$;
CREATE FUNCTION dbal.analyst_leave(p_prev text[]) RETURNS void
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
    AS $$ SELECT set_config('dbal.tenant_id', coalesce(p_prev[1], ''), true),
                 set_config('dbal.archived', coalesce(p_prev[2], ''), true) $$;
CREATE FUNCTION dbal.analyst_workflows()
    RETURNS TABLE (tenant_id text, id uuid, name text, description text, category text,
                   tags text[], enabled boolean, version integer, nodes jsonb, edges jsonb,
                   variables jsonb, config jsonb, validation_status text, validation_errors jsonb,
                   validated_at timestamptz, valid_until timestamptz, validator_version integer,
                   execution_count bigint, finished_execution_count bigint,
                   last_executed_at timestamptz, last_execution_status text,
                   average_execution_ms double precision, created_at timestamptz,
                   updated_at timestamptz, created_by text, updated_by text,
                   archived_at timestamptz)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan
    AS $$
DECLARE
    v_tenant text;
    v_prev text[] := dbal.analyst_enter(NULL);
BEGIN
    FOR v_tenant IN SELECT g.tenant_id FROM dbal.analyst_grants g
                     WHERE g.login = session_user ORDER BY g.tenant_id LOOP
        PERFORM dbal.analyst_enter(v_tenant);
        RETURN QUERY
            SELECT w.tenant_id, w.id, w.name, w.description, w.category, w.tags, w.enabled,
                   w.version, w.nodes, w.edges, w.variables, w.config,
                   dbal.effective_validation_status(w.validation_status, w.valid_until,
                                                    w.validator_version),
                   w.validation_errors, w.validated_at, w.valid_until, w.validator_version,
                   w.execution_count, w.finished_execution_count, w.last_executed_at,
                   w.last_execution_status, w.average_execution_time, w.created_at,
                   w.updated_at, w.created_by, w.updated_by, w.archived_at
              FROM dbal.workflows w WHERE w.tenant_id = v_tenant;
    END LOOP;
    PERFORM dbal.analyst_leave(v_prev);
END
$$;
CREATE FUNCTION dbal.analyst_executions()
    RETURNS TABLE (tenant_id text, workflow_id uuid, execution_id text, status text,
                   duration_ms double precision, started_at timestamptz,
                   finished_at timestamptz, executed_by text, error text,
                   recorded_at timestamptz)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan
    AS $$
DECLARE
    v_tenant text;
    v_prev text[] := dbal.analyst_enter(NULL);
BEGIN
    FOR v_tenant IN SELECT g.tenant_id FROM dbal.analyst_grants g
                     WHERE g.login = session_user ORDER BY g.tenant_id LOOP
        PERFORM dbal.analyst_enter(v_tenant);
        RETURN QUERY
            SELECT e.tenant_id, e.workflow_id, e.execution_id, e.status, e.duration_ms,
                   e.started_at, e.finished_at, e.executed_by, e.error, e.recorded_at
              FROM dbal.workflow_executions e WHERE e.tenant_id = v_tenant;
    END LOOP;
    PERFORM dbal.analyst_leave(v_prev);
END
$$;
CREATE FUNCTION dbal.analyst_daily_stats()
    RETURNS TABLE (tenant_id text, workflow_id uuid, day date, total bigint, success bigint,
                   failure bigint, pending bigint, timeout bigint, finished bigint,
                   avg_ms double precision, min_ms double precision, max_ms double precision)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan
    AS $$
DECLARE
    v_tenant text;
    v_prev text[] := dbal.analyst_enter(NULL);
BEGIN
    FOR v_tenant IN SELECT g.tenant_id FROM dbal.analyst_grants g
                     WHERE g.login = session_user ORDER BY g.tenant_id LOOP
        PERFORM dbal.analyst_enter(v_tenant);
        RETURN QUERY
            SELECT s.tenant_id, s.workflow_id, (s.day AT TIME ZONE 'UTC')::date,
                   (s.success + s.failure + s.pending + s.timeout)::bigint,
                   s.success, s.failure, s.pending, s.timeout, s.finished,
                   s.sum_ms / NULLIF(s.finished, 0), s.min_ms, s.max_ms
              FROM dbal.workflow_stats_daily s WHERE s.tenant_id = v_tenant;
    END LOOP;
    PERFORM dbal.analyst_leave(v_prev);
END
$$;
CREATE FUNCTION dbal.analyst_audit_log()
    RETURNS TABLE (tenant_id text, id bigint, at timestamptz, user_id text, user_role text,
                   operation text, workflow_id uuid, changed_fields text[], details jsonb)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan
    AS $$
DECLARE
    v_tenant text;
    v_prev text[] := dbal.analyst_enter(NULL);
BEGIN
    FOR v_tenant IN SELECT g.tenant_id FROM dbal.analyst_grants g
                     WHERE g.login = session_user ORDER BY g.tenant_id LOOP
        PERFORM dbal.analyst_enter(v_tenant);
        RETURN QUERY
            SELECT a.tenant_id, a.id, a.at, a.user_id, a.user_role, a.operation, a.workflow_id,
                   a.changed_fields, a.details
              FROM dbal.audit_log a WHERE a.tenant_id = v_tenant;
    END LOOP;
    PERFORM dbal.analyst_leave(v_prev);
END
$$;
CREATE VIEW dbal_analytics.workflows AS SELECT * FROM dbal.analyst_workflows();
CREATE VIEW dbal_analytics.executions AS SELECT * FROM dbal.analyst_executions();
CREATE VIEW dbal_analytics.daily_stats AS SELECT * FROM dbal.analyst_daily_stats();
CREATE VIEW dbal_analytics.audit_log AS SELECT * FROM dbal.analyst_audit_log();

RESET ROLE;

-- grants (sql/90_grants.sql, sql/95_analysts.sql)
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON dbal.workflows FROM @app_role@;
GRANT EXECUTE ON FUNCTION
    dbal.ctx_archived(),
    dbal.validity_period(),
    dbal.api_insert(text, text, text, text[], text[], jsonb[], jsonb[], jsonb[], jsonb[],
                    jsonb[], text[], boolean[], text[], jsonb[], integer, boolean),
    dbal.api_unarchive(text, text, text, uuid)
    TO @app_role@;
REVOKE ALL ON dbal.workflows, dbal.workflow_executions, dbal.workflow_stats_hourly,
              dbal.workflow_stats_daily, dbal.audit_log
    FROM @analyst_role@;
REVOKE ALL ON ALL TABLES IN SCHEMA dbal_analytics FROM PUBLIC;
GRANT SELECT ON dbal_analytics.workflows, dbal_analytics.executions, dbal_analytics.daily_stats,
                dbal_analytics.audit_log
    TO @analyst_role@;
GRANT EXECUTE ON FUNCTION
    dbal.analyst_workflows(), dbal.analyst_executions(), dbal.analyst_daily_stats(),
    dbal.analyst_audit_log()
    TO @analyst_role@;

-- catalog hardening (sql/97_catalog_hardening.sql)
DO $$
DECLARE
    r record;
    v_cols text;
BEGIN
    FOR r IN
        SELECT c.oid::regclass::text AS rel
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'pg_catalog' AND c.relkind = 'v'
           AND (c.relname LIKE 'pg\_stat\_%' OR c.relname LIKE 'pg\_statio\_%'
                OR c.relname = 'pg_locks')
         ORDER BY 1
    LOOP
        EXECUTE format('REVOKE SELECT ON %s FROM PUBLIC', r.rel);
        EXECUTE format('GRANT SELECT ON %s TO @owner_role@, @app_role@, pg_read_all_stats', r.rel);
    END LOOP;

    FOR r IN
        SELECT p.oid::regprocedure::text AS fn
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'pg_catalog'
           AND (p.proname LIKE 'pg\_stat\_get\_%' OR p.proname LIKE 'pg\_stat\_have\_%'
                OR p.proname IN ('pg_relation_size', 'pg_table_size', 'pg_indexes_size',
                                 'pg_total_relation_size', 'pg_database_size',
                                 'pg_tablespace_size', 'pg_lock_status', 'pg_blocking_pids',
                                 'lo_creat', 'lo_create', 'lo_from_bytea', 'lo_import')
                OR p.proname LIKE 'pg\_advisory\_%' OR p.proname LIKE 'pg\_try\_advisory\_%')
         ORDER BY 1
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', r.fn);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO @owner_role@, @app_role@, pg_read_all_stats',
                       r.fn);
    END LOOP;

    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO v_cols
      FROM pg_attribute a
     WHERE a.attrelid = 'pg_catalog.pg_class'::regclass AND a.attnum > 0 AND NOT a.attisdropped
       AND a.attname NOT IN ('reltuples', 'relpages', 'relallvisible', 'relallfrozen');
    REVOKE SELECT ON pg_catalog.pg_class FROM PUBLIC;
    EXECUTE format('GRANT SELECT (%s) ON pg_catalog.pg_class TO PUBLIC', v_cols);
    GRANT SELECT ON pg_catalog.pg_class TO @owner_role@, @app_role@, pg_read_all_stats;

    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO @owner_role@, @app_role@',
                   current_database());
END
$$;
