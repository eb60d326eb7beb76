-- 75_validation_store.sql — storing a validation result computed by pydbal.
--
-- Guarantees:
--   * store_validation is SECURITY DEFINER with a pinned search_path, so that any role's
--     validate() — and the lock path's re-validation for role user — can keep its result although
--     the application role writes no table. It changes the validation columns only, of a
--     workflow of the request's tenant (dbal.enter; the owner's policies apply).
--   * A result is stored only at the revision it was computed for: a workflow changed meanwhile
--     keeps its state (the function returns false).
--   * The status is valid or invalid (else VALIDATION_ERROR, 422); the database stamps
--     validated_at = now() and valid_until = now() + dbal.validity_period().
-- Executable by @app_role@ only.

SET LOCAL ROLE @owner_role@;

-- store_validation(...): stores a validation result computed by pydbal for the workflow at
-- revision p_version (nothing when the workflow changed meanwhile: returns false). SECURITY
-- DEFINER so that any role's validate() — and the lock path's re-validation for role user — can
-- keep the cached result; it changes validation columns only.
CREATE FUNCTION dbal.store_validation(
        p_tenant text, p_user text, p_role text, p_id uuid, p_version integer,
        p_status text, p_errors jsonb, p_validator_version integer)
    RETURNS boolean
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_count integer;
BEGIN
    PERFORM dbal.enter(p_tenant, p_user, p_role);
    IF p_status NOT IN ('valid', 'invalid') THEN
        PERFORM dbal.raise_error(422, 'a validation result is valid or invalid');
    END IF;
    UPDATE dbal.workflows w
       SET validation_status = p_status, validation_errors = p_errors, validated_at = now(),
           valid_until = now() + dbal.validity_period(), validator_version = p_validator_version
     WHERE w.tenant_id = p_tenant AND w.id = p_id AND w.version = p_version;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count = 1;
END
$$;

RESET ROLE;
