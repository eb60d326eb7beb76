-- 20_workflow_helpers.sql — small building blocks shared by the definer functions.

SET LOCAL ROLE @owner_role@;

-- effective_validation_status(status, valid_until, validator_version): the validation status as
-- readers must see it: a 'valid' result past valid_until (at the transaction's time, now()), or
-- made by an older validator version, reads as 'stale'. A STABLE one-line SQL function with only
-- stable calls, so the planner inlines it (no per-row function call).
CREATE FUNCTION dbal.effective_validation_status(
        p_status text, p_valid_until timestamptz, p_validator_version integer)
    RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
        SELECT CASE
            WHEN p_status = 'valid'
                 AND (p_valid_until IS NULL OR p_valid_until <= now()
                      OR p_validator_version IS DISTINCT FROM dbal.current_validator_version())
            THEN 'stale'
            ELSE p_status END
    $$;

-- workflow_for_update(tenant, id): the workflow row, locked FOR UPDATE, or WORKFLOW_NOT_FOUND
-- (4041). A workflow of another tenant is invisible through the policies and is reported exactly
-- like a missing one: existence is never revealed.
CREATE FUNCTION dbal.workflow_for_update(p_tenant text, p_workflow uuid)
    RETURNS dbal.workflows
    LANGUAGE plpgsql
    AS $$
DECLARE
    w dbal.workflows;
BEGIN
    SELECT * INTO w FROM dbal.workflows
    WHERE tenant_id = p_tenant AND id = p_workflow
    FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM dbal.raise_error(4041, 'workflow not found', jsonb_build_object('id', p_workflow));
    END IF;
    RETURN w;
END
$$;

-- audit(operation, workflow, details): one audit row in the request's context.
CREATE FUNCTION dbal.audit(p_operation text, p_workflow uuid, p_details jsonb DEFAULT NULL,
                           p_changed text[] DEFAULT NULL)
    RETURNS void
    LANGUAGE sql
    AS $$
        INSERT INTO dbal.audit_log (tenant_id, user_id, user_role, operation, workflow_id,
                                    changed_fields, details)
        VALUES (dbal.ctx_tenant(), coalesce(dbal.ctx_user(), session_user::text), dbal.ctx_role(),
                p_operation, p_workflow, p_changed, p_details)
    $$;

RESET ROLE;
