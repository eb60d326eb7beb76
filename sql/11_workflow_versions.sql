-- 11_workflow_versions.sql — append-only history of workflow definitions.
--
-- Each change of a workflow's definition (nodes, edges, variables, config) keeps the previous
-- definition here, with its version number, who made it and when (sql/30_workflow_triggers.sql).
-- Rows are written only by that trigger; nobody but a superuser can change or delete them, and
-- the foreign key has no ON DELETE CASCADE: a workflow with history cannot be deleted by accident
-- (workflows are archived; an operator's purge, sql/73_purge.sql, removes history first).

SET LOCAL ROLE @owner_role@;

CREATE TABLE dbal.workflow_versions (
    tenant_id    text        NOT NULL,
    workflow_id  uuid        NOT NULL,
    version      integer     NOT NULL,
    name         text        NOT NULL,
    description  text,
    nodes        jsonb       NOT NULL,
    edges        jsonb       NOT NULL,
    variables    jsonb       NOT NULL,
    config       jsonb       NOT NULL,
    created_by   text        NOT NULL,   -- author of this version
    created_at   timestamptz NOT NULL,   -- when this version was made
    replaced_by  text,                   -- who replaced it with the next version
    replaced_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT workflow_versions_pkey PRIMARY KEY (tenant_id, workflow_id, version),
    CONSTRAINT workflow_versions_workflow_fkey FOREIGN KEY (tenant_id, workflow_id)
        REFERENCES dbal.workflows (tenant_id, id)
);

COMMENT ON TABLE dbal.workflow_versions IS
    'Previous definitions of each workflow (append-only, written by trigger).';

RESET ROLE;
