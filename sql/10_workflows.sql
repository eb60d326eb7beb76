-- 10_workflows.sql — the workflows table: one row per workflow definition of a tenant.
--
-- Keys: the primary key and every unique index start with tenant_id, so the table can be
-- distributed by tenant (Citus) without change. CHECK constraints reject what can never be
-- valid even for writes that bypass pydbal. Lock and execution columns are written only by the
-- SECURITY DEFINER functions of sql/40_locks.sql and sql/41_record_execution.sql; every other
-- column by the definer entry points of sql/71_api_writes.sql, sql/72_archive.sql and
-- sql/75_validation_store.sql. The application
-- role may not write this table at all (sql/90_grants.sql).
--
-- Rows are never deleted through pydbal: deleting a workflow archives it (archived_at), which
-- keeps its history, executions, roll-ups and audit; only an operator's purge
-- (sql/73_purge.sql) removes rows. Ids are chosen by the database (gen_random_uuid()), never by
-- a caller, so a removed id never comes back and its fencing tokens never repeat.

SET LOCAL ROLE @owner_role@;

-- tags_text(tags): the tags as one space-separated string. array_to_string is only STABLE;
-- for text[] it is in fact immutable, which the generated search document needs.
CREATE FUNCTION dbal.tags_text(p_tags text[]) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT array_to_string(p_tags, ' ') $$;

CREATE TABLE dbal.workflows (
    tenant_id               text        NOT NULL,
    id                      uuid        NOT NULL DEFAULT gen_random_uuid(),
    name                    text        NOT NULL,
    description             text,
    nodes                   jsonb       NOT NULL DEFAULT '[]',
    edges                   jsonb       NOT NULL DEFAULT '{}',
    enabled                 boolean     NOT NULL DEFAULT true,
    -- revision number: +1 on every successful update (trigger); never written directly
    version                 integer     NOT NULL DEFAULT 1,
    variables               jsonb       NOT NULL DEFAULT '{}',
    config                  jsonb       NOT NULL DEFAULT '{}',
    tags                    text[]      NOT NULL DEFAULT '{}',
    -- system | user | package | automation | integration | template
    category                text        NOT NULL DEFAULT 'user',
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    created_by              text        NOT NULL,
    updated_by              text,

    -- Validation: the "cold cache" of the last validation result.
    --   pending  never validated
    --   valid    validated without errors, until valid_until, by validator_version
    --   invalid  validated with errors (validation_errors holds the report)
    --   stale    the definition changed since the result was made
    validation_status       text        NOT NULL DEFAULT 'pending',
    validation_errors       jsonb,
    validated_at            timestamptz,
    valid_until             timestamptz,
    validator_version       integer,

    -- Execution counters (sql/41_record_execution.sql).
    execution_count         bigint      NOT NULL DEFAULT 0,
    finished_execution_count bigint     NOT NULL DEFAULT 0,  -- runs with a final status
    last_executed_at        timestamptz,
    -- success | failure | pending | timeout
    last_execution_status   text,
    average_execution_time  double precision,                -- ms, over finished runs

    -- Lease lock (sql/40_locks.sql). lock_token is a fencing token: it only ever grows, so a
    -- holder whose lease was taken over can be told apart from the new holder.
    is_locked               boolean     NOT NULL DEFAULT false,
    locked_by               text,
    locked_at               timestamptz,
    lock_expires_at         timestamptz,
    lock_token              bigint      NOT NULL DEFAULT 0,

    search_document         tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english'::regconfig, name), 'A')
        || setweight(to_tsvector('english'::regconfig, coalesce(description, '')), 'B')
        || setweight(to_tsvector('english'::regconfig, dbal.tags_text(tags)), 'C')
    ) STORED,

    -- Archive (sql/72_archive.sql): an archived workflow is hidden from every read by the
    -- policies; its name is free for a live workflow while it is archived.
    archived_at             timestamptz,
    archived_by             text,

    CONSTRAINT workflows_pkey PRIMARY KEY (tenant_id, id),
    CONSTRAINT workflows_tenant_not_empty CHECK (tenant_id <> '' AND length(tenant_id) <= 255),
    CONSTRAINT workflows_name_length CHECK (btrim(name) <> '' AND length(name) <= 255),
    CONSTRAINT workflows_created_by_not_empty CHECK (created_by <> ''),
    CONSTRAINT workflows_nodes_is_array CHECK (jsonb_typeof(nodes) = 'array'),
    CONSTRAINT workflows_edges_is_object CHECK (jsonb_typeof(edges) = 'object'),
    CONSTRAINT workflows_variables_is_object CHECK (jsonb_typeof(variables) = 'object'),
    CONSTRAINT workflows_config_is_object CHECK (jsonb_typeof(config) = 'object'),
    CONSTRAINT workflows_version_positive CHECK (version >= 1),
    CONSTRAINT workflows_category_known CHECK (
        category IN ('system', 'user', 'package', 'automation', 'integration', 'template')),
    CONSTRAINT workflows_validation_status_known CHECK (
        validation_status IN ('valid', 'invalid', 'stale', 'pending')),
    -- A stored validation result lives at most dbal.validity_period() and was made by a validator
    -- the database knows: valid_until = 'infinity' or a future validator can never be stored.
    CONSTRAINT workflows_validity_bounded CHECK (
        valid_until IS NULL
        OR (validated_at IS NOT NULL AND valid_until <= validated_at + dbal.validity_period())),
    CONSTRAINT workflows_validator_known CHECK (
        validator_version IS NULL OR validator_version <= dbal.current_validator_version()),
    CONSTRAINT workflows_archive_consistent CHECK ((archived_at IS NULL) = (archived_by IS NULL)),
    CONSTRAINT workflows_valid_has_result CHECK (
        validation_status <> 'valid'
        OR (validated_at IS NOT NULL AND valid_until IS NOT NULL AND validator_version IS NOT NULL)),
    CONSTRAINT workflows_last_status_known CHECK (
        last_execution_status IN ('success', 'failure', 'pending', 'timeout')),
    CONSTRAINT workflows_counters_sane CHECK (
        execution_count >= 0 AND finished_execution_count BETWEEN 0 AND execution_count
        AND (average_execution_time IS NULL OR average_execution_time >= 0)),
    CONSTRAINT workflows_lock_consistent CHECK (
        (is_locked AND locked_by IS NOT NULL AND locked_at IS NOT NULL AND lock_expires_at IS NOT NULL)
        OR (NOT is_locked AND locked_by IS NULL AND locked_at IS NULL AND lock_expires_at IS NULL))
);

