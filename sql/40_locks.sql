-- 40_locks.sql — lease locks with fencing tokens.
--
-- A lock is a lease on the workflow row: holder, since when, until when (the database clock,
-- clock_timestamp(), is the only clock), and a fencing token that grows by one on every
-- acquisition and is never reused. Session advisory locks are not used: they do not survive
-- connection pooling. These functions are SECURITY DEFINER (owned by @owner_role@, EXECUTE for
-- @app_role@ only) because the application role cannot write lock columns itself. Each acts
-- only within the request's tenant: the p_tenant/p_user/p_role arguments set the context
-- (dbal.enter), or the context already set in the transaction is used.

SET LOCAL ROLE @owner_role@;

-- check_lease(timeout_ms): VALIDATION_ERROR (422) unless a lease length lies within the limits
-- lease_min_ms .. lease_max_ms (1 ms to 24 hours, sql/15_limits.sql).
CREATE FUNCTION dbal.check_lease(p_timeout_ms integer) RETURNS void
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

-- acquire_lock_lease(workflow, timeout_ms): a new fencing token and the lease's expiry, or no
-- row while an unexpired lock exists (its own holder included: not re-entrant). An expired lock
-- is taken over. Refuses a disabled workflow (WORKFLOW_DISABLED 4042) and one without a current
-- 'valid' validation result (VALIDATION_STATUS_INVALID 4243). Any role (user and up) may lock.
CREATE FUNCTION dbal.acquire_lock_lease(
        p_workflow uuid,
        p_timeout_ms integer DEFAULT 30000,
        p_tenant text DEFAULT NULL, p_user text DEFAULT NULL, p_role text DEFAULT NULL)
    RETURNS TABLE (token bigint, expires_at timestamptz)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_tenant text := dbal.enter(p_tenant, p_user, p_role);
    v_now timestamptz := clock_timestamp();
    v_status text;
    w dbal.workflows;
BEGIN
    IF dbal.ctx_role() IS NULL OR dbal.ctx_user() IS NULL THEN
        PERFORM dbal.raise_error(403, 'a user and a role are required to lock a workflow');
    END IF;
    PERFORM dbal.check_lease(p_timeout_ms);
    w := dbal.workflow_for_update(v_tenant, p_workflow);
    IF NOT w.enabled THEN
        PERFORM dbal.raise_error(4042, 'workflow is disabled', jsonb_build_object('id', w.id));
    END IF;
    v_status := dbal.effective_validation_status(w.validation_status, w.valid_until, w.validator_version);
    IF v_status <> 'valid' THEN
        PERFORM dbal.raise_error(4243, format('workflow validation is %s, not valid', v_status),
                                 jsonb_build_object('id', w.id, 'validation_status', v_status,
                                                    'valid_until', w.valid_until,
                                                    'validator_version', w.validator_version));
    END IF;
    IF dbal.lease_live(w.is_locked, w.lock_expires_at, v_now) THEN
        RETURN;
    END IF;
    IF w.is_locked THEN
        PERFORM dbal.audit('lock_expired', w.id,
                           jsonb_build_object('holder', w.locked_by, 'token', w.lock_token,
                                              'expired_at', w.lock_expires_at));
    END IF;
    UPDATE dbal.workflows
       SET is_locked = true, locked_by = dbal.ctx_user(), locked_at = v_now,
           lock_expires_at = v_now + make_interval(secs => p_timeout_ms / 1000.0),
           lock_token = w.lock_token + 1
     WHERE tenant_id = v_tenant AND id = w.id;
    PERFORM dbal.audit('lock_acquire', w.id, jsonb_build_object('token', w.lock_token + 1,
                                                                  'timeout_ms', p_timeout_ms));
    RETURN QUERY SELECT w.lock_token + 1, v_now + make_interval(secs => p_timeout_ms / 1000.0);
END
$$;

-- acquire_lock(workflow, timeout_ms): the fencing token of acquire_lock_lease, or NULL while
-- an unexpired lock exists.
CREATE FUNCTION dbal.acquire_lock(
        p_workflow uuid,
        p_timeout_ms integer DEFAULT 30000,
        p_tenant text DEFAULT NULL, p_user text DEFAULT NULL, p_role text DEFAULT NULL)
    RETURNS bigint
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$ SELECT l.token FROM dbal.acquire_lock_lease(p_workflow, p_timeout_ms, p_tenant, p_user, p_role) l $$;

-- renew_lock_lease(workflow, token, timeout_ms): extends the lease of the current holder to
-- now + timeout and returns the new expiry; NULL once the lock was lost (expired, taken over,
-- released, other user).
CREATE FUNCTION dbal.renew_lock_lease(
        p_workflow uuid, p_token bigint, p_timeout_ms integer DEFAULT 30000,
        p_tenant text DEFAULT NULL, p_user text DEFAULT NULL, p_role text DEFAULT NULL)
    RETURNS timestamptz
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_tenant text := dbal.enter(p_tenant, p_user, p_role);
    v_now timestamptz := clock_timestamp();
    w dbal.workflows;
