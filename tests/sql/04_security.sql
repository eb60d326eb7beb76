-- 04_security.sql — what issue 9 made the database promise, checked in the catalog.
--
-- Covers: the app role has no INSERT/UPDATE/DELETE/TRUNCATE on any dbal table or column; a
-- validation result cannot outlive dbal.validity_period() (valid_until = 'infinity' is refused,
-- even for a superuser); the analyst role has no privilege on any dbal base table or partition;
-- PUBLIC cannot read the statistics views or row estimates, nor take advisory locks or create
-- large objects, in this database.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
BEGIN;
SELECT plan(8);

SELECT is_empty(
    $$SELECT c.oid::regclass FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname LIKE 'dbal%' AND c.relkind IN ('r', 'p')
         AND (has_table_privilege('pydbal_app', c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
              OR has_any_column_privilege('pydbal_app', c.oid, 'INSERT, UPDATE'))$$,
    'the app role writes no dbal table, not even a column');
SELECT is_empty(
    $$SELECT c.oid::regclass FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = 'dbal' AND c.relkind IN ('r', 'p')
         AND c.relname NOT IN ('analyst_grants', 'schema_migrations')
         AND (has_table_privilege('pydbal_analyst', c.oid, 'SELECT')
              OR has_any_column_privilege('pydbal_analyst', c.oid, 'SELECT'))$$,
    'the analyst role reads no dbal base table or partition');

INSERT INTO dbal.workflows (tenant_id, name, created_by, validation_status, validated_at,
                            valid_until, validator_version)
VALUES ('acme', 'forged', 'x', 'valid', now(), 'infinity', 1);
SELECT is((SELECT valid_until FROM dbal.workflows WHERE name = 'forged'),
          now() + dbal.validity_period(), 'a stored result is stamped: at most an hour');
SELECT throws_ok(
    $$UPDATE dbal.workflows SET valid_until = 'infinity' WHERE name = 'forged'$$,
    '23514', NULL, 'valid_until = infinity is refused by a CHECK constraint');

SELECT ok(NOT has_table_privilege('public', 'pg_catalog.pg_stat_all_tables', 'SELECT'),
          'PUBLIC cannot read pg_stat_all_tables');
SELECT ok(NOT has_column_privilege('public', 'pg_catalog.pg_class', 'reltuples', 'SELECT'),
          'PUBLIC cannot read pg_class.reltuples');
SELECT ok(NOT has_function_privilege('public', 'pg_catalog.pg_advisory_lock(bigint)', 'EXECUTE'),
          'PUBLIC cannot take advisory locks');
SELECT ok(NOT has_function_privilege('public', 'pg_catalog.lo_create(oid)', 'EXECUTE'),
          'PUBLIC cannot create large objects');

SELECT * FROM finish();
ROLLBACK;
