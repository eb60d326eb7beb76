-- 02_locks.sql — lease locks through the SECURITY DEFINER functions, as the app login.
--
-- Covers: a token for the first caller, NULL for anyone while the lease runs (not re-entrant);
-- takeover after expiry with a larger token; the old holder's token refused by record_execution
-- and release_lock (D4233) and renew_lock (false); WORKFLOW_LOCKED (D4231) for recording while
-- another user holds it; disabled (D4042) and not-valid (D4243) workflows; another tenant's
-- workflow reported exactly like a missing one (D4041); a tenant argument contradicting the
-- context (D4034); release_expired_locks clears expired locks of its tenant only.
-- Expiry is real: a short lease and pg_sleep (clock_timestamp() moves inside a transaction).
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
INSERT INTO dbal.workflows (tenant_id, id, name, created_by, enabled, validation_status,
                            validated_at, valid_until, validator_version) VALUES
    ('acme',   'a0000000-0000-4000-8000-000000000001', 'lockable', 'u1', true, 'valid',
     now(), now() + interval '1 hour', 1),
    ('acme',   'a0000000-0000-4000-8000-000000000002', 'disabled', 'u1', false, 'valid',
     now(), now() + interval '1 hour', 1),
    ('acme',   'a0000000-0000-4000-8000-000000000003', 'pending', 'u1', true, 'pending',
     NULL, NULL, NULL),
    ('acme',   'a0000000-0000-4000-8000-000000000004', 'expired result', 'u1', true, 'valid',
     now() - interval '2 hours', now() - interval '1 hour', 1),
    ('globex', 'b0000000-0000-4000-8000-000000000001', 'theirs', 'u9', true, 'valid',
     now(), now() + interval '1 hour', 1);

SET LOCAL ROLE pydbal_test_app;
SELECT plan(17);

SELECT is(dbal.acquire_lock('a0000000-0000-4000-8000-000000000001', 100, 'acme', 'u1', 'user'),
          1::bigint, 'first caller gets token 1');
SELECT is(dbal.acquire_lock('a0000000-0000-4000-8000-000000000001', 30000, 'acme', 'u1', 'user'),
          NULL::bigint, 'not re-entrant while the lease runs');
SELECT pg_sleep(0.15);
SELECT is(dbal.acquire_lock('a0000000-0000-4000-8000-000000000001', 30000, 'acme', 'u2', 'user'),
          2::bigint, 'expired lease taken over with a larger token');
SELECT throws_ok(
    $$SELECT * FROM dbal.record_execution('a0000000-0000-4000-8000-000000000001', 'success', 5,
          p_token => 1, p_user => 'u1', p_role => 'user')$$,
    'D4233', NULL, 'old holder cannot record with its stale token');
SELECT throws_ok(
    $$SELECT dbal.release_lock('a0000000-0000-4000-8000-000000000001', 1, p_user => 'u1',
                               p_role => 'user')$$,
    'D4233', NULL, 'old holder cannot release with its stale token');
SELECT is(dbal.renew_lock('a0000000-0000-4000-8000-000000000001', 1, 30000, p_user => 'u1',
                          p_role => 'user'),
          false, 'old holder cannot renew');
SELECT is(dbal.renew_lock('a0000000-0000-4000-8000-000000000001', 2, 30000, p_user => 'u2',
                          p_role => 'user'),
          true, 'new holder renews');
SELECT throws_ok(
    $$SELECT * FROM dbal.record_execution('a0000000-0000-4000-8000-000000000001', 'success', 5,
          p_user => 'u3', p_role => 'admin')$$,
    'D4231', NULL, 'recording without a token while another user holds the lock');
SELECT is((SELECT outcome FROM dbal.record_execution('a0000000-0000-4000-8000-000000000001',
              'success', 5, 'e1', 2, p_user => 'u2', p_role => 'user')),
          'recorded', 'holder records with its token');
SELECT throws_ok(
    $$SELECT dbal.acquire_lock('a0000000-0000-4000-8000-000000000002', 1000, p_user => 'u1',
                               p_role => 'user')$$,
    'D4042', NULL, 'disabled workflow cannot be locked');
SELECT throws_ok(
    $$SELECT dbal.acquire_lock('a0000000-0000-4000-8000-000000000003', 1000, p_user => 'u1',
                               p_role => 'user')$$,
    'D4243', NULL, 'pending workflow cannot be locked');
SELECT throws_ok(
    $$SELECT dbal.acquire_lock('a0000000-0000-4000-8000-000000000004', 1000, p_user => 'u1',
                               p_role => 'user')$$,
    'D4243', NULL, 'expired validation result cannot be locked');
SELECT throws_ok(
    $$SELECT dbal.acquire_lock('b0000000-0000-4000-8000-000000000001', 1000, p_user => 'u1',
                               p_role => 'user')$$,
    'D4041', 'workflow not found', 'another tenant''s workflow is not found');
SELECT throws_ok(
    $$SELECT dbal.acquire_lock('c0000000-0000-4000-8000-000000000009', 1000, p_user => 'u1',
                               p_role => 'user')$$,
    'D4041', 'workflow not found', 'a random id is not found, in the same words');
SELECT throws_ok(
    $$SELECT dbal.acquire_lock('b0000000-0000-4000-8000-000000000001', 1000, 'globex', 'u1',
                               'user')$$,
    'D4034', NULL, 'tenant argument contradicting the context');

-- release_expired_locks: acme's expired lock only
SELECT dbal.renew_lock('a0000000-0000-4000-8000-000000000001', 2, 1, p_user => 'u2',
                       p_role => 'user');
SELECT pg_sleep(0.02);
SELECT is(dbal.release_expired_locks(), 1, 'release_expired_locks clears the expired lock');
SELECT is((SELECT count(*) FROM dbal.audit_log
            WHERE operation = 'lock_expired'
              AND workflow_id = 'a0000000-0000-4000-8000-000000000001'),
          2::bigint, 'both expiries are audited (takeover and release_expired_locks)');

SELECT * FROM finish();
ROLLBACK;