BEGIN
    PERFORM dbal.check_lease(p_timeout_ms);
    w := dbal.workflow_for_update(v_tenant, p_workflow);
    IF NOT coalesce(dbal.lease_live(w.is_locked, w.lock_expires_at, v_now)
                    AND w.lock_token = p_token AND w.locked_by = dbal.ctx_user(), false) THEN
        RETURN NULL;
    END IF;
    UPDATE dbal.workflows
       SET lock_expires_at = v_now + make_interval(secs => p_timeout_ms / 1000.0)
     WHERE tenant_id = v_tenant AND id = w.id;
    RETURN v_now + make_interval(secs => p_timeout_ms / 1000.0);
END
$$;

-- renew_lock(workflow, token, timeout_ms): true when the lease was extended, false once lost.
CREATE FUNCTION dbal.renew_lock(
        p_workflow uuid, p_token bigint, p_timeout_ms integer DEFAULT 30000,
        p_tenant text DEFAULT NULL, p_user text DEFAULT NULL, p_role text DEFAULT NULL)
    RETURNS boolean
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$ SELECT dbal.renew_lock_lease(p_workflow, p_token, p_timeout_ms, p_tenant, p_user, p_role) IS NOT NULL $$;

-- release_lock(workflow, token): releases the lock. The holder releases with its token (even
-- after expiry, as long as nobody took it over); admin, god and supergod may release without
-- one. A token that is not the current one is refused whoever gives it (LOCK_NOT_OWNED 4233):
-- a worker whose lease was taken over never releases the new holder's lock. So is a caller
-- without a token who is not admin and up, and a non-admin giving another user's token.
-- Returns false when there was no lock to release.
CREATE FUNCTION dbal.release_lock(
        p_workflow uuid, p_token bigint DEFAULT NULL,
        p_tenant text DEFAULT NULL, p_user text DEFAULT NULL, p_role text DEFAULT NULL)
    RETURNS boolean
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_tenant text := dbal.enter(p_tenant, p_user, p_role);
    w dbal.workflows;
BEGIN
    w := dbal.workflow_for_update(v_tenant, p_workflow);
    IF p_token IS NOT NULL AND p_token <> w.lock_token THEN
        PERFORM dbal.raise_error(4233, 'the lock was lost: the token is stale',
                                 jsonb_build_object('id', w.id, 'locked_by', w.locked_by,
                                                    'locked_at', w.locked_at));
    END IF;
    IF NOT w.is_locked THEN
        RETURN false;
    END IF;
    IF NOT dbal.ctx_is_admin()
       AND (p_token IS NULL OR w.locked_by IS DISTINCT FROM dbal.ctx_user()) THEN
        PERFORM dbal.raise_error(4233, 'the lock is not held by this caller',
                                 jsonb_build_object('id', w.id, 'locked_by', w.locked_by,
                                                    'locked_at', w.locked_at));
    END IF;
    UPDATE dbal.workflows
       SET is_locked = false, locked_by = NULL, locked_at = NULL, lock_expires_at = NULL
     WHERE tenant_id = v_tenant AND id = w.id;
    PERFORM dbal.audit('lock_release', w.id,
                       jsonb_build_object('token', w.lock_token, 'holder', w.locked_by));
    RETURN true;
END
$$;

-- clear_expired_locks(tenant): releases every lock whose lease has expired, in one tenant or,
-- with NULL, in all tenants the caller can see; returns how many. Internal: executable by no
-- one but its owner and superusers; use release_expired_locks or sweep_expired_locks.
CREATE FUNCTION dbal.clear_expired_locks(p_tenant text) RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_count integer;
BEGIN
    WITH cleared AS (
        UPDATE dbal.workflows w
           SET is_locked = false, locked_by = NULL, locked_at = NULL, lock_expires_at = NULL
          FROM (SELECT tenant_id, id, locked_by, lock_token, lock_expires_at
                  FROM dbal.workflows
                 WHERE dbal.lease_expired(is_locked, lock_expires_at, clock_timestamp())
                   AND (p_tenant IS NULL OR tenant_id = p_tenant)
                   FOR UPDATE) old
         WHERE w.tenant_id = old.tenant_id AND w.id = old.id
        RETURNING old.*
    ), audited AS (
        INSERT INTO dbal.audit_log (tenant_id, user_id, user_role, operation, workflow_id, details)
        SELECT c.tenant_id, coalesce(dbal.ctx_user(), session_user::text), dbal.ctx_role(),
               'lock_expired', c.id,
               jsonb_build_object('holder', c.locked_by, 'token', c.lock_token,
                                  'expired_at', c.lock_expires_at)
          FROM cleared c
        RETURNING 1
    )
    SELECT count(*) INTO v_count FROM audited;
    RETURN v_count;
END
$$;

-- release_expired_locks(): clears the expired locks of the request's tenant; returns how many.
CREATE FUNCTION dbal.release_expired_locks(
        p_tenant text DEFAULT NULL, p_user text DEFAULT NULL, p_role text DEFAULT NULL)
    RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    RETURN dbal.clear_expired_locks(dbal.enter(p_tenant, p_user, p_role));
END
$$;

-- sweep_expired_locks(): the operator's sweeper: clears expired locks across all tenants.
-- SECURITY INVOKER and executable by no role: run it as a superuser (pydbal locks sweep), which
-- is not subject to row-level security.
CREATE FUNCTION dbal.sweep_expired_locks() RETURNS integer
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
    AS $$ SELECT dbal.clear_expired_locks(NULL) $$;

RESET ROLE;
