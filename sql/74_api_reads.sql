-- 74_api_reads.sql — the read entry points: api_get, api_list, api_search, api_history,
-- api_executions, api_audit.
--
-- Guarantees:
--   * One statement per request: each takes the request's tenant, user and role as its first
--     arguments and sets the transaction-local context itself (dbal.enter_app): one round trip,
--     and on Citus each is distributable by its p_tenant argument.
--   * SECURITY INVOKER: each switches to @app_role@ for the rest of the transaction (so that a
--     superuser login — the embedded server, an operator's DSN — is still subject to row-level
--     security), and the policies of sql/50_policies.sql decide what it sees: another tenant's
--     workflow is exactly like a missing one (no row, or WORKFLOW_NOT_FOUND 4041).
--   * They write no table (only the transaction's settings: the context, dbal.archived).
-- Executable by @app_role@ only.

SET LOCAL ROLE @owner_role@;

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
    IF p_limit < 1 OR p_offset < 0 THEN
        PERFORM dbal.raise_error(422, 'limit must be at least 1 and offset not negative');
    END IF;
    PERFORM dbal.within(p_limit, 'limit', 'page_size');
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
               dbal.lease_live(w.is_locked, w.lock_expires_at, clock_timestamp()),
               CASE WHEN dbal.lease_live(w.is_locked, w.lock_expires_at, clock_timestamp())
                    THEN w.locked_by END,
               CASE WHEN dbal.lease_live(w.is_locked, w.lock_expires_at, clock_timestamp())
                    THEN w.locked_at END,
               CASE WHEN dbal.lease_live(w.is_locked, w.lock_expires_at, clock_timestamp())
                    THEN w.lock_expires_at END,
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
    IF p_limit < 1 THEN
        PERFORM dbal.raise_error(422, 'limit must be at least 1');
    END IF;
    PERFORM dbal.within(p_limit, 'limit', 'page_size');
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

-- api_history(tenant, user, role, id): previous versions, newest first. 4041 when not visible.
CREATE FUNCTION dbal.api_history(p_tenant text, p_user text, p_role text, p_id uuid)
    RETURNS SETOF dbal.workflow_versions
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM dbal.enter_app(p_tenant, p_user, p_role);
    PERFORM dbal.visible_or_4041(p_tenant, p_id);
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
    PERFORM dbal.visible_or_4041(p_tenant, p_id);
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

RESET ROLE;
