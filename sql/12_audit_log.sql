-- 12_audit_log.sql — who did what to which workflow, when.
--
-- Written by the triggers on dbal.workflows (create, update, delete) and by the lock and
-- execution functions (lock_acquire, lock_release, lock_expired, execution). Range-partitioned by
-- time like executions (sql/60_partitions.sql). The application role may read its tenant's rows
-- and nothing else: no INSERT, UPDATE or DELETE.

SET LOCAL ROLE @owner_role@;

CREATE TABLE dbal.audit_log (
    tenant_id       text        NOT NULL,
    id              bigint      GENERATED ALWAYS AS IDENTITY,
    at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    user_id         text        NOT NULL,   -- the request's user, else the database login
    user_role       text,                   -- the request's role; NULL for direct SQL
    operation       text        NOT NULL,
    workflow_id     uuid,
    changed_fields  text[],
    details         jsonb,
    CONSTRAINT audit_log_pkey PRIMARY KEY (tenant_id, id, at)
) PARTITION BY RANGE (at);

COMMENT ON TABLE dbal.audit_log IS 'Audit trail of workflow changes, locks and executions (append-only).';

CREATE INDEX audit_log_workflow_idx ON dbal.audit_log (tenant_id, workflow_id, at DESC);
CREATE INDEX audit_log_tenant_at_idx ON dbal.audit_log (tenant_id, at DESC);

RESET ROLE;
