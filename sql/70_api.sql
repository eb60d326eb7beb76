-- 70_api.sql — the entry points of pydbal's Python API: one statement per request.
--
-- Each function takes the request's tenant, user and role as its first arguments, sets the
-- transaction-local context and runs the statement. One round trip, and on Citus each is
-- distributable by its p_tenant argument. Executable by @app_role@ only.
--   * Reads (api_get, api_list, api_search, api_history, api_executions, api_audit) are SECURITY
--     INVOKER: they switch to the application role for the rest of the transaction (so that a
--     superuser login — the embedded server, an operator's DSN — is still subject to row-level
--     security) and the policies of sql/50_policies.sql decide what they see.
--   * Writes (api_insert, api_update, api_update_many, store_validation, and the archive
--     functions of sql/72_archive.sql) are SECURITY DEFINER with a pinned search_path: the
--     application role may not write any table itself, so these functions are the only way in.
--     They run as @owner_role@, whose policies still confine them to the request's tenant, and
--     make the role checks (dbal.writable, changeable_sql) themselves. The database chooses ids
--     and validation lifetimes; a caller can only ask.

SET LOCAL ROLE @owner_role@;

-- enter_app(tenant, user, role): what dbal.enter does (same checks, same errors), after switching
-- the current role to @app_role@ until the end of the transaction (fails for a login that is not
-- a member of it); inside a SECURITY DEFINER entry point (current_user is @owner_role@) the role
-- stays, and the owner's policies apply. Tenant, user and role are all required. Written out in
-- one function, with one statement setting the context, because every read pays for it.
CREATE FUNCTION dbal.enter_app(p_tenant text, p_user text, p_role text) RETURNS text
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

-- api_get(tenant, user, role, id): the workflow, or no row (missing or another tenant's).
CREATE FUNCTION dbal.api_get(p_tenant text, p_user text, p_role text, p_id uuid)
    RETURNS SETOF dbal.workflows
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM dbal.enter_app(p_tenant, p_user, p_role);
    RETURN QUERY SELECT * FROM dbal.workflows w WHERE w.tenant_id = p_tenant AND w.id = p_id;
END
$$;

-- api_list(...): one page of the tenant's workflows matching the filter, sorted by p_sort
-- (created_at, updated_at, last_executed_at, execution_count, name; NULLs last in both
-- directions) then id in the same direction, as callers read them (the columns of
-- pydbal/queries.py's workflow_columns: expired validation is 'stale', an expired lease
-- unlocked), each row followed by the page's total, whether that total is exact, and whether
-- more rows follow the page. No row matches: one row with only those three set.
-- With {"archived": true} in the filter it lists archived workflows instead of live ones.
--   * Keyset pages: p_after_key/p_after_id are the sort key (as text; NULL for a workflow with
--     no last_executed_at) and id of the last row of the previous page; the page starts right
--     after it, so rows inserted or archived meanwhile never shift a page (every row present
--     throughout is read exactly once). On the (tenant_id, key, id) indexes of
--     sql/10_workflows.sql a page costs its own rows at any depth. p_offset (the compatible page=
--     form) skips rows after that point.
--   * total: without a filter (other than archived) the tenant's counter (sql/14_tenant_counters),
--     exact and O(1); with a filter, matches are counted up to 1000: beyond that total is 1000
--     and total_exact false ("at least"). has_more comes from reading one id more than the page.
--     A filtered list costs at most 1001 matches (counted, and the page sorted among them) and,
--     past the cap, one ordered page.
--   * Unfiltered pages sorted by created_at, updated_at or name are static statements (plans
--     cached for the session); the others are built with format() and planned per call.
CREATE FUNCTION dbal.api_list(
        p_tenant text, p_user text, p_role text, p_filter jsonb, p_sort text, p_desc boolean,
        p_offset integer, p_limit integer, p_after_key text DEFAULT NULL,
        p_after_id uuid DEFAULT NULL)
    RETURNS TABLE (
        id uuid, tenant_id text, name text, description text, nodes jsonb, edges jsonb,
        enabled boolean, version integer, execution_count bigint, last_executed_at timestamptz,
        last_execution_status text, average_execution_time double precision,
        created_at timestamptz, updated_at timestamptz, created_by text, updated_by text,
        variables jsonb, config jsonb, tags text[], category text, validation_status text,
        validation_errors jsonb, validated_at timestamptz, valid_until timestamptz,
        validator_version integer, is_locked boolean, locked_by text, locked_at timestamptz,
        lock_expires_at timestamptz, archived_at timestamptz,
        total bigint, total_exact boolean, has_more boolean)
    LANGUAGE plpgsql
    -- the static statements' plans are made once per session (custom plans were re-made on
    -- every call: ~0.2 ms of a 0.4 ms page)
    SET plan_cache_mode = force_generic_plan
    AS $$