COMMENT ON TABLE dbal.workflows IS
    'Workflow definitions (nodes and edges), one row per workflow of a tenant. RLS: see sql/50_policies.sql.';

-- Names are unique among a tenant's live workflows only: archiving frees the name.
CREATE UNIQUE INDEX workflows_tenant_name_key ON dbal.workflows (tenant_id, name)
    WHERE archived_at IS NULL;
CREATE INDEX workflows_tenant_archived_idx ON dbal.workflows (tenant_id, archived_at DESC, id)
    WHERE archived_at IS NOT NULL;
-- Keyset pages (api_list): one (tenant_id, sort key, id) index per indexed sort field, read
-- forward for ascending pages and backward for descending ones, so a page costs its own rows
-- whatever its depth. execution_count and last_executed_at are not indexed on purpose: every
-- recorded execution changes them, and an index would make each of those updates non-HOT.
CREATE INDEX workflows_tenant_updated_idx ON dbal.workflows (tenant_id, updated_at, id);
CREATE INDEX workflows_tenant_created_idx ON dbal.workflows (tenant_id, created_at, id);
CREATE INDEX workflows_tenant_name_idx ON dbal.workflows (tenant_id, name, id);
CREATE INDEX workflows_tenant_category_idx ON dbal.workflows (tenant_id, category);
CREATE INDEX workflows_tenant_creator_idx ON dbal.workflows (tenant_id, created_by);
CREATE INDEX workflows_tenant_validation_idx ON dbal.workflows (tenant_id, validation_status);
CREATE INDEX workflows_locked_idx ON dbal.workflows (tenant_id, lock_expires_at) WHERE is_locked;
-- The leakproof operator classes of sql/05_index_operators.sql: under row-level security only
-- their operators (dbal.&&, dbal.@@, dbal.%) can be index conditions.
CREATE INDEX workflows_tags_idx ON dbal.workflows USING gin (tags dbal.tags_ops);
CREATE INDEX workflows_search_idx ON dbal.workflows USING gin (search_document dbal.search_ops);
CREATE INDEX workflows_name_trgm_idx ON dbal.workflows USING gin (name dbal.name_trgm_ops);

RESET ROLE;
