-- 0005_limits.sql — hard limits on input, enforced by the database (issue 11).
--
-- First part: the text of sql/15_limits.sql (limit_value, limits, within, the CHECK constraints
-- on workflows and executions). Second part: the functions of sql/40_locks.sql and
-- sql/70_api.sql that now apply those limits (check_lease reads them; filter_sql and api_search
-- bound search texts; api_list bounds offset + limit; free_name serialises renaming writers of a
-- tenant, which fixes concurrent clones/imports picking the same name). CREATE OR REPLACE keeps
-- their owner and grants.
--
-- Adding the constraints validates existing rows: a database holding a definition over a limit
-- (deeper than 64 levels, over 10,000 nodes, …) fails this migration, naming the row's field;
-- fix or remove that row first.

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
            'search_terms', 'filter_values', 'list_window', 'lease_min_ms', 'lease_max_ms',
            'duration_max_ms', 'error_length', 'execution_id_length']) AS n
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

-- The executions' existing partitions may be owned by whoever ran pg_partman's maintenance
-- (a superuser): the migration's own login (a superuser) adds the constraint to all of them.
RESET ROLE;
ALTER TABLE dbal.workflow_executions
    ADD CONSTRAINT workflow_executions_limit CHECK (
        dbal.within(length(error), 'error', 'error_length')
        AND dbal.within(length(executed_by), 'user_id', 'user_id_length')
        AND dbal.within(CASE WHEN duration_ms IS NOT NULL
                             THEN ceil(least(duration_ms, 1e18::float8))::bigint END,
                        'execution_time_ms', 'duration_max_ms'));
SET LOCAL ROLE @owner_role@;