#variable_conflict use_column
DECLARE
    c_cap constant integer := 1000;  -- filtered totals are exact up to this many matches
    v_where text;
    v_dir text := CASE WHEN p_desc THEN 'DESC' ELSE 'ASC' END;
    v_op text := CASE WHEN p_desc THEN '<' ELSE '>' END;
    v_type text;
    v_archived boolean;
    v_plain boolean;
    v_total bigint;
    v_exact boolean := true;
    v_ts timestamptz;
    v_id uuid;
    v_ids uuid[];
BEGIN
    PERFORM dbal.enter_app(p_tenant, p_user, p_role);
    v_type := CASE p_sort WHEN 'name' THEN 'text' WHEN 'execution_count' THEN 'bigint'
                          WHEN 'created_at' THEN 'timestamptz' WHEN 'updated_at' THEN 'timestamptz'
                          WHEN 'last_executed_at' THEN 'timestamptz' END;
    IF v_type IS NULL THEN
        PERFORM dbal.raise_error(422, format('unknown sort field %L', p_sort),
                                 jsonb_build_object('field', p_sort));
    END IF;
    IF p_limit NOT BETWEEN 1 AND 1000 OR p_offset < 0 THEN
        PERFORM dbal.raise_error(422, 'limit must be 1..1000 and offset >= 0');
    END IF;
    PERFORM dbal.within(p_offset::bigint + p_limit, 'page', 'list_window');
    IF p_filter IS NULL OR p_filter IN ('{}'::jsonb, 'null'::jsonb) THEN
        v_archived := false;
        v_plain := true;
    ELSE
        v_where := dbal.filter_sql(p_filter);
        v_archived := coalesce((p_filter ->> 'archived')::boolean, false);
        v_plain := NOT EXISTS (SELECT FROM jsonb_each(p_filter) e
                                WHERE e.key <> 'archived' AND e.value <> 'null');
        IF v_archived THEN
            PERFORM set_config('dbal.archived', 'visible', true);
        END IF;
    END IF;
    IF v_plain THEN
        SELECT CASE WHEN v_archived THEN c.archived ELSE c.live END INTO v_total
          FROM dbal.tenant_counters c WHERE c.tenant_id = p_tenant;
        v_total := coalesce(v_total, 0);
    ELSE
        -- one pass over at most c_cap + 1 matches (in any order, e.g. from a bitmap of the
        -- filter's index): how many there are and, when that is all of them, the page among them
        EXECUTE format(
            'WITH m AS MATERIALIZED (SELECT w.id, w.%1$I AS k FROM dbal.workflows w
                                      WHERE w.tenant_id = $1 AND %2$s LIMIT $6)
             SELECT (SELECT count(*) FROM m),
                    ARRAY(SELECT m.id FROM m WHERE %3$s
                           ORDER BY m.k %4$s NULLS LAST, m.id %4$s OFFSET $2 LIMIT $3)',
            p_sort, v_where,
            CASE WHEN p_after_id IS NULL THEN 'true'
                 WHEN p_after_key IS NULL THEN format('m.k IS NULL AND m.id %s $5', v_op)
                 ELSE format('(m.k IS NULL OR (m.k, m.id) %s ($4::%s, $5))', v_op, v_type) END,
            v_dir)
           INTO v_total, v_ids
          USING p_tenant, p_offset, p_limit + 1, p_after_key, p_after_id, c_cap + 1;
        v_exact := v_total <= c_cap;
        v_total := least(v_total, c_cap);
    END IF;

    IF v_exact AND NOT v_plain THEN
        NULL;  -- the page was read with the count
    ELSIF v_plain AND NOT v_archived AND p_sort IN ('created_at', 'updated_at') THEN
        -- before the first row: a key past every row (±infinity with the extreme id)
        IF p_after_id IS NULL THEN
            v_ts := CASE WHEN p_desc THEN 'infinity'::timestamptz ELSE '-infinity' END;
            v_id := CASE WHEN p_desc THEN 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid
                         ELSE '00000000-0000-0000-0000-000000000000' END;
        ELSE
            v_ts := p_after_key::timestamptz;
            v_id := p_after_id;
        END IF;
        IF p_sort = 'created_at' AND p_desc THEN
            v_ids := ARRAY(SELECT w.id FROM dbal.workflows w
                            WHERE w.tenant_id = p_tenant AND (w.created_at, w.id) < (v_ts, v_id)
                            ORDER BY w.created_at DESC, w.id DESC OFFSET p_offset LIMIT p_limit + 1);
        ELSIF p_sort = 'created_at' THEN
            v_ids := ARRAY(SELECT w.id FROM dbal.workflows w
                            WHERE w.tenant_id = p_tenant AND (w.created_at, w.id) > (v_ts, v_id)
                            ORDER BY w.created_at, w.id OFFSET p_offset LIMIT p_limit + 1);
        ELSIF p_desc THEN
            v_ids := ARRAY(SELECT w.id FROM dbal.workflows w
                            WHERE w.tenant_id = p_tenant AND (w.updated_at, w.id) < (v_ts, v_id)
                            ORDER BY w.updated_at DESC, w.id DESC OFFSET p_offset LIMIT p_limit + 1);
        ELSE
            v_ids := ARRAY(SELECT w.id FROM dbal.workflows w
                            WHERE w.tenant_id = p_tenant AND (w.updated_at, w.id) > (v_ts, v_id)
                            ORDER BY w.updated_at, w.id OFFSET p_offset LIMIT p_limit + 1);
        END IF;
    ELSIF v_plain AND NOT v_archived AND p_sort = 'name' AND NOT (p_desc AND p_after_id IS NULL) THEN
        -- names are never empty: ('', the smallest id) is before every row
        IF p_desc THEN
            v_ids := ARRAY(SELECT w.id FROM dbal.workflows w
                            WHERE w.tenant_id = p_tenant AND (w.name, w.id) < (p_after_key, p_after_id)
                            ORDER BY w.name DESC, w.id DESC OFFSET p_offset LIMIT p_limit + 1);
        ELSE
            v_ids := ARRAY(SELECT w.id FROM dbal.workflows w
                            WHERE w.tenant_id = p_tenant
                              AND (w.name, w.id) > (coalesce(p_after_key, ''), coalesce(p_after_id,
                                   '00000000-0000-0000-0000-000000000000'::uuid))
                            ORDER BY w.name, w.id OFFSET p_offset LIMIT p_limit + 1);
        END IF;
    ELSIF p_sort <> 'last_executed_at' THEN
        EXECUTE format(
            'SELECT ARRAY(SELECT w.id FROM dbal.workflows w WHERE w.tenant_id = $1 AND %s AND %s
                           ORDER BY w.%I %s, w.id %s OFFSET $2 LIMIT $3)',
            coalesce(v_where, 'true'),
            CASE WHEN p_after_id IS NULL THEN 'true'
                 ELSE format('(w.%I, w.id) %s ($4::%s, $5)', p_sort, v_op, v_type) END,
            p_sort, v_dir, v_dir)
           INTO v_ids USING p_tenant, p_offset, p_limit + 1, p_after_key, p_after_id;
    ELSE
        -- NULLS LAST in both directions: the rows with a key, then those without (by id), each
        -- part read in key order and bounded by the page, then merged.
        EXECUTE format(
            'SELECT ARRAY(SELECT u.i FROM (
                 (SELECT w.last_executed_at AS k, w.id AS i FROM dbal.workflows w
                   WHERE w.tenant_id = $1 AND %1$s AND w.last_executed_at IS NOT NULL AND %2$s
                   ORDER BY w.last_executed_at %4$s, w.id %4$s LIMIT $2 + $3)
                 UNION ALL
                 (SELECT NULL::timestamptz, w.id FROM dbal.workflows w
                   WHERE w.tenant_id = $1 AND %1$s AND w.last_executed_at IS NULL AND %3$s
                   ORDER BY w.id %4$s LIMIT $2 + $3)) u
              ORDER BY u.k %4$s NULLS LAST, u.i %4$s OFFSET $2 LIMIT $3)',
            coalesce(v_where, 'true'),
            CASE WHEN p_after_id IS NULL THEN 'true'
                 WHEN p_after_key IS NULL THEN 'false'
                 ELSE format('(w.last_executed_at, w.id) %s ($4::timestamptz, $5)', v_op) END,
            CASE WHEN p_after_id IS NULL OR p_after_key IS NOT NULL THEN 'true'
                 ELSE format('w.id %s $5', v_op) END,
            v_dir)
           INTO v_ids USING p_tenant, p_offset, p_limit + 1, p_after_key, p_after_id;
    END IF;

    IF cardinality(v_ids) = 0 THEN
        total := v_total;
        total_exact := v_exact;
        has_more := false;
        RETURN NEXT;
        RETURN;
    END IF;
    RETURN QUERY
        SELECT w.id, w.tenant_id, w.name, w.description, w.nodes, w.edges, w.enabled, w.version,
               w.execution_count, w.last_executed_at, w.last_execution_status,
               w.average_execution_time, w.created_at, w.updated_at, w.created_by, w.updated_by,
               w.variables, w.config, w.tags, w.category,
               dbal.effective_validation_status(w.validation_status, w.valid_until,
                                                w.validator_version),
               w.validation_errors, w.validated_at, w.valid_until, w.validator_version,
               w.is_locked AND w.lock_expires_at > clock_timestamp(),
               CASE WHEN w.lock_expires_at > clock_timestamp() THEN w.locked_by END,
               CASE WHEN w.lock_expires_at > clock_timestamp() THEN w.locked_at END,
               CASE WHEN w.lock_expires_at > clock_timestamp() THEN w.lock_expires_at END,
               w.archived_at, v_total, v_exact, cardinality(v_ids) > p_limit
          FROM unnest(v_ids[1:p_limit]) WITH ORDINALITY AS u(id, n)
          JOIN dbal.workflows w ON w.tenant_id = p_tenant AND w.id = u.id
         ORDER BY u.n;
