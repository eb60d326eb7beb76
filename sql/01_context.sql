-- 01_context.sql — the request context, the entry into it, and error raising.
--
-- A request's tenant, user id and user role reach the database as TRANSACTION-LOCAL settings
-- (set_config(..., true)): dbal.tenant_id, dbal.user_id, dbal.user_role. They end with the
-- transaction, so a pooled connection never carries one request's tenant into the next.
-- After such a transaction ends, current_setting(..., true) returns '' (not NULL) for the rest
-- of the session, hence NULLIF: a missing context reads as NULL and every policy fails closed.
--
-- Guarantees: the roles (dbal.roles(), dbal.admin_roles()) and the validity period
-- (dbal.validity_period()) are defined here once; the context is entered through one
-- implementation (dbal.enter; dbal.enter_app adds the switch to @app_role@), which answers the
-- same arguments with the same error wherever it is called. SECURITY INVOKER functions,
-- executable by @app_role@ (sql/90_grants.sql).

SET LOCAL ROLE @owner_role@;

-- ctx_tenant(): the request's tenant, or NULL. STABLE and inlinable (no SET clause), so a
-- policy comparing an indexed tenant_id with it is evaluated once per statement.
CREATE FUNCTION dbal.ctx_tenant() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('dbal.tenant_id', true), '') $$;

-- ctx_user(): the request's user id, or NULL.
CREATE FUNCTION dbal.ctx_user() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('dbal.user_id', true), '') $$;

-- roles(): the request roles there are, the one list of them (pydbal.models.ROLES mirrors it,
-- tests/schema/test_constants.py compares the two). IMMUTABLE and inlined: a constant.
CREATE FUNCTION dbal.roles() RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT ARRAY['user', 'admin', 'god', 'supergod'] $$;

-- admin_roles(): the roles among dbal.roles() that may write any workflow of their tenant (the
-- one list; pydbal.models.ADMIN_ROLES mirrors it). god and supergod have no rights outside their
-- tenant either.
CREATE FUNCTION dbal.admin_roles() RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT ARRAY['admin', 'god', 'supergod'] $$;

-- ctx_role(): the request's role (one of dbal.roles()), or NULL. Any other value reads as NULL,
-- so a misspelt role has no rights at all.
CREATE FUNCTION dbal.ctx_role() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
        SELECT r FROM (SELECT NULLIF(current_setting('dbal.user_role', true), '') AS r) s
        WHERE r = ANY (dbal.roles())
    $$;

-- ctx_is_admin(): true when the request's role is one of dbal.admin_roles() (may write any
-- workflow of its tenant), false otherwise, also without a role.
CREATE FUNCTION dbal.ctx_is_admin() RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT coalesce(dbal.ctx_role() = ANY (dbal.admin_roles()), false) $$;

-- raise_error(code, message, details): raises SQLSTATE 'D' || the design's code on four digits
-- (D4231 = WORKFLOW_LOCKED, D0403 = FORBIDDEN) with details as JSON in DETAIL. The Python layer
-- maps these in one place (pydbal/errors.py). Never returns.
CREATE FUNCTION dbal.raise_error(p_code integer, p_message text, p_details jsonb DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'D' || lpad(p_code::text, 4, '0'),
        MESSAGE = p_message,
        DETAIL = coalesce(p_details::text, '');
END
$$;

-- enter(tenant, user, role): establishes the request context for the rest of the transaction
-- and returns the tenant: the one implementation of the context's rules (dbal.enter_app adds
-- the role switch of the read entry points). A NULL argument keeps what the transaction set
-- already (a NULL tenant: the context's). Errors, checked in this order:
--   * an empty tenant is VALIDATION_ERROR (422), as in pydbal.connect(...).tenant("");
--   * a tenant that contradicts the context already set is TENANT_MISMATCH (4034);
--   * a role not in dbal.roles() is FORBIDDEN (403);
--   * no tenant at all (none given, none set) is FORBIDDEN (403): no request without a context.
-- Every entry point of the API calls it (or enter_app) first, so that one statement carries the
-- context (one round trip, and routable by tenant on Citus); the analysts' functions enter each
-- granted tenant with dbal.analyst_enter instead (sql/95_analysts.sql).
CREATE FUNCTION dbal.enter(p_tenant text, p_user text DEFAULT NULL, p_role text DEFAULT NULL)
    RETURNS text
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_current text := dbal.ctx_tenant();
BEGIN
    IF p_tenant = '' THEN
        PERFORM dbal.raise_error(422, 'tenant id must not be empty');
    END IF;
    IF v_current <> p_tenant THEN
        PERFORM dbal.raise_error(4034, 'tenant argument does not match the request context',
                                 jsonb_build_object('context', v_current, 'argument', p_tenant));
    END IF;
    IF p_role <> ALL (dbal.roles()) THEN
        PERFORM dbal.raise_error(403, format('unknown role %L', p_role));
    END IF;
    v_current := coalesce(p_tenant, v_current);
    IF v_current IS NULL THEN
        PERFORM dbal.raise_error(403, 'no tenant context: call through pydbal or set dbal.tenant_id');
    END IF;
    PERFORM set_config('dbal.tenant_id', v_current, true);
    IF p_user IS NOT NULL THEN
        PERFORM set_config('dbal.user_id', p_user, true);
    END IF;
    IF p_role IS NOT NULL THEN
        PERFORM set_config('dbal.user_role', p_role, true);
    END IF;
    RETURN v_current;
END
$$;

-- enter_app(tenant, user, role): dbal.enter (same checks, same errors for the same arguments)
-- after switching the current role to @app_role@ until the end of the transaction (fails for a
-- login that is not a member of it); inside a SECURITY DEFINER entry point (current_user is
-- @owner_role@) the role stays, and the owner's policies apply. Tenant, user and role are all
-- required here: a NULL one is FORBIDDEN (403), before enter's checks. Returns the tenant.
CREATE FUNCTION dbal.enter_app(p_tenant text, p_user text, p_role text) RETURNS text
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF current_user::text NOT IN ('@app_role@', '@owner_role@') THEN
        PERFORM set_config('role', '@app_role@', true);
    END IF;
    IF p_tenant IS NULL OR p_user IS NULL OR p_role IS NULL THEN
        PERFORM dbal.raise_error(403, 'tenant, user and role are required');
    END IF;
    RETURN dbal.enter(p_tenant, p_user, p_role);
END
$$;

-- current_validator_version(): the version of pydbal's validation rules. A stored result made by
-- an older version reads as stale. Bumped by a migration together with pydbal.VALIDATOR_VERSION.
CREATE FUNCTION dbal.current_validator_version() RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT 1 $$;

-- ctx_archived(): true while the current transaction asked to see archived workflows (set only
-- by the entry points that list or unarchive them: dbal.archived = 'visible'). The workflows
-- policies hide archived rows otherwise, so every read path forgets them without a filter of its
-- own. Not a security boundary: the service may act for any tenant and may see its archive.
CREATE FUNCTION dbal.ctx_archived() RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT current_setting('dbal.archived', true) = 'visible' $$;

-- validity_period(): how long a stored validation result stays current. The one home of the
-- "one hour" rule: the entry points stamp valid_until = now() + this, and a CHECK constraint on
-- dbal.workflows refuses any result that outlives it, whoever writes the row.
CREATE FUNCTION dbal.validity_period() RETURNS interval
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT interval '1 hour' $$;

RESET ROLE;
