-- 15_limits.sql — the database's hard limits on input, and the checks that apply them.
--
-- Guarantees:
--   * dbal.limit_value(name) holds every limit once; pydbal/limits/ mirrors it as HARD and
--     tests/test_limits.py compares the two (dbal.limits() lists them all).
--   * Whatever writes a row — pydbal, direct SQL, an operator — a value over a limit is refused
--     with SQLSTATE D0422 (VALIDATION_ERROR) and DETAIL {"field", "limit", "max", "actual"}:
--     the CHECK constraints below call dbal.within(), which raises instead of answering false.
--   * Limits here are the ceiling: pydbal.connect(limits=...) may only refuse more.
--   * Definition size is measured on jsonb's text form (a space after each ':' and ','), so the
--     16 MiB here is at least 1.5 times any definition pydbal's 10 MiB maximum lets through.
-- The same text is the first part of migrations/0005_limits.sql.

SET LOCAL ROLE @owner_role@;

-- limit_value(name): the hard limit called name (NULL for an unknown name). IMMUTABLE and
-- inlined: a CHECK calling it compares with a constant.
CREATE FUNCTION dbal.limit_value(p_name text) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT CASE p_name
            WHEN 'definition_bytes' THEN 16777216   -- nodes+edges+variables+config, jsonb text
            WHEN 'nodes' THEN 10000                 -- elements of nodes
            WHEN 'json_depth' THEN 64               -- nested arrays/objects in a definition field
            WHEN 'name_length' THEN 255
            WHEN 'description_length' THEN 10000
            WHEN 'tags' THEN 64                     -- tags of one workflow
            WHEN 'tag_length' THEN 100
            WHEN 'tenant_id_length' THEN 255
            WHEN 'user_id_length' THEN 255
            WHEN 'search_length' THEN 500           -- characters of a search text
            WHEN 'search_terms' THEN 32             -- words of a search text
            WHEN 'filter_values' THEN 1000          -- values of one filter field
            WHEN 'list_window' THEN 100000          -- offset + limit of api_list
            WHEN 'page_size' THEN 1000              -- rows of one api_list / api_search call
            WHEN 'lease_min_ms' THEN 1
            WHEN 'lease_max_ms' THEN 86400000
            WHEN 'duration_max_ms' THEN 2592000000  -- 30 days
            WHEN 'error_length' THEN 65536
            WHEN 'execution_id_length' THEN 255
        END
    $$;