END
$$;

-- api_search(tenant, user, role, text, limit): best matches first. Full-text (web-search
-- syntax: "a -b", quoted phrases) over name, description and tags, ranking at most 1000
-- candidates; when that finds fewer than p_limit, names similar to the text (pg_trgm,
-- similarity >= 0.3) fill up the list, so a typo in a name still finds it. The fallback keeps
-- the query's exclusions ("-word" never matches) and is skipped for quoted phrases, which ask
-- for exact words. Both parts are bounded: full-text candidates come from the search index and
-- trigram candidates from the name index (the % operator at threshold 0.3), at most 1000 each,
-- and only those are ranked, so a search never ranks every row of a large tenant.
CREATE FUNCTION dbal.api_search(p_tenant text, p_user text, p_role text, p_query text, p_limit integer)
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
                         WHERE x.tenant_id = p_tenant AND x.search_document OPERATOR(dbal.@@) v_query
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
        PERFORM set_config('pg_trgm.similarity_threshold', '0.3', true);
        RETURN QUERY
            SELECT r.sim, w
              FROM (SELECT c.id, c.name, dbal_ext.similarity(c.name, v_positive) AS sim
                      FROM (SELECT x.id, x.name FROM dbal.workflows x
                             WHERE x.tenant_id = p_tenant
                               AND x.name OPERATOR(dbal.%) v_positive
                               AND NOT (x.search_document OPERATOR(dbal.@@) v_query)
                               AND (numnode(v_excluded) = 0
                                    OR NOT (x.search_document OPERATOR(dbal.@@) v_excluded))
                             LIMIT 1000) c
                     WHERE dbal_ext.similarity(c.name, v_positive) >= 0.3
                     ORDER BY 3 DESC, c.name, c.id
                     LIMIT p_limit - v_found) r
              JOIN dbal.workflows w ON w.tenant_id = p_tenant AND w.id = r.id
             ORDER BY r.sim DESC, r.name, r.id;
    END IF;
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
    SELECT * INTO w FROM dbal.workflows x WHERE x.tenant_id = p_tenant AND x.id = p_id;
    IF NOT FOUND THEN
        PERFORM dbal.raise_error(4041, 'workflow not found', jsonb_build_object('id', p_id));
    END IF;
    IF NOT (dbal.ctx_is_admin() OR w.created_by = dbal.ctx_user()) THEN
        PERFORM dbal.raise_error(403, 'only its creator or an admin may change this workflow',
                                 jsonb_build_object('id', p_id));
    END IF;
    SELECT * INTO w FROM dbal.workflows x WHERE x.tenant_id = p_tenant AND x.id = p_id FOR UPDATE;
    IF w.is_locked AND w.lock_expires_at > clock_timestamp() AND w.locked_by <> dbal.ctx_user() THEN
        PERFORM dbal.raise_error(4231, 'workflow is locked by another user',
                                 jsonb_build_object('id', p_id, 'locked_by', w.locked_by,
                                                    'locked_at', w.locked_at,
                                                    'lock_expires_at', w.lock_expires_at));
    END IF;
    RETURN w;
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

