-- 03_catalog.sql — privileges and definitions the tenant boundary rests on.
--
-- Covers: RLS enabled and forced on every dbal table with a tenant_id column; every SECURITY
-- DEFINER function of dbal pins search_path with pg_temp last and is not executable by PUBLIC;
-- the app role has no privilege on any partition and cannot run the internal helpers; the app
-- login is neither superuser nor BYPASSRLS. Catalog reads, as the app login.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
BEGIN;
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pydbal_test_app') THEN
        CREATE ROLE pydbal_test_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE INHERIT;
    END IF;
END
$$;
GRANT pydbal_app TO pydbal_test_app;

SET LOCAL ROLE pydbal_test_app;
SELECT plan(9);

SELECT ok(NOT (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user),
          'the app login is neither superuser nor BYPASSRLS');
SELECT isnt_empty(
    $$SELECT c.oid FROM pg_class c
       WHERE c.relnamespace = 'dbal'::regnamespace AND c.relkind IN ('r', 'p')
         AND NOT c.relispartition
         AND EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid
                      AND a.attname = 'tenant_id' AND NOT a.attisdropped)$$,
    'dbal has tenant tables');
SELECT is_empty(
    $$SELECT c.oid::regclass FROM pg_class c
       WHERE c.relnamespace = 'dbal'::regnamespace AND c.relkind IN ('r', 'p')
         AND NOT c.relispartition
         AND EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid
                      AND a.attname = 'tenant_id' AND NOT a.attisdropped)
         AND NOT (c.relrowsecurity AND c.relforcerowsecurity)$$,
    'RLS enabled and forced on every tenant table');
SELECT isnt_empty(
    $$SELECT i.inhrelid FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
       WHERE p.relnamespace = 'dbal'::regnamespace$$,
    'dbal has partitions');
SELECT is_empty(
    $$SELECT i.inhrelid::regclass, p.priv
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhparent,
             unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES',
                          'TRIGGER']) p(priv)
       WHERE c.relnamespace = 'dbal'::regnamespace
         AND has_table_privilege(current_user, i.inhrelid, p.priv)$$,
    'the app has no privilege on any partition');
SELECT isnt_empty(
    $$SELECT oid FROM pg_proc WHERE pronamespace = 'dbal'::regnamespace AND prosecdef$$,
    'dbal has SECURITY DEFINER functions');
SELECT is_empty(
    $$SELECT p.oid::regprocedure FROM pg_proc p
       WHERE p.pronamespace = 'dbal'::regnamespace AND p.prosecdef
         AND NOT EXISTS (SELECT FROM unnest(p.proconfig) c
                          WHERE c ~ '^search_path=.*pg_temp"?$')$$,
    'every definer function pins search_path, pg_temp last');
SELECT is_empty(
    $$SELECT p.oid::regprocedure FROM pg_proc p
       WHERE p.pronamespace = 'dbal'::regnamespace
         AND (p.proacl IS NULL
              OR EXISTS (SELECT FROM aclexplode(p.proacl) a WHERE a.grantee = 0))$$,
    'no dbal function is executable by PUBLIC');
SELECT is_empty(
    $$SELECT f FROM unnest(ARRAY['dbal.sweep_expired_locks()', 'dbal.clear_expired_locks(text)',
                                 'dbal.workflow_for_update(text, uuid)',
                                 'dbal.audit(text, uuid, jsonb, text[])']) f
       WHERE has_function_privilege(current_user, f, 'EXECUTE')$$,
    'the internal helpers are not executable by the app');

SELECT * FROM finish();
ROLLBACK;
