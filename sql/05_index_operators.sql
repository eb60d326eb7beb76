-- 05_index_operators.sql — leakproof copies of the operators pydbal filters and searches with.
--
-- Under row-level security PostgreSQL may use a query's condition as an index condition only
-- when its operator is LEAKPROOF; any other condition must wait for the policy and runs as a
-- filter on every row the policy lets through. The built-in && (text[]) and @@ (tsvector,
-- tsquery) and pg_trgm's % are not marked leakproof, so a tag filter, a full-text search or a
-- name similarity search read every workflow of the tenant, however few match (measured: 60–110
-- ms at 100k workflows, growing with the tenant).
--
-- Guarantees:
--   * dbal.&&, dbal.@@ and dbal.% call the very C functions of the built-in operators (same
--     results) and are LEAKPROOF, which holds for those functions: no side effects, and no error
--     that depends on a row's value. The indexes of sql/10_workflows.sql are built with the
--     operator classes below, so the entry points' conditions are index conditions.
--   * Only pydbal's own SQL uses them: executable by @owner_role@ (their owner) and @app_role@,
--     not by @analyst_role@ or PUBLIC, and the built-in operators are unchanged.
--   * What a leakproof condition can reveal is what an index scan reveals: the app role is the
--     trusted service that may act for any tenant (docs/security.md); analysts never reach the
--     base tables (their predicates stay behind the opaque functions of sql/95_analysts.sql).
-- Creating LEAKPROOF functions and operator classes requires a superuser: this file runs as the
-- migrating superuser and hands the objects to @owner_role@.
-- The same text is part of migrations/0006_flat_reads.sql.

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