-- changeable_sql(): the condition (over alias w) a bulk write adds so that it skips the rows the
-- caller may not change: another creator's (unless admin, god or supergod) and rows locked by
-- another user. dbal.writable() applies the same rules to one row, with an error for each.
CREATE FUNCTION dbal.changeable_sql() RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$
        SELECT '(dbal.ctx_is_admin() OR w.created_by = dbal.ctx_user())'
               ' AND NOT (w.is_locked AND w.lock_expires_at > clock_timestamp()'
               ' AND w.locked_by <> dbal.ctx_user())'
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

-- api_history(tenant, user, role, id): previous versions, newest first. 4041 when not visible.
CREATE FUNCTION dbal.api_history(p_tenant text, p_user text, p_role text, p_id uuid)
    RETURNS SETOF dbal.workflow_versions
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM dbal.enter_app(p_tenant, p_user, p_role);
    PERFORM 1 FROM dbal.workflows w WHERE w.tenant_id = p_tenant AND w.id = p_id;
    IF NOT FOUND THEN
        PERFORM dbal.raise_error(4041, 'workflow not found', jsonb_build_object('id', p_id));
    END IF;
    RETURN QUERY SELECT * FROM dbal.workflow_versions v
                  WHERE v.tenant_id = p_tenant AND v.workflow_id = p_id ORDER BY v.version DESC;
