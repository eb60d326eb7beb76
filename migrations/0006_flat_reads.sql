-- 0006_flat_reads.sql — lists, search and statistics that stay flat as a tenant grows (issue 13).
--
-- * Leakproof copies of &&, @@ and pg_trgm's % with GIN operator classes (the text of
--   sql/05_index_operators.sql, run as the migrating superuser); the tags, search and name
--   trigram indexes are rebuilt with them (this takes a while on a large table).
-- * Keyset indexes: (tenant_id, created_at, id), (tenant_id, updated_at, id), (tenant_id, name, id)
--   replace the (…, key DESC, id) ones, whose id order matched neither direction of a page.
-- * dbal.tenant_counters and its triggers (the text of sql/14_tenant_counters.sql), filled from
--   the existing rows; its policies (sql/50_policies.sql) and grant (sql/90_grants.sql).
-- * dbal.api_list with keyset arguments and the total/total_exact/has_more columns
--   (sql/70_api.sql): dropped and created again, its grant with it.
-- * dbal.filter_sql and dbal.api_search with the leakproof operators (and a bounded trigram
--   fallback), dbal.execution_stats with the edge rows read as two range scans (sql/70_api.sql,
--   sql/42_execution_stats.sql): CREATE OR REPLACE keeps their owner and grants.

CREATE FUNCTION dbal.tags_overlap(text[], text[]) RETURNS boolean
    LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF
    AS 'arrayoverlap';
CREATE FUNCTION dbal.search_match(tsvector, tsquery) RETURNS boolean
    LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF
    AS 'ts_match_vq';
-- STABLE like pg_trgm's own: the threshold is the setting pg_trgm.similarity_threshold
CREATE FUNCTION dbal.name_similar(text, text) RETURNS boolean
    LANGUAGE c STABLE STRICT PARALLEL SAFE LEAKPROOF
    AS '$libdir/pg_trgm', 'similarity_op';

CREATE OPERATOR dbal.&& (
    LEFTARG = text[], RIGHTARG = text[], FUNCTION = dbal.tags_overlap,
    COMMUTATOR = OPERATOR(dbal.&&), RESTRICT = matchingsel, JOIN = matchingjoinsel);
CREATE OPERATOR dbal.@@ (
    LEFTARG = tsvector, RIGHTARG = tsquery, FUNCTION = dbal.search_match,
    RESTRICT = tsmatchsel, JOIN = tsmatchjoinsel);
CREATE OPERATOR dbal.% (
    LEFTARG = text, RIGHTARG = text, FUNCTION = dbal.name_similar,
    COMMUTATOR = OPERATOR(dbal.%), RESTRICT = matchingsel, JOIN = matchingjoinsel);

-- GIN operator classes: the built-in ones' support functions, with the leakproof operator as
-- strategy 1 (overlap, match, similarity).
CREATE OPERATOR CLASS dbal.tags_ops FOR TYPE text[] USING gin AS
    OPERATOR 1 dbal.&& (text[], text[]),
    FUNCTION 1 bttextcmp(text, text),
    FUNCTION 2 ginarrayextract(anyarray, internal, internal),
    FUNCTION 3 ginqueryarrayextract(anyarray, internal, smallint, internal, internal, internal,
                                    internal),
    FUNCTION 4 ginarrayconsistent(internal, smallint, anyarray, integer, internal, internal,
                                  internal, internal),
    FUNCTION 6 ginarraytriconsistent(internal, smallint, anyarray, integer, internal, internal,
                                     internal),
    STORAGE text;
CREATE OPERATOR CLASS dbal.search_ops FOR TYPE tsvector USING gin AS
    OPERATOR 1 dbal.@@ (tsvector, tsquery),
    FUNCTION 1 gin_cmp_tslexeme(text, text),
    FUNCTION 2 gin_extract_tsvector(tsvector, internal, internal),
    FUNCTION 3 gin_extract_tsquery(tsvector, internal, smallint, internal, internal, internal,
                                   internal),
    FUNCTION 4 gin_tsquery_consistent(internal, smallint, tsvector, integer, internal, internal,
                                      internal, internal),
    FUNCTION 5 gin_cmp_prefix(text, text, smallint, internal),
    FUNCTION 6 gin_tsquery_triconsistent(internal, smallint, tsvector, integer, internal,
                                         internal, internal),
    STORAGE text;
