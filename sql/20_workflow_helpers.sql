-- 20_workflow_helpers.sql — small building blocks shared by the entry points.
--
-- Guarantees: each rule below has its one home here — how a validation status reads
-- (effective_validation_status), what a live and an expired lock are (lease_live, lease_expired),
-- that an invisible workflow is WORKFLOW_NOT_FOUND (visible_or_4041), and how an audit row is
-- written in the request's context (audit). SECURITY INVOKER: they act with the caller's rights
-- and policies.

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

-- lease_live(is_locked, lock_expires_at, at): true when a lock is held and its lease has not
-- expired at the time p_at (callers pass clock_timestamp(), the lease clock, or the instant they
-- took from it). The one home of "a live lock". IMMUTABLE one-line SQL, so the planner inlines it
-- to `is_locked AND lock_expires_at > at` and the partial index workflows_locked_idx applies.
CREATE FUNCTION dbal.lease_live(p_locked boolean, p_expires_at timestamptz, p_at timestamptz)
    RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT p_locked AND p_expires_at > p_at $$;

-- lease_expired(is_locked, lock_expires_at, at): true when a lock is held but its lease ran out at
-- or before p_at: with lease_live, the held locks split into live and expired ones, none in both.
-- Inlined like lease_live (to `is_locked AND lock_expires_at <= at`), for the sweeps' index scans.
CREATE FUNCTION dbal.lease_expired(p_locked boolean, p_expires_at timestamptz, p_at timestamptz)
    RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT p_locked AND p_expires_at <= p_at $$;

-- visible_or_4041(tenant, id, for_update): the workflow row as the caller's policies show it
-- (locked FOR UPDATE when p_for_update), or WORKFLOW_NOT_FOUND (4041) with {"id": id}. The one
-- home of that rule: a workflow of another tenant (or archived, or missing) is reported exactly
-- like a missing one, so existence is never revealed. FOR UPDATE needs the owner's privileges:
-- the application role may check visibility only.
CREATE FUNCTION dbal.visible_or_4041(p_tenant text, p_id uuid, p_for_update boolean DEFAULT false)
    RETURNS dbal.workflows
    LANGUAGE plpgsql
    AS $$
DECLARE
    w dbal.workflows;
BEGIN
    IF p_for_update THEN
        SELECT * INTO w FROM dbal.workflows x WHERE x.tenant_id = p_tenant AND x.id = p_id FOR UPDATE;
    ELSE
        SELECT * INTO w FROM dbal.workflows x WHERE x.tenant_id = p_tenant AND x.id = p_id;
    END IF;
    IF NOT FOUND THEN
        PERFORM dbal.raise_error(4041, 'workflow not found', jsonb_build_object('id', p_id));
    END IF;
    RETURN w;
END
$$;

-- workflow_for_update(tenant, id): the workflow row, locked FOR UPDATE, or WORKFLOW_NOT_FOUND
-- (4041): dbal.visible_or_4041 with the row lock. Internal: executable by the owner only (the
-- lock functions call it).
CREATE FUNCTION dbal.workflow_for_update(p_tenant text, p_workflow uuid)
    RETURNS dbal.workflows
    LANGUAGE sql
    AS $$ SELECT dbal.visible_or_4041(p_tenant, p_workflow, true) $$;

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
