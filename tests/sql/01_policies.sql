-- 01_policies.sql — row-level security of dbal.workflows and the trails, as the app login.
--
-- Covers: a tenant sees only its rows (workflows, audit_log); the app role writes no table
-- directly (every UPDATE, DELETE, INSERT is refused with 42501, issue 9); through the entry
-- points, another tenant's rows are not found; without a context nothing is visible; a 'user'
-- changes only the workflows it created and cannot create any; the app cannot write lock
-- columns or the trails.
-- Setup (as the superuser, rolled back): the login pydbal_test_app (member of pydbal_app) and
-- two workflows in each of the tenants acme and globex.
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
INSERT INTO dbal.workflows (tenant_id, id, name, created_by) VALUES
    ('acme',   'a0000000-0000-4000-8000-000000000001', 'a1', 'alice'),
    ('acme',   'a0000000-0000-4000-8000-000000000002', 'a2', 'bob'),
    ('globex', 'b0000000-0000-4000-8000-000000000001', 'b1', 'carol'),
    ('globex', 'b0000000-0000-4000-8000-000000000002', 'b2', 'carol');

SET LOCAL ROLE pydbal_test_app;
SELECT plan(14);

-- no context
SELECT is((SELECT count(*) FROM dbal.workflows), 0::bigint, 'no context: no workflow visible');
SELECT throws_ok(
    $$INSERT INTO dbal.workflows (tenant_id, name, created_by) VALUES ('acme', 'x', 'alice')$$,
    '42501', NULL, 'no context: insert refused');

-- tenant acme, admin
SELECT dbal.enter('acme', 'alice', 'admin');
SELECT results_eq(
    $$SELECT name FROM dbal.workflows ORDER BY name$$,
    ARRAY['a1', 'a2'], 'acme sees exactly its two workflows');
SELECT is((SELECT count(*) FROM dbal.workflows WHERE tenant_id = 'globex'), 0::bigint,
          'acme cannot see globex, even when asking for it');
SELECT is((SELECT count(*) FROM dbal.audit_log WHERE tenant_id <> 'acme'), 0::bigint,
          'acme sees no audit row of another tenant');
SELECT throws_ok(
    $$UPDATE dbal.workflows SET description = 'pwned' WHERE tenant_id = 'globex'$$,
    '42501', NULL, 'direct update refused: the app role writes no table');
SELECT is(dbal.api_delete('acme', 'alice', 'admin', 'b0000000-0000-4000-8000-000000000001'),
          false, 'archiving a globex row from acme: not found');
SELECT throws_ok(
    $$INSERT INTO dbal.workflows (tenant_id, name, created_by) VALUES ('globex', 'x', 'alice')$$,
    '42501', NULL, 'insert into globex refused');
SELECT throws_ok(
    $$UPDATE dbal.workflows SET tenant_id = 'globex' WHERE name = 'a1'$$,
    '42501', NULL, 'moving a row to globex refused');
SELECT throws_ok(
    $$UPDATE dbal.workflows SET lock_token = 99, is_locked = false WHERE name = 'a1'$$,
    '42501', NULL, 'lock columns are not writable by the app');
SELECT throws_ok(
    $$INSERT INTO dbal.audit_log (tenant_id, user_id, operation) VALUES ('acme', 'alice', 'x')$$,
    '42501', NULL, 'audit_log is not writable by the app');

-- same tenant, plain user bob: only its own workflow
SELECT results_eq(
    $$SELECT name FROM dbal.api_update('acme', 'bob', 'user',
        'a0000000-0000-4000-8000-000000000002', '{"description": "by bob"}', NULL, NULL, NULL, NULL)$$,
    ARRAY['a2'], 'a user updates the workflow it created');
SELECT throws_ok(
    $$SELECT dbal.api_update('acme', 'bob', 'user', 'a0000000-0000-4000-8000-000000000001',
        '{"description": "by bob"}', NULL, NULL, NULL, NULL)$$,
    'D0403', NULL, 'a user cannot update another''s workflow');

RESET ROLE;
SELECT is(
    (SELECT count(*) FROM dbal.workflows WHERE tenant_id = 'globex' AND description IS NULL),
    2::bigint, 'globex rows are untouched (checked as superuser)');

SELECT * FROM finish();
ROLLBACK;