-- limits(): every limit with its value (for operators and for the test against pydbal's).
CREATE FUNCTION dbal.limits() RETURNS TABLE (name text, value bigint)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT n, dbal.limit_value(n) FROM unnest(ARRAY[
            'definition_bytes', 'nodes', 'json_depth', 'name_length', 'description_length',
            'tags', 'tag_length', 'tenant_id_length', 'user_id_length', 'search_length',
            'search_terms', 'filter_values', 'list_window', 'page_size', 'lease_min_ms',
            'lease_max_ms', 'duration_max_ms', 'error_length', 'execution_id_length']) AS n
    $$;

-- limit_exceeded(field, limit, actual): raises VALIDATION_ERROR (D0422) naming the field and
-- the limit. Never returns; typed boolean so that dbal.within() can call it in a CHECK.
CREATE FUNCTION dbal.limit_exceeded(p_field text, p_limit text, p_actual bigint)
    RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE
    AS $$
BEGIN
    PERFORM dbal.raise_error(422,
        format('%s: at most %s (limit %s)', p_field, dbal.limit_value(p_limit), p_limit),
        jsonb_build_object('field', p_field, 'limit', p_limit,
                           'max', dbal.limit_value(p_limit), 'actual', p_actual));
    RETURN false;
END
$$;

-- within(value, field, limit): true when value (NULL included) is at most the limit; raises
-- VALIDATION_ERROR otherwise. Inlined, so a passing check costs a comparison.
CREATE FUNCTION dbal.within(p_value bigint, p_field text, p_limit text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT CASE WHEN p_value IS NULL OR p_value <= dbal.limit_value(p_limit) THEN true
                    ELSE dbal.limit_exceeded(p_field, p_limit, p_value) END
    $$;

-- json_within(value, field): true unless value nests arrays/objects deeper than json_depth
-- (raises VALIDATION_ERROR then). The jsonpath walk stops at that depth.
CREATE FUNCTION dbal.json_within(p_value jsonb, p_field text) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE
    AS $$
BEGIN
    IF jsonb_path_exists(p_value, format(
            'strict $.**{%s} ? (@.type() == "array" || @.type() == "object")',
            dbal.limit_value('json_depth'))::jsonpath) THEN
        RETURN dbal.limit_exceeded(p_field, 'json_depth', NULL);
    END IF;
    RETURN true;
END
$$;

-- longest(texts): the length of the longest element (NULL for an empty array).
CREATE FUNCTION dbal.longest(p_texts text[]) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT max(length(t)) FROM unnest(p_texts) AS t $$;

-- check_search(text, field): the text, unless it is longer than search_length characters or
-- has more than search_terms words (VALIDATION_ERROR): websearch_to_tsquery of a long text
-- fails with "statement too complex" otherwise.
CREATE FUNCTION dbal.check_search(p_text text, p_field text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE
    AS $$
BEGIN
    PERFORM dbal.within(length(p_text), p_field, 'search_length'),
            dbal.within(cardinality(regexp_split_to_array(btrim(p_text), '\s+')), p_field,
                        'search_terms');
    RETURN p_text;
END
$$;

ALTER TABLE dbal.workflows
    ADD CONSTRAINT workflows_definition_limit CHECK (dbal.within(
        octet_length(nodes::text) + octet_length(edges::text) + octet_length(variables::text)
        + octet_length(config::text), 'definition', 'definition_bytes')),
    ADD CONSTRAINT workflows_nodes_limit CHECK (dbal.within(
        CASE WHEN jsonb_typeof(nodes) = 'array' THEN jsonb_array_length(nodes) END,
        'nodes', 'nodes')),
    ADD CONSTRAINT workflows_depth_limit CHECK (
        dbal.json_within(nodes, 'nodes') AND dbal.json_within(edges, 'edges')
        AND dbal.json_within(variables, 'variables') AND dbal.json_within(config, 'config')),
    ADD CONSTRAINT workflows_description_limit CHECK (
        dbal.within(length(description), 'description', 'description_length')),
    ADD CONSTRAINT workflows_tags_limit CHECK (
        dbal.within(cardinality(tags), 'tags', 'tags')
        AND dbal.within(dbal.longest(tags), 'tags', 'tag_length')),
    ADD CONSTRAINT workflows_user_limit CHECK (
        dbal.within(length(created_by), 'user_id', 'user_id_length')
        AND dbal.within(length(updated_by), 'user_id', 'user_id_length')
        AND dbal.within(length(locked_by), 'user_id', 'user_id_length'));

ALTER TABLE dbal.workflow_executions
    ADD CONSTRAINT workflow_executions_limit CHECK (
        dbal.within(length(error), 'error', 'error_length')
        AND dbal.within(length(executed_by), 'user_id', 'user_id_length')
        AND dbal.within(CASE WHEN duration_ms IS NOT NULL
                             THEN ceil(least(duration_ms, 1e18::float8))::bigint END,
                        'execution_time_ms', 'duration_max_ms'));

-- The checks run as the writer: the application role executes them (nothing else).
REVOKE ALL ON FUNCTION dbal.limit_value(text), dbal.limits(),
    dbal.limit_exceeded(text, text, bigint), dbal.within(bigint, text, text),
    dbal.json_within(jsonb, text), dbal.longest(text[]), dbal.check_search(text, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dbal.limit_value(text), dbal.limits(),
    dbal.limit_exceeded(text, text, bigint), dbal.within(bigint, text, text),
    dbal.json_within(jsonb, text), dbal.longest(text[]), dbal.check_search(text, text)
    TO @app_role@;

RESET ROLE;