END
$$;

-- api_executions(...): recorded executions of one workflow, newest first. 4041 when not visible.
CREATE FUNCTION dbal.api_executions(
        p_tenant text, p_user text, p_role text, p_id uuid, p_from timestamptz,
        p_to timestamptz, p_status text, p_limit integer)
    RETURNS SETOF dbal.workflow_executions
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM dbal.enter_app(p_tenant, p_user, p_role);
    PERFORM 1 FROM dbal.workflows w WHERE w.tenant_id = p_tenant AND w.id = p_id;
    IF NOT FOUND THEN
        PERFORM dbal.raise_error(4041, 'workflow not found', jsonb_build_object('id', p_id));
    END IF;
    RETURN QUERY SELECT * FROM dbal.workflow_executions e
                  WHERE e.tenant_id = p_tenant AND e.workflow_id = p_id
                    AND e.started_at >= coalesce(p_from, '-infinity')
                    AND e.started_at < coalesce(p_to, 'infinity')
                    AND (p_status IS NULL OR e.status = p_status)
                  ORDER BY e.started_at DESC
                  LIMIT p_limit;
END
$$;

-- api_audit(tenant, user, role, id, limit): the tenant's audit rows (of one workflow when p_id
-- is given), newest first.
CREATE FUNCTION dbal.api_audit(p_tenant text, p_user text, p_role text, p_id uuid, p_limit integer)
    RETURNS SETOF dbal.audit_log
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM dbal.enter_app(p_tenant, p_user, p_role);
    RETURN QUERY SELECT * FROM dbal.audit_log a
                  WHERE a.tenant_id = p_tenant AND (p_id IS NULL OR a.workflow_id = p_id)
                  ORDER BY a.at DESC, a.id DESC
                  LIMIT p_limit;
END
$$;

-- store_validation(...): stores a validation result computed by pydbal for the workflow at
-- revision p_version (nothing when the workflow changed meanwhile: returns false). SECURITY
-- DEFINER so that any role's validate() — and the lock path's re-validation for role user — can
-- keep the cached result; it changes validation columns only.
CREATE FUNCTION dbal.store_validation(
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
RESET ROLE;