CREATE OPERATOR CLASS dbal.name_trgm_ops FOR TYPE text USING gin AS
    OPERATOR 1 dbal.% (text, text),
    FUNCTION 1 btint4cmp(integer, integer),
    FUNCTION 2 dbal_ext.gin_extract_value_trgm(text, internal),
    FUNCTION 3 dbal_ext.gin_extract_query_trgm(text, internal, smallint, internal, internal,
                                               internal, internal),
    FUNCTION 4 dbal_ext.gin_trgm_consistent(internal, smallint, text, integer, internal,
                                            internal, internal, internal),
    FUNCTION 6 dbal_ext.gin_trgm_triconsistent(internal, smallint, text, integer, internal,
                                               internal, internal),
    STORAGE integer;

ALTER FUNCTION dbal.tags_overlap(text[], text[]) OWNER TO @owner_role@;
ALTER FUNCTION dbal.search_match(tsvector, tsquery) OWNER TO @owner_role@;
ALTER FUNCTION dbal.name_similar(text, text) OWNER TO @owner_role@;
ALTER OPERATOR dbal.&& (text[], text[]) OWNER TO @owner_role@;
ALTER OPERATOR dbal.@@ (tsvector, tsquery) OWNER TO @owner_role@;
ALTER OPERATOR dbal.% (text, text) OWNER TO @owner_role@;
ALTER OPERATOR FAMILY dbal.tags_ops USING gin OWNER TO @owner_role@;
ALTER OPERATOR CLASS dbal.tags_ops USING gin OWNER TO @owner_role@;
ALTER OPERATOR FAMILY dbal.search_ops USING gin OWNER TO @owner_role@;
ALTER OPERATOR CLASS dbal.search_ops USING gin OWNER TO @owner_role@;
ALTER OPERATOR FAMILY dbal.name_trgm_ops USING gin OWNER TO @owner_role@;
ALTER OPERATOR CLASS dbal.name_trgm_ops USING gin OWNER TO @owner_role@;
REVOKE ALL ON FUNCTION dbal.tags_overlap(text[], text[]), dbal.search_match(tsvector, tsquery),
    dbal.name_similar(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dbal.tags_overlap(text[], text[]),
    dbal.search_match(tsvector, tsquery), dbal.name_similar(text, text) TO @app_role@;

SET LOCAL ROLE @owner_role@;

DROP INDEX dbal.workflows_tags_idx;
DROP INDEX dbal.workflows_search_idx;
DROP INDEX dbal.workflows_name_trgm_idx;
DROP INDEX dbal.workflows_tenant_updated_idx;
DROP INDEX dbal.workflows_tenant_created_idx;
CREATE INDEX workflows_tenant_updated_idx ON dbal.workflows (tenant_id, updated_at, id);
CREATE INDEX workflows_tenant_created_idx ON dbal.workflows (tenant_id, created_at, id);
CREATE INDEX workflows_tenant_name_idx ON dbal.workflows (tenant_id, name, id);
CREATE INDEX workflows_tags_idx ON dbal.workflows USING gin (tags dbal.tags_ops);
CREATE INDEX workflows_search_idx ON dbal.workflows USING gin (search_document dbal.search_ops);
CREATE INDEX workflows_name_trgm_idx ON dbal.workflows USING gin (name dbal.name_trgm_ops);

CREATE TABLE dbal.tenant_counters (
    tenant_id text   NOT NULL,
    live      bigint NOT NULL DEFAULT 0,  -- workflows with archived_at NULL
    archived  bigint NOT NULL DEFAULT 0,  -- workflows with archived_at set
    CONSTRAINT tenant_counters_pkey PRIMARY KEY (tenant_id),
    CONSTRAINT tenant_counters_not_negative CHECK (live >= 0 AND archived >= 0)
);

COMMENT ON TABLE dbal.tenant_counters IS
    'Live and archived workflows per tenant, kept by triggers on dbal.workflows (sql/14_tenant_counters.sql).';

-- count_workflow_rows(): after an INSERT or DELETE statement on dbal.workflows, adds (removes)
-- the statement's rows to (from) their tenants' counters, one row update per tenant, in tenant
-- order (no deadlock between two multi-tenant purges). Runs as the writer.
CREATE FUNCTION dbal.count_workflow_rows() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO dbal.tenant_counters AS c (tenant_id, live, archived)
        SELECT n.tenant_id, count(*) FILTER (WHERE n.archived_at IS NULL),
               count(*) FILTER (WHERE n.archived_at IS NOT NULL)
          FROM new_rows n GROUP BY n.tenant_id ORDER BY n.tenant_id
        ON CONFLICT (tenant_id) DO UPDATE
           SET live = c.live + excluded.live, archived = c.archived + excluded.archived;
    ELSE
        UPDATE dbal.tenant_counters c
           SET live = c.live - d.live, archived = c.archived - d.archived
          FROM (SELECT o.tenant_id, count(*) FILTER (WHERE o.archived_at IS NULL) AS live,
                       count(*) FILTER (WHERE o.archived_at IS NOT NULL) AS archived
                  FROM old_rows o GROUP BY o.tenant_id) d
         WHERE c.tenant_id = d.tenant_id;
    END IF;
    RETURN NULL;
END
$$;

-- count_workflow_archive(): after a row's archived state changed (archive or unarchive), moves
-- it between the live and archived counts of its tenant. Runs as the writer.
CREATE FUNCTION dbal.count_workflow_archive() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_step integer := CASE WHEN NEW.archived_at IS NULL THEN 1 ELSE -1 END;
BEGIN
    INSERT INTO dbal.tenant_counters AS c (tenant_id, live, archived)
    VALUES (NEW.tenant_id, greatest(v_step, 0), greatest(-v_step, 0))
    ON CONFLICT (tenant_id) DO UPDATE
       SET live = c.live + v_step, archived = c.archived - v_step;
    RETURN NULL;
END
$$;

CREATE TRIGGER workflows_count_insert
    AFTER INSERT ON dbal.workflows REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION dbal.count_workflow_rows();
CREATE TRIGGER workflows_count_delete
    AFTER DELETE ON dbal.workflows REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION dbal.count_workflow_rows();
CREATE TRIGGER workflows_count_archive
    AFTER UPDATE OF archived_at ON dbal.workflows
    FOR EACH ROW WHEN ((OLD.archived_at IS NULL) <> (NEW.archived_at IS NULL))
    EXECUTE FUNCTION dbal.count_workflow_archive();

ALTER TABLE dbal.tenant_counters ENABLE ROW LEVEL SECURITY;
ALTER TABLE dbal.tenant_counters FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_counters_app_select ON dbal.tenant_counters FOR SELECT TO @app_role@
    USING (tenant_id = dbal.ctx_tenant());
CREATE POLICY tenant_counters_owner_all ON dbal.tenant_counters FOR ALL TO @owner_role@
    USING (tenant_id = dbal.ctx_tenant()) WITH CHECK (tenant_id = dbal.ctx_tenant());
REVOKE ALL ON dbal.tenant_counters FROM PUBLIC;
GRANT SELECT ON dbal.tenant_counters TO @app_role@;
REVOKE ALL ON FUNCTION dbal.count_workflow_rows(), dbal.count_workflow_archive() FROM PUBLIC;

DROP FUNCTION dbal.api_list(text, text, text, jsonb, text, boolean, integer, integer);

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

GRANT EXECUTE ON FUNCTION
    dbal.api_list(text, text, text, jsonb, text, boolean, integer, integer, text, uuid)
    TO @app_role@;

-- filter_sql(filter): a WHERE condition over dbal.workflows (alias w) for a filter object with
-- the keys enabled, is_locked (a live lease), category, created_by, name, ids, tags (any of),
-- validation_status (as read: an expired 'valid' is 'stale'), last_execution_status, search
-- (web-search syntax) and archived (true: only archived workflows, which the caller must also
-- make visible with dbal.ctx_archived(); false or absent: live ones, as the policies show).
-- Text keys take one value or a list of them. Values are quoted with
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

-- api_search(tenant, user, role, text, limit): best matches first. Full-text (web-search
-- syntax: "a -b", quoted phrases) over name, description and tags, ranking at most 1000
-- candidates; when that finds fewer than p_limit, names similar to the text (pg_trgm,
-- similarity >= 0.3) fill up the list, so a typo in a name still finds it. The fallback keeps
-- the query's exclusions ("-word" never matches) and is skipped for quoted phrases, which ask
-- for exact words. Both parts are bounded: full-text candidates come from the search index and
-- trigram candidates from the name index (the % operator at threshold 0.3), at most 1000 each,
-- and only those are ranked, so a search never ranks every row of a large tenant.
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

-- execution_stats(workflow, from, to): statistics of the executions that started in [from, to)
-- (from NULL = the beginning, to NULL = now).
-- The window is cut into whole UTC days (read from workflow_stats_daily), the whole hours around
-- them (workflow_stats_hourly) and the partial hours at its edges (the execution rows), so the
-- cost depends on the window's shape, not on the number of executions. Counts, success rate,
-- average, min and max are exact. success_rate = success / (success + failure + timeout), NULL
-- when none finished. p50/p95/p99 are nearest-rank percentiles over finished runs read from the
-- merged log-scale histogram (factor 1.1 per bucket), reported as the bucket's geometric
-- midpoint clamped to [min, max]: within 4.9 % of the exact nearest-rank value for durations of
-- 1 ms and more (below 1 ms, within 0.5 ms).
-- WORKFLOW_NOT_FOUND (4041) for a workflow that is not the tenant's.
CREATE OR REPLACE FUNCTION dbal.execution_stats(
        p_workflow uuid, p_from timestamptz DEFAULT NULL, p_to timestamptz DEFAULT NULL,
        p_tenant text DEFAULT NULL, p_user text DEFAULT NULL, p_role text DEFAULT NULL)
    RETURNS TABLE (
        total bigint, success bigint, failure bigint, pending bigint, timeout bigint,
        success_rate double precision, avg_ms double precision, min_ms double precision,
        max_ms double precision, p50_ms double precision, p95_ms double precision,
        p99_ms double precision, last_executed_at timestamptz, last_status text)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    -- plans are made per call: a generic plan would lock every partition of the executions
    SET plan_cache_mode = force_custom_plan
    AS $$
#variable_conflict use_column
DECLARE
    v_tenant text := dbal.enter(p_tenant, p_user, p_role);
    v_from timestamptz := coalesce(p_from, '-infinity');
    v_to timestamptz := coalesce(p_to, clock_timestamp());
    v_h1 timestamptz;  -- first whole hour
    v_h2 timestamptz;  -- end of the last whole hour
    v_d1 timestamptz;  -- first whole day
    v_d2 timestamptz;  -- end of the last whole day
    v_last_at timestamptz;
    v_last_status text;
BEGIN
    SELECT w.last_executed_at, w.last_execution_status INTO v_last_at, v_last_status
      FROM dbal.workflows w WHERE w.tenant_id = v_tenant AND w.id = p_workflow;
    IF NOT FOUND THEN
        PERFORM dbal.raise_error(4041, 'workflow not found', jsonb_build_object('id', p_workflow));
    END IF;
    IF v_to < v_from THEN
        v_to := v_from;
    END IF;
    -- [v_from, v_h1) rows | [v_h1, v_d1) hours | [v_d1, v_d2) days | [v_d2, v_h2) hours | [v_h2, v_to) rows
    v_h1 := date_trunc('hour', v_from, 'UTC');
    IF v_h1 < v_from THEN v_h1 := v_h1 + interval '1 hour'; END IF;
    v_h2 := greatest(date_trunc('hour', v_to, 'UTC'), v_h1);
    v_d1 := date_trunc('day', v_h1, 'UTC');
    IF v_d1 < v_h1 THEN v_d1 := v_d1 + interval '1 day'; END IF;
    v_d2 := date_trunc('day', v_h2, 'UTC');
    IF v_d2 < v_d1 THEN
        v_d1 := v_h2;  -- no whole day: hours cover [v_h1, v_h2)
        v_d2 := v_h2;
    END IF;
    v_h1 := least(v_h1, v_to);

    -- The last execution of the window is usually the workflow's last one (windows ending now).
    IF NOT (v_last_at >= v_from AND v_last_at < v_to) THEN
        SELECT e.started_at, e.status INTO v_last_at, v_last_status
          FROM dbal.workflow_executions e
         WHERE e.tenant_id = v_tenant AND e.workflow_id = p_workflow
           AND e.started_at >= v_from AND e.started_at < v_to
         ORDER BY e.started_at DESC
         LIMIT 1;
    END IF;

    RETURN QUERY
    -- the two edges are separate range scans of workflow_executions_workflow_idx (never one
    -- scan with an OR filter, which reads every execution of the workflow): their cost is the
    -- rows of at most two partial hours, whatever the planner's statistics say
    WITH edge_rows AS MATERIALIZED (
        SELECT e.status, CASE WHEN e.status <> 'pending' THEN e.duration_ms END AS ms
          FROM dbal.workflow_executions e
         WHERE e.tenant_id = v_tenant AND e.workflow_id = p_workflow
           AND e.started_at >= v_from AND e.started_at < v_h1
        UNION ALL
        SELECT e.status, CASE WHEN e.status <> 'pending' THEN e.duration_ms END AS ms
          FROM dbal.workflow_executions e
         WHERE e.tenant_id = v_tenant AND e.workflow_id = p_workflow
           AND e.started_at >= v_h2 AND e.started_at < v_to
    ), rollups AS MATERIALIZED (
        SELECT s.success, s.failure, s.pending, s.timeout, s.finished, s.sum_ms, s.min_ms,
               s.max_ms, s.hist
          FROM dbal.workflow_stats_daily s
         WHERE s.tenant_id = v_tenant AND s.workflow_id = p_workflow
           AND s.day >= v_d1 AND s.day < v_d2
        UNION ALL
        SELECT s.success, s.failure, s.pending, s.timeout, s.finished, s.sum_ms, s.min_ms,
               s.max_ms, s.hist
          FROM dbal.workflow_stats_hourly s
         WHERE s.tenant_id = v_tenant AND s.workflow_id = p_workflow
           AND ((s.hour >= v_h1 AND s.hour < v_d1) OR (s.hour >= v_d2 AND s.hour < v_h2))
    ), agg AS (
        SELECT sum(x.success)::bigint AS success, sum(x.failure)::bigint AS failure,
               sum(x.pending)::bigint AS pending, sum(x.timeout)::bigint AS timeout,
               sum(x.finished)::bigint AS finished, sum(x.sum_ms) AS sum_ms,
               min(x.min_ms) AS min_ms, max(x.max_ms) AS max_ms
          FROM (SELECT r.success, r.failure, r.pending, r.timeout, r.finished, r.sum_ms,
                       r.min_ms, r.max_ms
                  FROM rollups r
                UNION ALL
                SELECT count(*) FILTER (WHERE er.status = 'success'),
                       count(*) FILTER (WHERE er.status = 'failure'),
                       count(*) FILTER (WHERE er.status = 'pending'),
                       count(*) FILTER (WHERE er.status = 'timeout'),
                       count(er.ms), coalesce(sum(er.ms), 0), min(er.ms), max(er.ms)
                  FROM edge_rows er) x
    ), buckets AS (
        SELECT b, sum(n) AS n FROM (
            SELECT (u.ord - 1)::integer AS b, u.n::bigint AS n
              FROM rollups r, unnest(r.hist) WITH ORDINALITY AS u(n, ord)
             WHERE r.finished > 0 AND u.n > 0
            UNION ALL
            SELECT dbal.duration_bucket(er.ms), 1 FROM edge_rows er WHERE er.ms IS NOT NULL
        ) y GROUP BY b
    ), cum AS (
        SELECT b, sum(n) OVER (ORDER BY b) AS c FROM buckets
    ), pct AS (
        -- nearest rank: the smallest bucket whose cumulative count reaches ceil(p * finished)
        SELECT min(c.b) FILTER (WHERE c.c >= greatest(ceil(0.50 * a.finished), 1)) AS b50,
               min(c.b) FILTER (WHERE c.c >= greatest(ceil(0.95 * a.finished), 1)) AS b95,
               min(c.b) FILTER (WHERE c.c >= greatest(ceil(0.99 * a.finished), 1)) AS b99
          FROM cum c, agg a
    )
    SELECT a.success + a.failure + a.pending + a.timeout,
           a.success, a.failure, a.pending, a.timeout,
           CASE WHEN a.success + a.failure + a.timeout > 0
                THEN a.success::float8 / (a.success + a.failure + a.timeout) END,
           CASE WHEN a.finished > 0 THEN a.sum_ms / a.finished END,
           a.min_ms, a.max_ms,
           least(greatest(dbal.bucket_value(p.b50), a.min_ms), a.max_ms),
           least(greatest(dbal.bucket_value(p.b95), a.min_ms), a.max_ms),
           least(greatest(dbal.bucket_value(p.b99), a.min_ms), a.max_ms),
           CASE WHEN v_last_at >= v_from AND v_last_at < v_to THEN v_last_at END,
           CASE WHEN v_last_at >= v_from AND v_last_at < v_to THEN v_last_status END
      FROM agg a, pct p;
END
$$;

RESET ROLE;

-- Existing workflows, counted once (as the migrating superuser: row-level security does not
-- apply, so every tenant's counter is written).
INSERT INTO dbal.tenant_counters (tenant_id, live, archived)
SELECT w.tenant_id, count(*) FILTER (WHERE w.archived_at IS NULL),
       count(*) FILTER (WHERE w.archived_at IS NOT NULL)
  FROM dbal.workflows w GROUP BY w.tenant_id;
