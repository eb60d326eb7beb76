-- 97_catalog_hardening.sql — database-wide side channels closed for analysts (and any other
-- login that has only PUBLIC's rights) in the pydbal database.
--
-- Row-level security hides rows; it does not hide what PostgreSQL's catalog tells everyone about
-- a table as a whole. An analyst login (sql/95_analysts.sql) must learn nothing about tenants it
-- is not granted, not even counts, so in this database:
--   * the cumulative and per-transaction statistics (every pg_stat* / pg_statio* view and the
--     pg_stat_get_* functions behind them), which count tuples fetched, inserted, deleted;
--   * row estimates and sizes: pg_class.reltuples / relpages / relallvisible (/ relallfrozen on
--     PostgreSQL 18), pg_relation_size and the other *_size functions;
--   * pg_locks and advisory locks (a held advisory lock could also stall `pydbal migrate`);
--   * creating large objects;
-- are revoked from PUBLIC and granted back to @owner_role@, @app_role@ and PostgreSQL's
-- pg_read_all_stats (so monitoring roles keep them). pg_stats needs nothing: it shows only
-- columns the reader may SELECT, and analysts may select no base table column.
-- Temporary tables: CREATE DATABASE … TEMPLATE does not copy database privileges, so revoking
-- TEMPORARY from PUBLIC happens in `pydbal analysts grant` (pydbal/cli/analysts.py), per
-- database, and here for the database being migrated. `pydbal status` reports what holds.
-- Runs as the migrating superuser. Catalog objects are per database: other databases of the
-- server are not touched.

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
