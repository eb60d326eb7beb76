-- 70_api_builders.sql — the SQL text the entry points build their dynamic statements from.
--
-- Guarantees:
--   * filter_sql, patch_set_sql, validation_set_sql and changeable_sql only build text: they read
--     and write nothing and are IMMUTABLE (the clock and context calls they write into the text
--     are evaluated by the statement that runs it; sql/citus/06_functions.sql replaces
--     changeable_sql on Citus by a STABLE one writing them in as literals).
--   * Keys come from a fixed list per builder (an unknown key is VALIDATION_ERROR, 422) and every
--     value is quoted with format('%L') (identifiers with %I): a caller's input is never SQL.
--   * SECURITY INVOKER, executable by @app_role@; the entry points of sql/71_api_writes.sql,
--     sql/72_archive.sql and sql/74_api_reads.sql call them.

SET LOCAL ROLE @owner_role@;

-- filter_sql(filter): a WHERE condition over dbal.workflows (alias w) for a filter object with
-- the keys enabled, is_locked (a live lease), category, created_by, name, ids, tags (any of),
-- validation_status (as read: an expired 'valid' is 'stale'), last_execution_status, search
-- (web-search syntax) and archived (true: only archived workflows, which the caller must also
-- make visible with dbal.ctx_archived(); false or absent: live ones, as the policies show).
-- Text keys take one value or a list of them. Values are quoted with
-- format('%L'); an unknown key is VALIDATION_ERROR (422).
CREATE FUNCTION dbal.filter_sql(p_filter jsonb) RETURNS text
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
                'dbal.lease_live(w.is_locked, w.lock_expires_at, clock_timestamp()) = %L::boolean',
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
            v_parts := v_parts || format('w.tags OPERATOR(dbal.&&) %L::text[]', v_list);
        WHEN 'search' THEN
            v_parts := v_parts || format(
                'w.search_document OPERATOR(dbal.@@) websearch_to_tsquery(''english''::regconfig, %L)',
                dbal.check_search(v_value #>> '{}', 'filter.search'));
        ELSE
            PERFORM dbal.raise_error(422, format('unknown filter field %L', v_key),
                                     jsonb_build_object('field', v_key));
        END CASE;
    END LOOP;
    RETURN array_to_string(v_parts, ' AND ');
END
$$;

-- patch_set_sql(patch): the SET list applying a patch object (keys name, description, nodes,
-- edges, enabled, variables, config, tags, category, updated_by) to alias-less dbal.workflows,
-- always bumping version. Unknown keys are VALIDATION_ERROR (422).
CREATE FUNCTION dbal.patch_set_sql(p_patch jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE
    AS $$
DECLARE
    v_sets text[] := ARRAY['version = version + 1'];
    v_key text;
    v_value jsonb;
BEGIN
    FOR v_key, v_value IN SELECT key, value FROM jsonb_each(coalesce(p_patch, '{}')) LOOP
        CASE v_key
        WHEN 'name', 'description', 'category', 'updated_by' THEN
            v_sets := v_sets || format('%I = %L', v_key, v_value #>> '{}');
        WHEN 'nodes', 'edges', 'variables', 'config' THEN
            v_sets := v_sets || format('%I = %L::jsonb', v_key, v_value::text);
        WHEN 'enabled' THEN
            v_sets := v_sets || format('enabled = %L::boolean', v_value #>> '{}');
        WHEN 'tags' THEN
            v_sets := v_sets || format('tags = %L::text[]',
                ARRAY(SELECT jsonb_array_elements_text(v_value)));
        WHEN 'validation_status', 'validation_errors', 'validator_version' THEN
            NULL;  -- handled by the caller's validation arguments
        ELSE
            PERFORM dbal.raise_error(422, format('unknown field %L', v_key),
                                     jsonb_build_object('field', v_key));
        END CASE;
    END LOOP;
    RETURN array_to_string(v_sets, ', ');
END
$$;

-- validation_set_sql(status, errors, validator_version): the SET list storing a validation
-- result (empty when p_status is NULL: the trigger then marks a changed definition stale).
CREATE FUNCTION dbal.validation_set_sql(p_status text, p_errors jsonb, p_validator_version integer)
    RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$
        SELECT CASE WHEN p_status IS NULL THEN ''
               ELSE format(', validation_status = %L, validation_errors = %L::jsonb, '
                           'validated_at = now(), valid_until = now() + dbal.validity_period(), '
                           'validator_version = %L::integer',
                           p_status, p_errors::text, p_validator_version) END
    $$;

-- changeable_sql(): the condition (over alias w) a bulk write adds so that it skips the rows the
-- caller may not change: another creator's (unless admin, god or supergod) and rows locked by
-- another user. dbal.writable() applies the same rules to one row, with an error for each.
CREATE FUNCTION dbal.changeable_sql() RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$
        SELECT '(dbal.ctx_is_admin() OR w.created_by = dbal.ctx_user())'
               ' AND NOT (dbal.lease_live(w.is_locked, w.lock_expires_at, clock_timestamp())'
               ' AND w.locked_by <> dbal.ctx_user())'
    $$;

RESET ROLE;