-- The checks run as the writer: the application role executes them (nothing else).
REVOKE ALL ON FUNCTION dbal.limit_value(text), dbal.limits(),
    dbal.limit_exceeded(text, text, bigint), dbal.within(bigint, text, text),
    dbal.json_within(jsonb, text), dbal.longest(text[]), dbal.check_search(text, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dbal.limit_value(text), dbal.limits(),
    dbal.limit_exceeded(text, text, bigint), dbal.within(bigint, text, text),
    dbal.json_within(jsonb, text), dbal.longest(text[]), dbal.check_search(text, text)
    TO @app_role@;


-- Functions of sql/40_locks.sql and sql/70_api.sql that apply the limits.

-- check_lease(timeout_ms): VALIDATION_ERROR (422) unless a lease length lies within the limits
-- lease_min_ms .. lease_max_ms (1 ms to 24 hours, sql/15_limits.sql).
CREATE OR REPLACE FUNCTION dbal.check_lease(p_timeout_ms integer) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    AS $$
BEGIN
    IF p_timeout_ms IS NULL OR p_timeout_ms < dbal.limit_value('lease_min_ms')
       OR p_timeout_ms > dbal.limit_value('lease_max_ms') THEN
        PERFORM dbal.raise_error(422, format('timeout_ms must be between %s and %s',
                                             dbal.limit_value('lease_min_ms'),
                                             dbal.limit_value('lease_max_ms')),
                                 jsonb_build_object('field', 'timeout_ms', 'limit', 'lease_ms',
                                                    'timeout_ms', p_timeout_ms,
                                                    'min', dbal.limit_value('lease_min_ms'),
                                                    'max', dbal.limit_value('lease_max_ms')));
    END IF;
END
$$;

-- filter_sql(filter): a WHERE condition over dbal.workflows (alias w) for a filter object with
-- the keys enabled, is_locked (a live lease), category, created_by, name, ids, tags (any of),
-- validation_status (as read: an expired 'valid' is 'stale'), last_execution_status and search
-- (web-search syntax). Text keys take one value or a list of them. Values are quoted with
-- format('%L'); an unknown key is VALIDATION_ERROR (422).
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
                dbal.check_search(v_value #>> '{}', 'filter.search'));
        ELSE
            PERFORM dbal.raise_error(422, format('unknown filter field %L', v_key),
                                     jsonb_build_object('field', v_key));
        END CASE;
    END LOOP;
    RETURN array_to_string(v_parts, ' AND ');
END
$$;

-- api_list(...): one page of the tenant's workflows matching the filter, sorted by p_sort
-- (created_at, updated_at, last_executed_at, execution_count, name) then id, with the total
-- number of matches on every row. A page past the end returns one row with wf NULL and the total.
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
    PERFORM dbal.within(p_offset::bigint + p_limit, 'page', 'list_window');
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

-- api_search(tenant, user, role, text, limit): best matches first. Full-text (web-search
-- syntax: "a -b", quoted phrases) over name, description and tags, ranking at most 1000
-- candidates; when that finds fewer than p_limit, names similar to the text (pg_trgm,
-- similarity >= 0.3) fill up the list, so a typo in a name still finds it. The fallback keeps
-- the query's exclusions ("-word" never matches) and is skipped for quoted phrases, which ask
-- for exact words.
CREATE OR REPLACE FUNCTION dbal.api_search(p_tenant text, p_user text, p_role text, p_query text, p_limit integer)
    RETURNS TABLE (rank real, wf dbal.workflows)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_query tsquery;
    v_positive text;
    v_excluded tsquery;
    v_found integer;
BEGIN
    PERFORM dbal.enter_app(p_tenant, p_user, p_role);
    IF p_limit NOT BETWEEN 1 AND 1000 THEN
        PERFORM dbal.raise_error(422, 'limit must be 1..1000');
    END IF;
    v_query := websearch_to_tsquery('english'::regconfig,
                                    coalesce(dbal.check_search(p_query, 'search'), ''));
    RETURN QUERY
        SELECT r.rank, w
          FROM (SELECT c.id, (ts_rank(c.search_document, v_query) + 1)::real AS rank, c.name
                  FROM (SELECT x.id, x.name, x.search_document FROM dbal.workflows x
                         WHERE x.tenant_id = p_tenant AND x.search_document @@ v_query
                         LIMIT 1000) c
                 ORDER BY 2 DESC, c.name, c.id
                 LIMIT p_limit) r
          JOIN dbal.workflows w ON w.tenant_id = p_tenant AND w.id = r.id
         ORDER BY r.rank DESC, r.name, r.id;
    GET DIAGNOSTICS v_found = ROW_COUNT;
    IF v_found >= p_limit OR position('"' IN coalesce(p_query, '')) > 0 THEN
        RETURN;
    END IF;
    v_positive := btrim(regexp_replace(p_query, '(^|\s)-\S+', ' ', 'g'));
    v_excluded := websearch_to_tsquery('english'::regconfig, array_to_string(ARRAY(
        SELECT substr(m[1], 2) FROM regexp_matches(p_query, '(?:^|\s)(-\S+)', 'g') AS m), ' or '));
    IF length(v_positive) >= 3 THEN
        RETURN QUERY
            SELECT dbal_ext.similarity(w.name, v_positive), w
              FROM dbal.workflows w
             WHERE w.tenant_id = p_tenant
               AND dbal_ext.similarity(w.name, v_positive) >= 0.3
               AND NOT (w.search_document @@ v_query)
               AND (numnode(v_excluded) = 0 OR NOT (w.search_document @@ v_excluded))
             ORDER BY 1 DESC, w.name, w.id
             LIMIT p_limit - v_found;
    END IF;
END
$$;

-- free_name(tenant, name, taken): p_name if no workflow of the tenant (and no name in p_taken)
-- has it, else the first free "<name> (n)", n = 2, 3, … (trimmed to 255 characters).
-- Renaming writers of one tenant take turns: the first call of a transaction waits for the
-- tenant's naming lock (held to commit), then looks, so it sees the names other renaming writers
-- committed and two concurrent clones/imports never pick the same name.
CREATE OR REPLACE FUNCTION dbal.free_name(p_tenant text, p_name text, p_taken text[] DEFAULT '{}')
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

RESET ROLE;
