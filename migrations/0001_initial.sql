-- 0001_initial.sql — the first release's schema: sql/*.sql as of that release, in file order.
-- Never edit this file once released: add a new migration instead (the runner refuses edits).

-- ===== sql/00_schemas.sql =====
-- 00_schemas.sql — schemas and extensions.
--
-- Runs as a superuser (the migration runner checks). Roles @owner_role@, @app_role@ and
-- @analyst_role@ exist already: the runner creates them, because roles are cluster-wide while
-- this file is per database.
--
--   dbal      pydbal's tables and functions, owned by @owner_role@.
--   dbal_ext  extensions pydbal relies on (pg_trgm), so that definer functions can name a fixed,
--             non-writable schema in their search_path instead of "public".
--   partman   pg_partman, when the server has it (Debian's postgresql-15-partman, 4.7). The
--             embedded server does not: executions and audit then live in a default partition.

CREATE SCHEMA IF NOT EXISTS dbal_ext;
REVOKE ALL ON SCHEMA dbal_ext FROM PUBLIC;
GRANT USAGE ON SCHEMA dbal_ext TO @owner_role@, @app_role@, @analyst_role@;
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA dbal_ext;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_partman') THEN
        CREATE SCHEMA IF NOT EXISTS partman;
        CREATE EXTENSION IF NOT EXISTS pg_partman WITH SCHEMA partman;
    ELSE
        RAISE NOTICE 'pg_partman is not available on this server: workflow_executions and '
                     'audit_log keep every row in their default partition (no retention).';
    END IF;
END
$$;

CREATE SCHEMA IF NOT EXISTS dbal AUTHORIZATION @owner_role@;
REVOKE ALL ON SCHEMA dbal FROM PUBLIC;
GRANT USAGE ON SCHEMA dbal TO @app_role@, @analyst_role@;

-- Nothing the owner creates is executable by PUBLIC; grants are explicit (sql/90_grants.sql).
ALTER DEFAULT PRIVILEGES FOR ROLE @owner_role@ REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- ===== sql/01_context.sql =====
-- 01_context.sql — the request context and error raising.
--
-- A request's tenant, user id and user role reach the database as TRANSACTION-LOCAL settings
-- (set_config(..., true)): dbal.tenant_id, dbal.user_id, dbal.user_role. They end with the
-- transaction, so a pooled connection never carries one request's tenant into the next.
-- After such a transaction ends, current_setting(..., true) returns '' (not NULL) for the rest
-- of the session, hence NULLIF: a missing context reads as NULL and every policy fails closed.

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

-- ctx_role(): the request's role (user | admin | god | supergod), or NULL. Any other value reads
-- as NULL, so a misspelt role has no rights at all.
CREATE FUNCTION dbal.ctx_role() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
        SELECT r FROM (SELECT NULLIF(current_setting('dbal.user_role', true), '') AS r) s
        WHERE r IN ('user', 'admin', 'god', 'supergod')
    $$;

-- ctx_is_admin(): true when the request's role may write any workflow of its tenant
-- (admin, god, supergod). god and supergod have no rights outside their tenant.
CREATE FUNCTION dbal.ctx_is_admin() RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT coalesce(dbal.ctx_role() IN ('admin', 'god', 'supergod'), false) $$;

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
-- and returns the tenant. With a NULL tenant the context already set is used. Guarantees:
--   * a tenant that contradicts the context already set raises TENANT_MISMATCH (4034);
--   * no tenant at all raises FORBIDDEN (403): writes without a context are rejected;
--   * an unknown role raises FORBIDDEN (403).
-- Every entry point of the API calls it first, so that one statement carries the context
-- (one round trip, and routable by tenant on Citus).
CREATE FUNCTION dbal.enter(p_tenant text, p_user text DEFAULT NULL, p_role text DEFAULT NULL)
    RETURNS text
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_current text := dbal.ctx_tenant();
BEGIN
    IF p_tenant IS NOT NULL THEN
        IF p_tenant = '' THEN
            PERFORM dbal.raise_error(422, 'tenant id must not be empty');
        END IF;
        IF v_current IS NOT NULL AND v_current <> p_tenant THEN
            PERFORM dbal.raise_error(4034, 'tenant argument does not match the request context',
                                     jsonb_build_object('context', v_current, 'argument', p_tenant));
        END IF;
        PERFORM set_config('dbal.tenant_id', p_tenant, true);
        v_current := p_tenant;
    END IF;
    IF p_user IS NOT NULL THEN
        PERFORM set_config('dbal.user_id', p_user, true);
    END IF;
    IF p_role IS NOT NULL THEN
        IF p_role NOT IN ('user', 'admin', 'god', 'supergod') THEN
            PERFORM dbal.raise_error(403, format('unknown role %L', p_role));
        END IF;
        PERFORM set_config('dbal.user_role', p_role, true);
    END IF;
    IF v_current IS NULL THEN
        PERFORM dbal.raise_error(403, 'no tenant context: call through pydbal or set dbal.tenant_id');
    END IF;
    RETURN v_current;
END
$$;

-- current_validator_version(): the version of pydbal's validation rules. A stored result made by
-- an older version reads as stale. Bumped by a migration together with pydbal.VALIDATOR_VERSION.
CREATE FUNCTION dbal.current_validator_version() RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT 1 $$;

RESET ROLE;

-- ===== sql/10_workflows.sql =====
-- 10_workflows.sql — the workflows table: one row per workflow definition of a tenant.
--
-- Keys: the primary key and every unique index start with tenant_id, so the table can be
-- distributed by tenant (Citus) without change. CHECK constraints reject what can never be
-- valid even for writes that bypass pydbal. Lock and execution columns are written only by the
-- SECURITY DEFINER functions of sql/40_locks.sql and sql/41_record_execution.sql (see the
-- column grants in sql/90_grants.sql).

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

    CONSTRAINT workflows_pkey PRIMARY KEY (tenant_id, id),
    CONSTRAINT workflows_tenant_name_key UNIQUE (tenant_id, name),
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

CREATE INDEX workflows_tenant_updated_idx ON dbal.workflows (tenant_id, updated_at DESC, id);
CREATE INDEX workflows_tenant_created_idx ON dbal.workflows (tenant_id, created_at DESC, id);
CREATE INDEX workflows_tenant_category_idx ON dbal.workflows (tenant_id, category);
CREATE INDEX workflows_tenant_creator_idx ON dbal.workflows (tenant_id, created_by);
CREATE INDEX workflows_tenant_validation_idx ON dbal.workflows (tenant_id, validation_status);
CREATE INDEX workflows_locked_idx ON dbal.workflows (tenant_id, lock_expires_at) WHERE is_locked;
CREATE INDEX workflows_tags_idx ON dbal.workflows USING gin (tags);
CREATE INDEX workflows_search_idx ON dbal.workflows USING gin (search_document);
CREATE INDEX workflows_name_trgm_idx ON dbal.workflows USING gin (name dbal_ext.gin_trgm_ops);

RESET ROLE;

-- ===== sql/11_workflow_versions.sql =====
-- 11_workflow_versions.sql — append-only history of workflow definitions.
--
-- Each change of a workflow's definition (nodes, edges, variables, config) keeps the previous
-- definition here, with its version number, who made it and when (sql/30_workflow_triggers.sql).
-- Rows are written only by that trigger; nobody but a superuser can change or delete them.

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
        REFERENCES dbal.workflows (tenant_id, id) ON DELETE CASCADE
);

COMMENT ON TABLE dbal.workflow_versions IS
    'Previous definitions of each workflow (append-only, written by trigger).';

RESET ROLE;

-- ===== sql/12_audit_log.sql =====
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

-- ===== sql/13_executions.sql =====
-- 13_executions.sql — recorded executions, their de-duplication keys and hourly roll-ups.
--
-- workflow_executions  one row per execution, range-partitioned by started_at (daily partitions
--                      managed by pg_partman where present, sql/60_partitions.sql).
-- execution_keys       one row per (tenant, execution id), NOT partitioned: a unique index on a
--                      partitioned table must contain the partition column, so de-duplicating
--                      execution ids across partitions needs this table. It also remembers where
--                      (started_at) and with which status an execution was recorded.
-- workflow_stats_hourly per workflow per hour: counts by status, sum/min/max of durations and a
--                      log-scale duration histogram, updated in the same transaction as the
--                      execution row, so statistics never scan every execution.
-- workflow_stats_daily the same per UTC day, so a 30-day window merges 30 histograms, not 720.
-- All three are written only by dbal.record_execution (sql/41_record_execution.sql).

SET LOCAL ROLE @owner_role@;

CREATE TABLE dbal.workflow_executions (
    tenant_id     text        NOT NULL,
    workflow_id   uuid        NOT NULL,
    execution_id  text        NOT NULL,
    -- success | failure | pending (started, not finished) | timeout
    status        text        NOT NULL,
    duration_ms   double precision,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    executed_by   text        NOT NULL,
    error         text,
    recorded_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT workflow_executions_pkey PRIMARY KEY (tenant_id, execution_id, started_at),
    CONSTRAINT workflow_executions_status_known CHECK (status IN ('success', 'failure', 'pending', 'timeout')),
    CONSTRAINT workflow_executions_duration_sane CHECK (duration_ms IS NULL OR duration_ms >= 0),
    CONSTRAINT workflow_executions_workflow_fkey FOREIGN KEY (tenant_id, workflow_id)
        REFERENCES dbal.workflows (tenant_id, id) ON DELETE CASCADE
) PARTITION BY RANGE (started_at);

CREATE INDEX workflow_executions_workflow_idx
    ON dbal.workflow_executions (tenant_id, workflow_id, started_at DESC);

CREATE TABLE dbal.execution_keys (
    tenant_id     text        NOT NULL,
    execution_id  text        NOT NULL,
    workflow_id   uuid        NOT NULL,
    started_at    timestamptz NOT NULL,
    status        text        NOT NULL,
    CONSTRAINT execution_keys_pkey PRIMARY KEY (tenant_id, execution_id),
    CONSTRAINT execution_keys_id_length CHECK (length(execution_id) BETWEEN 1 AND 255),
    CONSTRAINT execution_keys_workflow_fkey FOREIGN KEY (tenant_id, workflow_id)
        REFERENCES dbal.workflows (tenant_id, id) ON DELETE CASCADE
);

-- duration_bucket(ms): the histogram bucket of a duration. Bucket 0 holds durations under 1 ms;
-- bucket b >= 1 holds [1.1^(b-1), 1.1^b) ms; the last bucket (239) everything from ~1.4e9 ms.
-- Reporting a bucket by its geometric midpoint is within 4.9 % (sqrt(1.1) - 1) of any value in it.
CREATE FUNCTION dbal.duration_bucket(p_ms double precision) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT CASE WHEN p_ms IS NULL THEN NULL
                    WHEN p_ms < 1 THEN 0
                    ELSE least(floor(ln(p_ms) / ln(1.1))::integer + 1, 239) END
    $$;

-- bucket_value(b): the value reported for bucket b (its geometric midpoint; 0.5 ms for bucket 0).
CREATE FUNCTION dbal.bucket_value(p_bucket integer) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN p_bucket = 0 THEN 0.5 ELSE power(1.1, p_bucket - 1) * sqrt(1.1) END $$;

CREATE TABLE dbal.workflow_stats_hourly (
    tenant_id     text        NOT NULL,
    workflow_id   uuid        NOT NULL,
    hour          timestamptz NOT NULL,   -- date_trunc('hour', started_at, 'UTC')
    success       bigint      NOT NULL DEFAULT 0,
    failure       bigint      NOT NULL DEFAULT 0,
    pending       bigint      NOT NULL DEFAULT 0,
    timeout       bigint      NOT NULL DEFAULT 0,
    finished      bigint      NOT NULL DEFAULT 0,  -- runs with a final status and a duration
    sum_ms        double precision NOT NULL DEFAULT 0,
    min_ms        double precision,
    max_ms        double precision,
    -- hist[b + 1] = number of finished runs whose duration falls in dbal.duration_bucket() = b
    hist          integer[]   NOT NULL DEFAULT array_fill(0, ARRAY[240]),
    CONSTRAINT workflow_stats_hourly_pkey PRIMARY KEY (tenant_id, workflow_id, hour),
    CONSTRAINT workflow_stats_hourly_workflow_fkey FOREIGN KEY (tenant_id, workflow_id)
        REFERENCES dbal.workflows (tenant_id, id) ON DELETE CASCADE
);

COMMENT ON TABLE dbal.workflow_stats_hourly IS
    'Hourly roll-up of executions per workflow; maintained by dbal.record_execution.';

CREATE TABLE dbal.workflow_stats_daily (
    tenant_id     text        NOT NULL,
    workflow_id   uuid        NOT NULL,
    day           timestamptz NOT NULL,   -- date_trunc('day', started_at, 'UTC')
    success       bigint      NOT NULL DEFAULT 0,
    failure       bigint      NOT NULL DEFAULT 0,
    pending       bigint      NOT NULL DEFAULT 0,
    timeout       bigint      NOT NULL DEFAULT 0,
    finished      bigint      NOT NULL DEFAULT 0,
    sum_ms        double precision NOT NULL DEFAULT 0,
    min_ms        double precision,
    max_ms        double precision,
    hist          integer[]   NOT NULL DEFAULT array_fill(0, ARRAY[240]),
    CONSTRAINT workflow_stats_daily_pkey PRIMARY KEY (tenant_id, workflow_id, day),
    CONSTRAINT workflow_stats_daily_workflow_fkey FOREIGN KEY (tenant_id, workflow_id)
        REFERENCES dbal.workflows (tenant_id, id) ON DELETE CASCADE
);

COMMENT ON TABLE dbal.workflow_stats_daily IS
    'Daily (UTC) roll-up of executions per workflow; maintained by dbal.record_execution.';

RESET ROLE;

-- ===== sql/20_workflow_helpers.sql =====
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

-- ===== sql/30_workflow_triggers.sql =====
-- 30_workflow_triggers.sql — what every write to dbal.workflows does, whoever makes it.
--
-- Before each row is written (workflows_before_write, runs as the caller):
--   * INSERT: version 1, timestamps from the server, validation fields consistent;
--   * UPDATE: updated_at kept; version + 1 when the content changed or the writer asked for it
--     (SET version = version + 1, so an update without changes still counts as one); a change of
--     nodes, edges or variables without a new validation result marks validation 'stale', so a
--     direct SQL edit can never leave a stale 'valid' behind.
-- After each statement (workflows_after_*, SECURITY DEFINER so that every role that may change
-- a workflow can write history and audit rows it may not write itself):
--   * the previous definition of every row whose definition changed goes to workflow_versions;
--   * one audit row per created, changed or deleted workflow. Changes to lock and execution
--     columns only are audited by the functions that make them, not here.

SET LOCAL ROLE @owner_role@;

-- content_changed(old, new): true when a user-visible field of the workflow differs.
CREATE FUNCTION dbal.content_changed(o dbal.workflows, n dbal.workflows) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT (o.name, o.description, o.nodes, o.edges, o.enabled, o.variables, o.config,
                o.tags, o.category)
               IS DISTINCT FROM
               (n.name, n.description, n.nodes, n.edges, n.enabled, n.variables, n.config,
                n.tags, n.category)
    $$;

-- workflows_before_write(): the BEFORE trigger described at the top of this file (version,
-- timestamps, stale marking). Runs as the writer; changes only the row being written.
CREATE FUNCTION dbal.workflows_before_write() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.version := 1;
        NEW.created_at := now();
        NEW.updated_at := NEW.created_at;
        IF NEW.validation_status = 'stale' THEN
            NEW.validation_status := 'pending';
        END IF;
        RETURN NEW;
    END IF;

    IF dbal.content_changed(OLD, NEW) OR NEW.version IS DISTINCT FROM OLD.version THEN
        NEW.version := OLD.version + 1;
        NEW.updated_at := greatest(now(), OLD.updated_at);
    ELSE
        NEW.version := OLD.version;
        IF (OLD.validation_status, OLD.validated_at) IS DISTINCT FROM (NEW.validation_status, NEW.validated_at) THEN
            NEW.updated_at := greatest(now(), OLD.updated_at);
        ELSE
            NEW.updated_at := OLD.updated_at;
        END IF;
    END IF;
    NEW.created_at := OLD.created_at;
    NEW.created_by := OLD.created_by;

    IF (OLD.nodes, OLD.edges, OLD.variables) IS DISTINCT FROM (NEW.nodes, NEW.edges, NEW.variables)
       AND NEW.validated_at IS NOT DISTINCT FROM OLD.validated_at
       AND NEW.validation_status <> 'pending' THEN
        NEW.validation_status := 'stale';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER workflows_before_write
    BEFORE INSERT OR UPDATE ON dbal.workflows
    FOR EACH ROW EXECUTE FUNCTION dbal.workflows_before_write();

-- The columns changed only through the lock and execution functions, which audit themselves.
CREATE FUNCTION dbal.system_columns() RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT ARRAY['execution_count', 'finished_execution_count', 'last_executed_at',
                       'last_execution_status', 'average_execution_time', 'is_locked',
                       'locked_by', 'locked_at', 'lock_expires_at', 'lock_token'] $$;

-- workflows_after_statement(): history and audit for one INSERT, UPDATE or DELETE statement,
-- set-based over its transition tables (a bulk write costs one INSERT per table, not one per row).
CREATE FUNCTION dbal.workflows_after_statement() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_user text := coalesce(dbal.ctx_user(), session_user::text);
    v_role text := dbal.ctx_role();
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO dbal.audit_log (tenant_id, user_id, user_role, operation, workflow_id, details)
        SELECT n.tenant_id, v_user, v_role, 'create', n.id, jsonb_build_object('name', n.name)
        FROM new_rows n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO dbal.audit_log (tenant_id, user_id, user_role, operation, workflow_id, details)
        SELECT o.tenant_id, v_user, v_role, 'delete', o.id,
               jsonb_build_object('name', o.name, 'version', o.version)
        FROM old_rows o;
    ELSE
        INSERT INTO dbal.workflow_versions (tenant_id, workflow_id, version, name, description,
                                            nodes, edges, variables, config, created_by,
                                            created_at, replaced_by, replaced_at)
        SELECT o.tenant_id, o.id, o.version, o.name, o.description, o.nodes, o.edges,
               o.variables, o.config, coalesce(o.updated_by, o.created_by), o.updated_at,
               coalesce(n.updated_by, v_user), n.updated_at
        FROM old_rows o JOIN new_rows n ON n.tenant_id = o.tenant_id AND n.id = o.id
        WHERE (o.nodes, o.edges, o.variables, o.config) IS DISTINCT FROM (n.nodes, n.edges, n.variables, n.config)
        ON CONFLICT (tenant_id, workflow_id, version) DO NOTHING;

        INSERT INTO dbal.audit_log (tenant_id, user_id, user_role, operation, workflow_id,
                                    changed_fields, details)
        SELECT c.tenant_id, v_user, v_role, 'update', c.id, c.fields,
               jsonb_build_object('version', c.version)
        FROM (
            SELECT n.tenant_id, n.id, n.version,
                   ARRAY(SELECT nk.key
                         FROM jsonb_each(to_jsonb(n)) nk
                         JOIN jsonb_each(to_jsonb(o)) ok ON ok.key = nk.key
                         WHERE nk.value IS DISTINCT FROM ok.value
                           AND nk.key NOT IN ('updated_at', 'version', 'search_document')
                         ORDER BY nk.key) AS fields,
                   n.version <> o.version AS bumped
            FROM old_rows o JOIN new_rows n ON n.tenant_id = o.tenant_id AND n.id = o.id
        ) c
        WHERE c.bumped OR NOT (c.fields <@ dbal.system_columns());
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER workflows_after_insert
    AFTER INSERT ON dbal.workflows REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION dbal.workflows_after_statement();
CREATE TRIGGER workflows_after_update
    AFTER UPDATE ON dbal.workflows REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION dbal.workflows_after_statement();
CREATE TRIGGER workflows_after_delete
    AFTER DELETE ON dbal.workflows REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION dbal.workflows_after_statement();

RESET ROLE;

-- ===== sql/40_locks.sql =====
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

-- check_lease(timeout_ms): VALIDATION_ERROR (422) unless a lease length is 1 ms to 24 hours.
CREATE FUNCTION dbal.check_lease(p_timeout_ms integer) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    AS $$
BEGIN
    IF p_timeout_ms IS NULL OR p_timeout_ms < 1 OR p_timeout_ms > 86400000 THEN
        PERFORM dbal.raise_error(422, 'timeout_ms must be between 1 and 86400000',
                                 jsonb_build_object('timeout_ms', p_timeout_ms));
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
    IF w.is_locked AND w.lock_expires_at > v_now THEN
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
    IF NOT coalesce(w.is_locked AND w.lock_token = p_token AND w.locked_by = dbal.ctx_user()
                    AND w.lock_expires_at > v_now, false) THEN
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
                 WHERE is_locked AND lock_expires_at <= clock_timestamp()
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

-- ===== sql/41_record_execution.sql =====
-- 41_record_execution.sql — recording an execution: the row, the counters and the roll-up in
-- one transaction.

SET LOCAL ROLE @owner_role@;

-- rollup_add(...): adds one execution to its hour in workflow_stats_hourly and its day in
-- workflow_stats_daily (UTC). A new run adds one to p_status's count; p_from_pending = true moves a
-- run recorded as pending to p_status. A finished run with a duration also adds to finished, sum,
-- min, max and its histogram bucket.
CREATE FUNCTION dbal.rollup_add(
        p_tenant text, p_workflow uuid, p_started_at timestamptz, p_status text,
        p_duration_ms double precision, p_from_pending boolean)
    RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_final boolean := p_status <> 'pending' AND p_duration_ms IS NOT NULL;
    v_bucket integer := CASE WHEN v_final THEN dbal.duration_bucket(p_duration_ms) ELSE 0 END;
    v_fin integer := v_final::integer;
    v_success integer := (p_status = 'success')::integer;
    v_failure integer := (p_status = 'failure')::integer;
    v_timeout integer := (p_status = 'timeout')::integer;
    v_pending integer := CASE WHEN p_status = 'pending' THEN 1 WHEN p_from_pending THEN -1 ELSE 0 END;
    v_sum double precision := CASE WHEN v_final THEN p_duration_ms ELSE 0 END;
    v_ms double precision := CASE WHEN v_final THEN p_duration_ms END;
    v_hist integer[] := array_fill(0, ARRAY[v_bucket]) || v_fin || array_fill(0, ARRAY[239 - v_bucket]);
BEGIN
    -- The two statements differ only in table and period column; keep them in step.
    INSERT INTO dbal.workflow_stats_hourly AS s
           (tenant_id, workflow_id, hour, success, failure, pending, timeout, finished,
            sum_ms, min_ms, max_ms, hist)
    VALUES (p_tenant, p_workflow, date_trunc('hour', p_started_at, 'UTC'), v_success, v_failure,
            greatest(v_pending, 0), v_timeout, v_fin, v_sum, v_ms, v_ms, v_hist)
    ON CONFLICT (tenant_id, workflow_id, hour) DO UPDATE SET
        success = s.success + v_success, failure = s.failure + v_failure,
        pending = s.pending + v_pending, timeout = s.timeout + v_timeout,
        finished = s.finished + v_fin, sum_ms = s.sum_ms + v_sum,
        min_ms = least(s.min_ms, v_ms), max_ms = greatest(s.max_ms, v_ms),
        hist[v_bucket + 1] = s.hist[v_bucket + 1] + v_fin;
    INSERT INTO dbal.workflow_stats_daily AS s
           (tenant_id, workflow_id, day, success, failure, pending, timeout, finished,
            sum_ms, min_ms, max_ms, hist)
    VALUES (p_tenant, p_workflow, date_trunc('day', p_started_at, 'UTC'), v_success, v_failure,
            greatest(v_pending, 0), v_timeout, v_fin, v_sum, v_ms, v_ms, v_hist)
    ON CONFLICT (tenant_id, workflow_id, day) DO UPDATE SET
        success = s.success + v_success, failure = s.failure + v_failure,
        pending = s.pending + v_pending, timeout = s.timeout + v_timeout,
        finished = s.finished + v_fin, sum_ms = s.sum_ms + v_sum,
        min_ms = least(s.min_ms, v_ms), max_ms = greatest(s.max_ms, v_ms),
        hist[v_bucket + 1] = s.hist[v_bucket + 1] + v_fin;
END
$$;

-- record_execution(workflow, status, duration_ms, execution_id, token, started_at, error):
-- records one execution and returns its id and what happened:
--   'recorded'   a new execution: row inserted, counters and roll-up updated;
--   'completed'  a 'pending' execution got its final status (counted once, moved in the roll-up);
--   'duplicate'  the execution id was recorded already with this status (or finished already and
--                this is a late 'pending'): nothing changed.
-- An execution id recorded with another final status is a CONFLICT (409). With a token, the
-- caller must hold the lock with that token and user (else LOCK_NOT_OWNED 4233): a worker whose
-- lease expired cannot write results. Without one, recording is refused while another user holds
-- an unexpired lock (WORKFLOW_LOCKED 4231). started_at defaults to now - duration and may be in
-- the past (imports), not more than 5 minutes in the future.
-- Counters: execution_count counts executions; average_execution_time is the running mean over
-- finished runs; last_executed_at/last_execution_status follow the latest started_at.
CREATE FUNCTION dbal.record_execution(
        p_workflow uuid,
        p_status text,
        p_duration_ms double precision,
        p_execution_id text DEFAULT NULL,
        p_token bigint DEFAULT NULL,
        p_started_at timestamptz DEFAULT NULL,
        p_error text DEFAULT NULL,
        p_tenant text DEFAULT NULL, p_user text DEFAULT NULL, p_role text DEFAULT NULL)
    RETURNS TABLE (execution_id text, outcome text)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    v_tenant text := dbal.enter(p_tenant, p_user, p_role);
    v_now timestamptz := clock_timestamp();
    v_id text := coalesce(p_execution_id, gen_random_uuid()::text);
    v_started timestamptz;
    v_final boolean := p_status <> 'pending';
    v_key dbal.execution_keys;
    w dbal.workflows;
BEGIN
    IF dbal.ctx_role() IS NULL OR dbal.ctx_user() IS NULL THEN
        PERFORM dbal.raise_error(403, 'a user and a role are required to record an execution');
    END IF;
    IF p_status IS NULL OR p_status NOT IN ('success', 'failure', 'pending', 'timeout') THEN
        PERFORM dbal.raise_error(422, format('unknown execution status %L', p_status),
                                 jsonb_build_object('status', p_status));
    END IF;
    IF p_duration_ms < 0 OR p_duration_ms = 'NaN'::float8 OR p_duration_ms = 'Infinity'::float8
       OR (v_final AND p_duration_ms IS NULL) THEN
        PERFORM dbal.raise_error(422, 'duration_ms must be a finite number >= 0 (required for a final status)',
                                 jsonb_build_object('duration_ms', p_duration_ms));
    END IF;
    IF length(v_id) NOT BETWEEN 1 AND 255 THEN
        PERFORM dbal.raise_error(422, 'execution_id must be 1 to 255 characters');
    END IF;
    v_started := coalesce(p_started_at,
                          v_now - make_interval(secs => coalesce(p_duration_ms, 0) / 1000.0));
    IF v_started > v_now + interval '5 minutes' THEN
        PERFORM dbal.raise_error(422, 'started_at is in the future',
                                 jsonb_build_object('started_at', v_started));
    END IF;

    w := dbal.workflow_for_update(v_tenant, p_workflow);
    IF p_token IS NOT NULL THEN
        IF NOT coalesce(w.is_locked AND w.lock_token = p_token AND w.locked_by = dbal.ctx_user()
                        AND w.lock_expires_at > v_now, false) THEN
            PERFORM dbal.raise_error(4233, 'the lock token is not the current holder''s',
                                     jsonb_build_object('id', w.id, 'token', p_token));
        END IF;
    ELSIF w.is_locked AND w.lock_expires_at > v_now AND w.locked_by IS DISTINCT FROM dbal.ctx_user() THEN
        PERFORM dbal.raise_error(4231, 'workflow is locked by another user',
                                 jsonb_build_object('id', w.id, 'locked_by', w.locked_by,
                                                    'locked_at', w.locked_at));
    END IF;

    INSERT INTO dbal.execution_keys AS k (tenant_id, execution_id, workflow_id, started_at, status)
    VALUES (v_tenant, v_id, w.id, v_started, p_status)
    ON CONFLICT (tenant_id, execution_id) DO NOTHING;

    IF NOT FOUND THEN
        SELECT * INTO v_key FROM dbal.execution_keys k
         WHERE k.tenant_id = v_tenant AND k.execution_id = v_id FOR UPDATE;
        IF v_key.workflow_id <> w.id THEN
            PERFORM dbal.raise_error(409, 'execution id already recorded for another workflow',
                                     jsonb_build_object('execution_id', v_id));
        END IF;
        IF v_key.status = p_status OR (v_key.status <> 'pending' AND p_status = 'pending') THEN
            RETURN QUERY SELECT v_id, 'duplicate'::text;
            RETURN;
        END IF;
        IF v_key.status <> 'pending' THEN
            PERFORM dbal.raise_error(409, format('execution already recorded as %s', v_key.status),
                                     jsonb_build_object('execution_id', v_id, 'status', v_key.status));
        END IF;
        -- complete a pending execution
        UPDATE dbal.execution_keys k SET status = p_status
         WHERE k.tenant_id = v_tenant AND k.execution_id = v_id;
        UPDATE dbal.workflow_executions e
           SET status = p_status, duration_ms = p_duration_ms,
               finished_at = e.started_at + make_interval(secs => p_duration_ms / 1000.0),
               error = p_error
         WHERE e.tenant_id = v_tenant AND e.execution_id = v_id AND e.started_at = v_key.started_at;
        PERFORM dbal.rollup_add(v_tenant, w.id, v_key.started_at, p_status, p_duration_ms, true);
        UPDATE dbal.workflows
           SET finished_execution_count = w.finished_execution_count + 1,
               average_execution_time = coalesce(w.average_execution_time, 0)
                   + (p_duration_ms - coalesce(w.average_execution_time, 0)) / (w.finished_execution_count + 1),
               last_execution_status = CASE WHEN w.last_executed_at = v_key.started_at
                                            THEN p_status ELSE w.last_execution_status END
         WHERE tenant_id = v_tenant AND id = w.id;
        PERFORM dbal.audit('execution', w.id, jsonb_build_object(
            'execution_id', v_id, 'status', p_status, 'duration_ms', p_duration_ms, 'completed', true));
        RETURN QUERY SELECT v_id, 'completed'::text;
        RETURN;
    END IF;

    INSERT INTO dbal.workflow_executions (tenant_id, workflow_id, execution_id, status, duration_ms,
                                          started_at, finished_at, executed_by, error)
    VALUES (v_tenant, w.id, v_id, p_status, CASE WHEN v_final THEN p_duration_ms END, v_started,
            CASE WHEN v_final THEN v_started + make_interval(secs => p_duration_ms / 1000.0) END,
            dbal.ctx_user(), p_error);
    PERFORM dbal.rollup_add(v_tenant, w.id, v_started, p_status, p_duration_ms, false);
    UPDATE dbal.workflows
       SET execution_count = w.execution_count + 1,
           finished_execution_count = w.finished_execution_count + v_final::integer,
           average_execution_time = CASE WHEN v_final
               THEN coalesce(w.average_execution_time, 0)
                    + (p_duration_ms - coalesce(w.average_execution_time, 0)) / (w.finished_execution_count + 1)
               ELSE w.average_execution_time END,
           last_executed_at = CASE WHEN w.last_executed_at IS NULL OR v_started >= w.last_executed_at
                                   THEN v_started ELSE w.last_executed_at END,
           last_execution_status = CASE WHEN w.last_executed_at IS NULL OR v_started >= w.last_executed_at
                                        THEN p_status ELSE w.last_execution_status END
     WHERE tenant_id = v_tenant AND id = w.id;
    PERFORM dbal.audit('execution', w.id, jsonb_build_object(
        'execution_id', v_id, 'status', p_status, 'duration_ms', p_duration_ms));
    RETURN QUERY SELECT v_id, 'recorded'::text;
END
$$;

RESET ROLE;

-- ===== sql/42_execution_stats.sql =====
-- 42_execution_stats.sql — execution statistics of one workflow over a time window.

SET LOCAL ROLE @owner_role@;

-- execution_stats(workflow, from, to): statistics of the executions that started in [from, to)
-- (from NULL = the beginning, to NULL = now).
-- The window is cut into whole UTC days (read from workflow_stats_daily), the whole hours around
-- them (workflow_stats_hourly) and the partial hours at its edges (the execution rows), so the
-- cost depends on the window's shape, not on the number of executions. Counts, success rate,
-- average, min and max are exact. success_rate = success / (success + failure + timeout), NULL
-- when none finished. p50/p95/p99 are nearest-rank percentiles over finished runs read from the
-- merged log-scale histogram (factor 1.1 per bucket), reported as the bucket's geometric
-- midpoint clamped to [min, max]: within 4.9 % of the exact nearest-rank value for durations of
-- 1 ms and more (below 1 ms, within 0.5 ms).
-- WORKFLOW_NOT_FOUND (4041) for a workflow that is not the tenant's.
CREATE FUNCTION dbal.execution_stats(
        p_workflow uuid, p_from timestamptz DEFAULT NULL, p_to timestamptz DEFAULT NULL,
        p_tenant text DEFAULT NULL, p_user text DEFAULT NULL, p_role text DEFAULT NULL)
    RETURNS TABLE (
        total bigint, success bigint, failure bigint, pending bigint, timeout bigint,
        success_rate double precision, avg_ms double precision, min_ms double precision,
        max_ms double precision, p50_ms double precision, p95_ms double precision,
        p99_ms double precision, last_executed_at timestamptz, last_status text)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    -- plans are made per call: a generic plan would lock every partition of the executions
    SET plan_cache_mode = force_custom_plan
    AS $$
#variable_conflict use_column
DECLARE
    v_tenant text := dbal.enter(p_tenant, p_user, p_role);
    v_from timestamptz := coalesce(p_from, '-infinity');
    v_to timestamptz := coalesce(p_to, clock_timestamp());
    v_h1 timestamptz;  -- first whole hour
    v_h2 timestamptz;  -- end of the last whole hour
    v_d1 timestamptz;  -- first whole day
    v_d2 timestamptz;  -- end of the last whole day
    v_last_at timestamptz;
    v_last_status text;
BEGIN
    SELECT w.last_executed_at, w.last_execution_status INTO v_last_at, v_last_status
      FROM dbal.workflows w WHERE w.tenant_id = v_tenant AND w.id = p_workflow;
    IF NOT FOUND THEN
        PERFORM dbal.raise_error(4041, 'workflow not found', jsonb_build_object('id', p_workflow));
    END IF;
    IF v_to < v_from THEN
        v_to := v_from;
    END IF;
    -- [v_from, v_h1) rows | [v_h1, v_d1) hours | [v_d1, v_d2) days | [v_d2, v_h2) hours | [v_h2, v_to) rows
    v_h1 := date_trunc('hour', v_from, 'UTC');
    IF v_h1 < v_from THEN v_h1 := v_h1 + interval '1 hour'; END IF;
    v_h2 := greatest(date_trunc('hour', v_to, 'UTC'), v_h1);
    v_d1 := date_trunc('day', v_h1, 'UTC');
    IF v_d1 < v_h1 THEN v_d1 := v_d1 + interval '1 day'; END IF;
    v_d2 := date_trunc('day', v_h2, 'UTC');
    IF v_d2 < v_d1 THEN
        v_d1 := v_h2;  -- no whole day: hours cover [v_h1, v_h2)
        v_d2 := v_h2;
    END IF;
    v_h1 := least(v_h1, v_to);

    -- The last execution of the window is usually the workflow's last one (windows ending now).
    IF NOT (v_last_at >= v_from AND v_last_at < v_to) THEN
        SELECT e.started_at, e.status INTO v_last_at, v_last_status
          FROM dbal.workflow_executions e
         WHERE e.tenant_id = v_tenant AND e.workflow_id = p_workflow
           AND e.started_at >= v_from AND e.started_at < v_to
         ORDER BY e.started_at DESC
         LIMIT 1;
    END IF;

    RETURN QUERY
    WITH edge_rows AS MATERIALIZED (
        SELECT e.status, CASE WHEN e.status <> 'pending' THEN e.duration_ms END AS ms
          FROM dbal.workflow_executions e
         WHERE e.tenant_id = v_tenant AND e.workflow_id = p_workflow
           AND ((e.started_at >= v_from AND e.started_at < v_h1)
                OR (e.started_at >= v_h2 AND e.started_at < v_to))
    ), rollups AS MATERIALIZED (
        SELECT s.success, s.failure, s.pending, s.timeout, s.finished, s.sum_ms, s.min_ms,
               s.max_ms, s.hist
          FROM dbal.workflow_stats_daily s
         WHERE s.tenant_id = v_tenant AND s.workflow_id = p_workflow
           AND s.day >= v_d1 AND s.day < v_d2
        UNION ALL
        SELECT s.success, s.failure, s.pending, s.timeout, s.finished, s.sum_ms, s.min_ms,
               s.max_ms, s.hist
          FROM dbal.workflow_stats_hourly s
         WHERE s.tenant_id = v_tenant AND s.workflow_id = p_workflow
           AND ((s.hour >= v_h1 AND s.hour < v_d1) OR (s.hour >= v_d2 AND s.hour < v_h2))
    ), agg AS (
        SELECT sum(x.success)::bigint AS success, sum(x.failure)::bigint AS failure,
               sum(x.pending)::bigint AS pending, sum(x.timeout)::bigint AS timeout,
               sum(x.finished)::bigint AS finished, sum(x.sum_ms) AS sum_ms,
               min(x.min_ms) AS min_ms, max(x.max_ms) AS max_ms
          FROM (SELECT r.success, r.failure, r.pending, r.timeout, r.finished, r.sum_ms,
                       r.min_ms, r.max_ms
                  FROM rollups r
                UNION ALL
                SELECT count(*) FILTER (WHERE er.status = 'success'),
                       count(*) FILTER (WHERE er.status = 'failure'),
                       count(*) FILTER (WHERE er.status = 'pending'),
                       count(*) FILTER (WHERE er.status = 'timeout'),
                       count(er.ms), coalesce(sum(er.ms), 0), min(er.ms), max(er.ms)
                  FROM edge_rows er) x
    ), buckets AS (
        SELECT b, sum(n) AS n FROM (
            SELECT (u.ord - 1)::integer AS b, u.n::bigint AS n
              FROM rollups r, unnest(r.hist) WITH ORDINALITY AS u(n, ord)
             WHERE r.finished > 0 AND u.n > 0
            UNION ALL
            SELECT dbal.duration_bucket(er.ms), 1 FROM edge_rows er WHERE er.ms IS NOT NULL
        ) y GROUP BY b
    ), cum AS (
        SELECT b, sum(n) OVER (ORDER BY b) AS c FROM buckets
    ), pct AS (
        -- nearest rank: the smallest bucket whose cumulative count reaches ceil(p * finished)
        SELECT min(c.b) FILTER (WHERE c.c >= greatest(ceil(0.50 * a.finished), 1)) AS b50,
               min(c.b) FILTER (WHERE c.c >= greatest(ceil(0.95 * a.finished), 1)) AS b95,
               min(c.b) FILTER (WHERE c.c >= greatest(ceil(0.99 * a.finished), 1)) AS b99
          FROM cum c, agg a
    )
    SELECT a.success + a.failure + a.pending + a.timeout,
           a.success, a.failure, a.pending, a.timeout,
           CASE WHEN a.success + a.failure + a.timeout > 0
                THEN a.success::float8 / (a.success + a.failure + a.timeout) END,
           CASE WHEN a.finished > 0 THEN a.sum_ms / a.finished END,
           a.min_ms, a.max_ms,
           least(greatest(dbal.bucket_value(p.b50), a.min_ms), a.max_ms),
           least(greatest(dbal.bucket_value(p.b95), a.min_ms), a.max_ms),
           least(greatest(dbal.bucket_value(p.b99), a.min_ms), a.max_ms),
           CASE WHEN v_last_at >= v_from AND v_last_at < v_to THEN v_last_at END,
           CASE WHEN v_last_at >= v_from AND v_last_at < v_to THEN v_last_status END
      FROM agg a, pct p;
END
$$;

RESET ROLE;

-- ===== sql/50_policies.sql =====
-- 50_policies.sql — row-level security: the tenant boundary, enforced by the database.
--
-- Every table holding tenant data has RLS ENABLED and FORCED (FORCE makes the owner subject to
-- the policies too, so the SECURITY DEFINER functions see only the request's tenant).
--
-- Application role (@app_role@), for every table: read = same tenant.
--   workflows: insert = same tenant, role admin/god/supergod, created_by = the request's user;
--              update/delete = same tenant and (role admin/god/supergod or created_by = the
--              user); WITH CHECK on update, so no row can be moved to another tenant.
--   everything else: no write policy (and no write privilege): written by definer functions.
-- Owner role (@owner_role@), i.e. the SECURITY DEFINER functions and definer triggers:
--   same tenant for everything they read or change; the functions do their own role checks.
--   Append-only trails (audit_log, workflow_versions) accept inserts for any tenant, because the
--   definer triggers must record direct SQL changes made by operators without a request context.
-- A missing context makes dbal.ctx_tenant() NULL: no row matches, so nothing is visible and
-- nothing can be written.

SET LOCAL ROLE @owner_role@;

ALTER TABLE dbal.workflows ENABLE ROW LEVEL SECURITY;
ALTER TABLE dbal.workflows FORCE ROW LEVEL SECURITY;
ALTER TABLE dbal.workflow_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE dbal.workflow_versions FORCE ROW LEVEL SECURITY;
ALTER TABLE dbal.audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE dbal.audit_log FORCE ROW LEVEL SECURITY;
ALTER TABLE dbal.workflow_executions ENABLE ROW LEVEL SECURITY;
ALTER TABLE dbal.workflow_executions FORCE ROW LEVEL SECURITY;
ALTER TABLE dbal.execution_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE dbal.execution_keys FORCE ROW LEVEL SECURITY;
ALTER TABLE dbal.workflow_stats_hourly ENABLE ROW LEVEL SECURITY;
ALTER TABLE dbal.workflow_stats_hourly FORCE ROW LEVEL SECURITY;
ALTER TABLE dbal.workflow_stats_daily ENABLE ROW LEVEL SECURITY;
ALTER TABLE dbal.workflow_stats_daily FORCE ROW LEVEL SECURITY;

-- workflows ------------------------------------------------------------------------------------
CREATE POLICY workflows_app_select ON dbal.workflows FOR SELECT TO @app_role@
    USING (tenant_id = dbal.ctx_tenant());
CREATE POLICY workflows_app_insert ON dbal.workflows FOR INSERT TO @app_role@
    WITH CHECK (tenant_id = dbal.ctx_tenant() AND dbal.ctx_is_admin()
                AND created_by = dbal.ctx_user());
CREATE POLICY workflows_app_update ON dbal.workflows FOR UPDATE TO @app_role@
    USING (tenant_id = dbal.ctx_tenant() AND (dbal.ctx_is_admin() OR created_by = dbal.ctx_user()))
    WITH CHECK (tenant_id = dbal.ctx_tenant() AND (dbal.ctx_is_admin() OR created_by = dbal.ctx_user()));
CREATE POLICY workflows_app_delete ON dbal.workflows FOR DELETE TO @app_role@
    USING (tenant_id = dbal.ctx_tenant() AND (dbal.ctx_is_admin() OR created_by = dbal.ctx_user()));
CREATE POLICY workflows_owner_all ON dbal.workflows FOR ALL TO @owner_role@
    USING (tenant_id = dbal.ctx_tenant())
    WITH CHECK (tenant_id = dbal.ctx_tenant());

-- workflow_versions and audit_log: append-only trails ---------------------------------------------
CREATE POLICY workflow_versions_app_select ON dbal.workflow_versions FOR SELECT TO @app_role@
    USING (tenant_id = dbal.ctx_tenant());
CREATE POLICY workflow_versions_owner_select ON dbal.workflow_versions FOR SELECT TO @owner_role@
    USING (tenant_id = dbal.ctx_tenant());
CREATE POLICY workflow_versions_owner_insert ON dbal.workflow_versions FOR INSERT TO @owner_role@
    WITH CHECK (true);

CREATE POLICY audit_log_app_select ON dbal.audit_log FOR SELECT TO @app_role@
    USING (tenant_id = dbal.ctx_tenant());
CREATE POLICY audit_log_owner_insert ON dbal.audit_log FOR INSERT TO @owner_role@
    WITH CHECK (true);

-- executions, their keys and roll-ups: written only by the definer functions ---------------------
CREATE POLICY workflow_executions_app_select ON dbal.workflow_executions FOR SELECT TO @app_role@
    USING (tenant_id = dbal.ctx_tenant());
CREATE POLICY workflow_executions_owner_all ON dbal.workflow_executions FOR ALL TO @owner_role@
    USING (tenant_id = dbal.ctx_tenant()) WITH CHECK (tenant_id = dbal.ctx_tenant());

CREATE POLICY execution_keys_app_select ON dbal.execution_keys FOR SELECT TO @app_role@
    USING (tenant_id = dbal.ctx_tenant());
CREATE POLICY execution_keys_owner_all ON dbal.execution_keys FOR ALL TO @owner_role@
    USING (tenant_id = dbal.ctx_tenant()) WITH CHECK (tenant_id = dbal.ctx_tenant());

CREATE POLICY workflow_stats_hourly_app_select ON dbal.workflow_stats_hourly FOR SELECT TO @app_role@
    USING (tenant_id = dbal.ctx_tenant());
CREATE POLICY workflow_stats_hourly_owner_all ON dbal.workflow_stats_hourly FOR ALL TO @owner_role@
    USING (tenant_id = dbal.ctx_tenant()) WITH CHECK (tenant_id = dbal.ctx_tenant());
CREATE POLICY workflow_stats_daily_app_select ON dbal.workflow_stats_daily FOR SELECT TO @app_role@
    USING (tenant_id = dbal.ctx_tenant());
CREATE POLICY workflow_stats_daily_owner_all ON dbal.workflow_stats_daily FOR ALL TO @owner_role@
    USING (tenant_id = dbal.ctx_tenant()) WITH CHECK (tenant_id = dbal.ctx_tenant());

RESET ROLE;

-- ===== sql/60_partitions.sql =====
-- 60_partitions.sql — time partitions for workflow_executions and audit_log.
--
-- With pg_partman (4.7, Debian's): daily partitions, 4 premade ahead. Executions reach back
-- 32 days, because executions recorded with past timestamps (imports, tests, benchmarks) would
-- otherwise land in the default partition, and a default partition holding rows of a range
-- blocks creating the partition for that range later. Rows older than the first partition stay
-- in the default partition. Retention is off by default; configure it in partman.part_config
-- (retention, retention_keep_table) and run `pydbal partitions maintain` (run_maintenance_proc).
-- Without pg_partman (the embedded server): one DEFAULT partition holds every row.
--
-- Partitions are created by the migrating superuser and by maintenance, without privileges for
-- the application role (pg_partman's inherit_privileges stays false): the application role can
-- reach executions and audit rows only through the parent tables, whose policies apply.

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_partman') THEN
        PERFORM partman.create_parent(
            p_parent_table => 'dbal.workflow_executions',
            p_control => 'started_at',
            p_type => 'native',
            p_interval => '1 day',
            p_premake => 4,
            p_start_partition => to_char(date_trunc('day', now()) - interval '32 days',
                                         'YYYY-MM-DD HH24:MI:SS'),
            p_jobmon => false);
        PERFORM partman.create_parent(
            p_parent_table => 'dbal.audit_log',
            p_control => 'at',
            p_type => 'native',
            p_interval => '1 day',
            p_premake => 4,
            p_start_partition => to_char(date_trunc('day', now()) - interval '1 day',
                                         'YYYY-MM-DD HH24:MI:SS'),
            p_jobmon => false);
        UPDATE partman.part_config
           SET infinite_time_partitions = true, inherit_privileges = false
         WHERE parent_table IN ('dbal.workflow_executions', 'dbal.audit_log');
    ELSE
        CREATE TABLE dbal.workflow_executions_default
            PARTITION OF dbal.workflow_executions DEFAULT;
        CREATE TABLE dbal.audit_log_default
            PARTITION OF dbal.audit_log DEFAULT;
    END IF;
END
$$;

-- ===== sql/70_api.sql =====
-- 70_api.sql — the entry points of pydbal's Python API: one statement per request.
--
-- Each function takes the request's tenant, user and role as its first arguments, switches to
-- the application role for the rest of the transaction (so that a superuser or owner login —
-- the embedded server, an operator's DSN — is still subject to row-level security), sets the
-- transaction-local context and runs the statement. One round trip, and on Citus each is
-- distributable by its p_tenant argument. They are SECURITY INVOKER: the policies of
-- sql/50_policies.sql decide what they see and change. Executable by @app_role@ only.

SET LOCAL ROLE @owner_role@;

-- enter_app(tenant, user, role): what dbal.enter does (same checks, same errors), after switching
-- the current role to @app_role@ until the end of the transaction; fails for a login that is not
-- a member of it. Tenant, user and role are all required. Written out in one function, with one
-- statement setting the context, because every read pays for it.
CREATE FUNCTION dbal.enter_app(p_tenant text, p_user text, p_role text) RETURNS text
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_current text;
BEGIN
    IF current_user::text <> '@app_role@' THEN
        PERFORM set_config('role', '@app_role@', true);
    END IF;
    IF p_tenant IS NULL OR p_tenant = '' OR p_user IS NULL OR p_role IS NULL THEN
        PERFORM dbal.raise_error(403, 'tenant, user and role are required');
    END IF;
    IF p_role NOT IN ('user', 'admin', 'god', 'supergod') THEN
        PERFORM dbal.raise_error(403, format('unknown role %L', p_role));
    END IF;
    v_current := NULLIF(current_setting('dbal.tenant_id', true), '');
    IF v_current <> p_tenant THEN
        PERFORM dbal.raise_error(4034, 'tenant argument does not match the request context',
                                 jsonb_build_object('context', v_current, 'argument', p_tenant));
    END IF;
    PERFORM set_config('dbal.tenant_id', p_tenant, true), set_config('dbal.user_id', p_user, true),
            set_config('dbal.user_role', p_role, true);
    RETURN p_tenant;
END
$$;

-- filter_sql(filter): a WHERE condition over dbal.workflows (alias w) for a filter object with
-- the keys enabled, is_locked (a live lease), category, created_by, name, ids, tags (any of),
-- validation_status (as read: an expired 'valid' is 'stale'), last_execution_status and search
-- (web-search syntax). Text keys take one value or a list of them. Values are quoted with
-- format('%L'); an unknown key is VALIDATION_ERROR (422).
CREATE FUNCTION dbal.filter_sql(p_filter jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE
    AS $$
DECLARE
    v_parts text[] := ARRAY['true'];
    v_key text;
    v_value jsonb;
    v_list text[];  -- the value as a list of texts (a single value: a list of one)
BEGIN
    IF p_filter IS NULL OR p_filter = 'null'::jsonb THEN
        RETURN 'true';
    END IF;
    IF jsonb_typeof(p_filter) <> 'object' THEN
        PERFORM dbal.raise_error(422, 'filter must be an object');
    END IF;
    FOR v_key, v_value IN SELECT key, value FROM jsonb_each(p_filter) LOOP
        CONTINUE WHEN v_value = 'null'::jsonb;
        v_list := CASE WHEN jsonb_typeof(v_value) = 'array'
                       THEN ARRAY(SELECT jsonb_array_elements_text(v_value))
                       ELSE ARRAY[v_value #>> '{}'] END;
        CASE v_key
        WHEN 'enabled' THEN
            v_parts := v_parts || format('w.enabled = %L::boolean', v_value #>> '{}');
        WHEN 'is_locked' THEN
            v_parts := v_parts || format(
                '(w.is_locked AND w.lock_expires_at > clock_timestamp()) = %L::boolean',
                v_value #>> '{}');
        WHEN 'category', 'created_by', 'name', 'last_execution_status' THEN
            v_parts := v_parts || format('w.%I = ANY (%L::text[])', v_key, v_list);
        WHEN 'validation_status' THEN
            v_parts := v_parts || format(
                'dbal.effective_validation_status(w.validation_status, w.valid_until, '
                'w.validator_version) = ANY (%L::text[])', v_list);
        WHEN 'ids' THEN
            v_parts := v_parts || format('w.id = ANY (%L::uuid[])',
                ARRAY(SELECT jsonb_array_elements_text(v_value)));
        WHEN 'tags' THEN
            v_parts := v_parts || format('w.tags && %L::text[]', v_list);
        WHEN 'search' THEN
            v_parts := v_parts || format(
                'w.search_document @@ websearch_to_tsquery(''english''::regconfig, %L)',
                v_value #>> '{}');
        ELSE
            PERFORM dbal.raise_error(422, format('unknown filter field %L', v_key),
                                     jsonb_build_object('field', v_key));
        END CASE;
    END LOOP;
    RETURN array_to_string(v_parts, ' AND ');
END
$$;

-- api_get(tenant, user, role, id): the workflow, or no row (missing or another tenant's).
CREATE FUNCTION dbal.api_get(p_tenant text, p_user text, p_role text, p_id uuid)
    RETURNS SETOF dbal.workflows
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM dbal.enter_app(p_tenant, p_user, p_role);
    RETURN QUERY SELECT * FROM dbal.workflows w WHERE w.tenant_id = p_tenant AND w.id = p_id;
END
$$;

-- api_list(...): one page of the tenant's workflows matching the filter, sorted by p_sort
-- (created_at, updated_at, last_executed_at, execution_count, name) then id, with the total
-- number of matches on every row. A page past the end returns one row with wf NULL and the total.
CREATE FUNCTION dbal.api_list(
        p_tenant text, p_user text, p_role text, p_filter jsonb, p_sort text, p_desc boolean,
        p_offset integer, p_limit integer)
    RETURNS TABLE (total bigint, wf dbal.workflows)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_where text;
    v_dir text := CASE WHEN p_desc THEN 'DESC' ELSE 'ASC' END;
BEGIN
    PERFORM dbal.enter_app(p_tenant, p_user, p_role);
    IF p_sort NOT IN ('created_at', 'updated_at', 'last_executed_at', 'execution_count', 'name') THEN
        PERFORM dbal.raise_error(422, format('unknown sort field %L', p_sort),
                                 jsonb_build_object('field', p_sort));
    END IF;
    IF p_limit NOT BETWEEN 1 AND 1000 OR p_offset < 0 THEN
        PERFORM dbal.raise_error(422, 'limit must be 1..1000 and offset >= 0');
    END IF;
    v_where := dbal.filter_sql(p_filter);
    -- Sort and count over (id, sort key) only, then read the page's rows by primary key: a
    -- whole-row value would detoast every matching definition, not just the page's.
    RETURN QUERY EXECUTE format(
        'SELECT p.total, w FROM (
             SELECT w.id, count(*) OVER ()::bigint AS total,
                    row_number() OVER (ORDER BY w.%I %s NULLS LAST, w.id %s) AS rn
               FROM dbal.workflows w
              WHERE w.tenant_id = $1 AND %s
              ORDER BY w.%I %s NULLS LAST, w.id %s OFFSET $2 LIMIT $3) p
           JOIN dbal.workflows w ON w.tenant_id = $1 AND w.id = p.id
          ORDER BY p.rn',
        p_sort, v_dir, v_dir, v_where, p_sort, v_dir, v_dir)
        USING p_tenant, p_offset, p_limit;
    IF NOT FOUND AND p_offset > 0 THEN
        RETURN QUERY EXECUTE format(
            'SELECT count(*)::bigint, NULL::dbal.workflows FROM dbal.workflows w
              WHERE w.tenant_id = $1 AND %s', v_where)
            USING p_tenant;
    END IF;
END
$$;

-- api_search(tenant, user, role, text, limit): best matches first. Full-text (web-search
-- syntax: "a -b", quoted phrases) over name, description and tags, ranking at most 1000
-- candidates; when that finds fewer than p_limit, names similar to the text (pg_trgm,
-- similarity >= 0.3) fill up the list, so a typo in a name still finds it. The fallback keeps
-- the query's exclusions ("-word" never matches) and is skipped for quoted phrases, which ask
-- for exact words.
CREATE FUNCTION dbal.api_search(p_tenant text, p_user text, p_role text, p_query text, p_limit integer)
    RETURNS TABLE (rank real, wf dbal.workflows)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_query tsquery;
    v_positive text;
    v_excluded tsquery;
    v_found integer;
BEGIN
    PERFORM dbal.enter_app(p_tenant, p_user, p_role);
    IF p_limit NOT BETWEEN 1 AND 1000 THEN
        PERFORM dbal.raise_error(422, 'limit must be 1..1000');
    END IF;
    v_query := websearch_to_tsquery('english'::regconfig, coalesce(p_query, ''));
    RETURN QUERY
        SELECT r.rank, w
          FROM (SELECT c.id, (ts_rank(c.search_document, v_query) + 1)::real AS rank, c.name
                  FROM (SELECT x.id, x.name, x.search_document FROM dbal.workflows x
                         WHERE x.tenant_id = p_tenant AND x.search_document @@ v_query
                         LIMIT 1000) c
                 ORDER BY 2 DESC, c.name, c.id
                 LIMIT p_limit) r
          JOIN dbal.workflows w ON w.tenant_id = p_tenant AND w.id = r.id
         ORDER BY r.rank DESC, r.name, r.id;
    GET DIAGNOSTICS v_found = ROW_COUNT;
    IF v_found >= p_limit OR position('"' IN coalesce(p_query, '')) > 0 THEN
        RETURN;
    END IF;
    v_positive := btrim(regexp_replace(p_query, '(^|\s)-\S+', ' ', 'g'));
    v_excluded := websearch_to_tsquery('english'::regconfig, array_to_string(ARRAY(
        SELECT substr(m[1], 2) FROM regexp_matches(p_query, '(?:^|\s)(-\S+)', 'g') AS m), ' or '));
    IF length(v_positive) >= 3 THEN
        RETURN QUERY
            SELECT dbal_ext.similarity(w.name, v_positive), w
              FROM dbal.workflows w
             WHERE w.tenant_id = p_tenant
               AND dbal_ext.similarity(w.name, v_positive) >= 0.3
               AND NOT (w.search_document @@ v_query)
               AND (numnode(v_excluded) = 0 OR NOT (w.search_document @@ v_excluded))
             ORDER BY 1 DESC, w.name, w.id
             LIMIT p_limit - v_found;
    END IF;
END
$$;

-- api_insert(...): inserts the given workflows (parallel arrays, one element per workflow) in one
-- statement and returns them. Only admin, god and supergod may create (FORBIDDEN otherwise).
-- A name already taken raises a unique violation on workflows_tenant_name_key (CONFLICT), unless
-- p_rename: then each workflow takes the next free "<name> (2)", "(3)", … A validation status
-- valid/invalid stamps validated_at = now and valid_until = now + 1 hour.
CREATE FUNCTION dbal.api_insert(
        p_tenant text, p_user text, p_role text,
        p_ids uuid[], p_names text[], p_descriptions text[], p_nodes jsonb[], p_edges jsonb[],
        p_variables jsonb[], p_config jsonb[], p_tags jsonb[], p_categories text[],
        p_enabled boolean[], p_validation_status text[], p_validation_errors jsonb[],
        p_validator_version integer, p_rename boolean DEFAULT false)
    RETURNS SETOF dbal.workflows
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_names text[] := p_names;
BEGIN
    PERFORM dbal.enter_app(p_tenant, p_user, p_role);
    IF NOT dbal.ctx_is_admin() THEN
        PERFORM dbal.raise_error(403, format('role %s may not create workflows', p_role));
    END IF;
    IF p_rename THEN
        FOR i IN 1 .. coalesce(array_length(v_names, 1), 0) LOOP
            v_names[i] := dbal.free_name(p_tenant, v_names[i], v_names[1:i - 1]);
        END LOOP;
    END IF;
    RETURN QUERY
    INSERT INTO dbal.workflows AS w (tenant_id, id, name, description, nodes, edges, variables, config,
                                tags, category, enabled, created_by, validation_status,
                                validation_errors, validated_at, valid_until, validator_version)
    SELECT p_tenant, r.id, r.name, r.description, r.nodes, r.edges, r.variables, r.config,
           ARRAY(SELECT jsonb_array_elements_text(coalesce(r.tags, '[]'))),
           coalesce(r.category, 'user'), coalesce(r.enabled, true), p_user,
           coalesce(r.vstatus, 'pending'), r.verrors,
           CASE WHEN r.vstatus IN ('valid', 'invalid') THEN now() END,
           CASE WHEN r.vstatus IN ('valid', 'invalid') THEN now() + interval '1 hour' END,
           CASE WHEN r.vstatus IN ('valid', 'invalid') THEN p_validator_version END
      FROM unnest(p_ids, v_names, p_descriptions, p_nodes, p_edges, p_variables, p_config,
                  p_tags, p_categories, p_enabled, p_validation_status, p_validation_errors)
           AS r(id, name, description, nodes, edges, variables, config, tags, category, enabled,
                vstatus, verrors)
    RETURNING *;
END
$$;

-- free_name(tenant, name, taken): p_name if no workflow of the tenant (and no name in p_taken)
-- has it, else the first free "<name> (n)", n = 2, 3, … (trimmed to 255 characters).
CREATE FUNCTION dbal.free_name(p_tenant text, p_name text, p_taken text[] DEFAULT '{}')
    RETURNS text
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_candidate text := p_name;
    n integer := 1;
BEGIN
    WHILE v_candidate = ANY (coalesce(p_taken, '{}'))
          OR EXISTS (SELECT 1 FROM dbal.workflows w WHERE w.tenant_id = p_tenant AND w.name = v_candidate) LOOP
        n := n + 1;
        v_candidate := left(p_name, 255 - length(format(' (%s)', n))) || format(' (%s)', n);
    END LOOP;
    RETURN v_candidate;
END
$$;

-- writable(tenant, id): the workflow row for a change by the request's user, locked FOR UPDATE.
-- WORKFLOW_NOT_FOUND (4041) when not visible; FORBIDDEN (403) when the role may not change it
-- (neither admin/god/supergod nor its creator); WORKFLOW_LOCKED (4231), with the holder and since
-- when, while another user holds an unexpired lock on it.
CREATE FUNCTION dbal.writable(p_tenant text, p_id uuid) RETURNS dbal.workflows
    LANGUAGE plpgsql
    AS $$
DECLARE
    w dbal.workflows;
BEGIN
    SELECT * INTO w FROM dbal.workflows x WHERE x.tenant_id = p_tenant AND x.id = p_id;
    IF NOT FOUND THEN
        PERFORM dbal.raise_error(4041, 'workflow not found', jsonb_build_object('id', p_id));
    END IF;
    IF NOT (dbal.ctx_is_admin() OR w.created_by = dbal.ctx_user()) THEN
        PERFORM dbal.raise_error(403, 'only its creator or an admin may change this workflow',
                                 jsonb_build_object('id', p_id));
    END IF;
    SELECT * INTO w FROM dbal.workflows x WHERE x.tenant_id = p_tenant AND x.id = p_id FOR UPDATE;
    IF w.is_locked AND w.lock_expires_at > clock_timestamp() AND w.locked_by <> dbal.ctx_user() THEN
        PERFORM dbal.raise_error(4231, 'workflow is locked by another user',
                                 jsonb_build_object('id', p_id, 'locked_by', w.locked_by,
                                                    'locked_at', w.locked_at,
                                                    'lock_expires_at', w.lock_expires_at));
    END IF;
    RETURN w;
END
$$;

-- patch_set_sql(patch): the SET list applying a patch object (keys name, description, nodes,
-- edges, enabled, variables, config, tags, category, updated_by) to alias-less dbal.workflows,
-- always bumping version. Unknown keys are VALIDATION_ERROR (422).
CREATE FUNCTION dbal.patch_set_sql(p_patch jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE
    AS $$
DECLARE
    v_sets text[] := ARRAY['version = version + 1'];
    v_key text;
    v_value jsonb;
BEGIN
    FOR v_key, v_value IN SELECT key, value FROM jsonb_each(coalesce(p_patch, '{}')) LOOP
        CASE v_key
        WHEN 'name', 'description', 'category', 'updated_by' THEN
            v_sets := v_sets || format('%I = %L', v_key, v_value #>> '{}');
        WHEN 'nodes', 'edges', 'variables', 'config' THEN
            v_sets := v_sets || format('%I = %L::jsonb', v_key, v_value::text);
        WHEN 'enabled' THEN
            v_sets := v_sets || format('enabled = %L::boolean', v_value #>> '{}');
        WHEN 'tags' THEN
            v_sets := v_sets || format('tags = %L::text[]',
                ARRAY(SELECT jsonb_array_elements_text(v_value)));
        WHEN 'validation_status', 'validation_errors', 'validator_version' THEN
            NULL;  -- handled by the caller's validation arguments
        ELSE
            PERFORM dbal.raise_error(422, format('unknown field %L', v_key),
                                     jsonb_build_object('field', v_key));
        END CASE;
    END LOOP;
    RETURN array_to_string(v_sets, ', ');
END
$$;

-- validation_set_sql(status, errors, validator_version): the SET list storing a validation
-- result (empty when p_status is NULL: the trigger then marks a changed definition stale).
CREATE FUNCTION dbal.validation_set_sql(p_status text, p_errors jsonb, p_validator_version integer)
    RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$
        SELECT CASE WHEN p_status IS NULL THEN ''
               ELSE format(', validation_status = %L, validation_errors = %L::jsonb, '
                           'validated_at = now(), valid_until = now() + interval ''1 hour'', '
                           'validator_version = %L::integer',
                           p_status, p_errors::text, p_validator_version) END
    $$;

-- api_update(...): applies a patch to one workflow and returns it. Checks (dbal.writable):
-- not found 4041, forbidden 403, locked 4231; a p_expected_version other than the current
-- version is CONFLICT (409) and nothing is written. Every update bumps version.
CREATE FUNCTION dbal.api_update(
        p_tenant text, p_user text, p_role text, p_id uuid, p_patch jsonb,
        p_expected_version integer, p_validation_status text, p_validation_errors jsonb,
        p_validator_version integer)
    RETURNS SETOF dbal.workflows
    LANGUAGE plpgsql
    AS $$
DECLARE
    w dbal.workflows;
BEGIN
    PERFORM dbal.enter_app(p_tenant, p_user, p_role);
    w := dbal.writable(p_tenant, p_id);
    IF p_expected_version IS NOT NULL AND w.version <> p_expected_version THEN
        PERFORM dbal.raise_error(409, format('version is %s, not the expected %s', w.version, p_expected_version),
                                 jsonb_build_object('id', p_id, 'version', w.version,
                                                    'expected_version', p_expected_version));
    END IF;
    RETURN QUERY EXECUTE format(
        'UPDATE dbal.workflows SET %s%s WHERE tenant_id = $1 AND id = $2 RETURNING *',
        dbal.patch_set_sql(p_patch || jsonb_build_object('updated_by', p_user)),
        dbal.validation_set_sql(p_validation_status, p_validation_errors, p_validator_version))
        USING p_tenant, p_id;
END
$$;

-- api_delete(tenant, user, role, id): true when deleted, false when there was no such workflow.
-- FORBIDDEN (403) / WORKFLOW_LOCKED (4231) as for updates.
CREATE FUNCTION dbal.api_delete(p_tenant text, p_user text, p_role text, p_id uuid)
    RETURNS boolean
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM dbal.enter_app(p_tenant, p_user, p_role);
    PERFORM 1 FROM dbal.workflows w WHERE w.tenant_id = p_tenant AND w.id = p_id;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM dbal.writable(p_tenant, p_id);
    DELETE FROM dbal.workflows w WHERE w.tenant_id = p_tenant AND w.id = p_id;
    RETURN true;
END
$$;

-- changeable_sql(): the condition (over alias w) a bulk write adds so that it skips the rows the
-- caller may not change: another creator's (unless admin, god or supergod) and rows locked by
-- another user. dbal.writable() applies the same rules to one row, with an error for each.
CREATE FUNCTION dbal.changeable_sql() RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$
        SELECT '(dbal.ctx_is_admin() OR w.created_by = dbal.ctx_user())'
               ' AND NOT (w.is_locked AND w.lock_expires_at > clock_timestamp()'
               ' AND w.locked_by <> dbal.ctx_user())'
    $$;

-- api_update_many / api_delete_many: apply to every workflow matching the filter that the
-- caller may change; rows of another creator (for role user) and rows locked by another user
-- are left untouched and not counted. Returns the number changed.
CREATE FUNCTION dbal.api_update_many(
        p_tenant text, p_user text, p_role text, p_filter jsonb, p_patch jsonb,
        p_validation_status text, p_validation_errors jsonb, p_validator_version integer)
    RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_count integer;
BEGIN
    PERFORM dbal.enter_app(p_tenant, p_user, p_role);
    EXECUTE format(
        'UPDATE dbal.workflows w SET %s%s WHERE w.tenant_id = $1 AND %s AND %s',
        dbal.patch_set_sql(p_patch || jsonb_build_object('updated_by', p_user)),
        dbal.validation_set_sql(p_validation_status, p_validation_errors, p_validator_version),
        dbal.filter_sql(p_filter), dbal.changeable_sql())
        USING p_tenant;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

-- api_delete_many(...): deletes the matching workflows the caller may change (see above).
CREATE FUNCTION dbal.api_delete_many(p_tenant text, p_user text, p_role text, p_filter jsonb)
    RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_count integer;
BEGIN
    PERFORM dbal.enter_app(p_tenant, p_user, p_role);
    EXECUTE format(
        'DELETE FROM dbal.workflows w WHERE w.tenant_id = $1 AND %s AND %s',
        dbal.filter_sql(p_filter), dbal.changeable_sql())
        USING p_tenant;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

-- api_history(tenant, user, role, id): previous versions, newest first. 4041 when not visible.
CREATE FUNCTION dbal.api_history(p_tenant text, p_user text, p_role text, p_id uuid)
    RETURNS SETOF dbal.workflow_versions
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM dbal.enter_app(p_tenant, p_user, p_role);
    PERFORM 1 FROM dbal.workflows w WHERE w.tenant_id = p_tenant AND w.id = p_id;
    IF NOT FOUND THEN
        PERFORM dbal.raise_error(4041, 'workflow not found', jsonb_build_object('id', p_id));
    END IF;
    RETURN QUERY SELECT * FROM dbal.workflow_versions v
                  WHERE v.tenant_id = p_tenant AND v.workflow_id = p_id ORDER BY v.version DESC;
END
$$;

-- api_executions(...): recorded executions of one workflow, newest first. 4041 when not visible.
CREATE FUNCTION dbal.api_executions(
        p_tenant text, p_user text, p_role text, p_id uuid, p_from timestamptz,
        p_to timestamptz, p_status text, p_limit integer)
    RETURNS SETOF dbal.workflow_executions
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM dbal.enter_app(p_tenant, p_user, p_role);
    PERFORM 1 FROM dbal.workflows w WHERE w.tenant_id = p_tenant AND w.id = p_id;
    IF NOT FOUND THEN
        PERFORM dbal.raise_error(4041, 'workflow not found', jsonb_build_object('id', p_id));
    END IF;
    RETURN QUERY SELECT * FROM dbal.workflow_executions e
                  WHERE e.tenant_id = p_tenant AND e.workflow_id = p_id
                    AND e.started_at >= coalesce(p_from, '-infinity')
                    AND e.started_at < coalesce(p_to, 'infinity')
                    AND (p_status IS NULL OR e.status = p_status)
                  ORDER BY e.started_at DESC
                  LIMIT p_limit;
END
$$;

-- api_audit(tenant, user, role, id, limit): the tenant's audit rows (of one workflow when p_id
-- is given), newest first.
CREATE FUNCTION dbal.api_audit(p_tenant text, p_user text, p_role text, p_id uuid, p_limit integer)
    RETURNS SETOF dbal.audit_log
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM dbal.enter_app(p_tenant, p_user, p_role);
    RETURN QUERY SELECT * FROM dbal.audit_log a
                  WHERE a.tenant_id = p_tenant AND (p_id IS NULL OR a.workflow_id = p_id)
                  ORDER BY a.at DESC, a.id DESC
                  LIMIT p_limit;
END
$$;

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
           valid_until = now() + interval '1 hour', validator_version = p_validator_version
     WHERE w.tenant_id = p_tenant AND w.id = p_id AND w.version = p_version;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count = 1;
END
$$;
RESET ROLE;

-- ===== sql/90_grants.sql =====
-- 90_grants.sql — what each role may do. Nothing is granted to PUBLIC.
--
-- @app_role@ (services, through pydbal): reads its tenant's rows (policies), writes workflows'
-- definition and validation columns only; lock and execution columns, version, timestamps and
-- the trails are written by triggers and SECURITY DEFINER functions. Executes the context
-- helpers and the entry-point functions; internal helpers (workflow_for_update, audit,
-- rollup_add, clear_expired_locks, sweep_expired_locks) are executable by no one but the owner.

REVOKE ALL ON ALL TABLES IN SCHEMA dbal FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA dbal FROM PUBLIC;

GRANT SELECT, DELETE ON dbal.workflows TO @app_role@;
GRANT INSERT (tenant_id, id, name, description, nodes, edges, enabled, variables, config, tags,
              category, created_by, updated_by, validation_status, validation_errors,
              validated_at, valid_until, validator_version)
    ON dbal.workflows TO @app_role@;
GRANT UPDATE (name, description, nodes, edges, enabled, version, variables, config, tags,
              category, updated_by, validation_status, validation_errors, validated_at,
              valid_until, validator_version)
    ON dbal.workflows TO @app_role@;
GRANT SELECT ON dbal.workflow_versions, dbal.audit_log, dbal.workflow_executions,
                dbal.execution_keys, dbal.workflow_stats_hourly, dbal.workflow_stats_daily
    TO @app_role@;

GRANT EXECUTE ON FUNCTION
    dbal.ctx_tenant(), dbal.ctx_user(), dbal.ctx_role(), dbal.ctx_is_admin(),
    dbal.enter(text, text, text),
    dbal.raise_error(integer, text, jsonb),
    dbal.current_validator_version(),
    dbal.effective_validation_status(text, timestamptz, integer),
    dbal.tags_text(text[]),
    dbal.content_changed(dbal.workflows, dbal.workflows),
    dbal.system_columns(),
    dbal.duration_bucket(double precision),
    dbal.bucket_value(integer),
    dbal.acquire_lock(uuid, integer, text, text, text),
    dbal.acquire_lock_lease(uuid, integer, text, text, text),
    dbal.renew_lock(uuid, bigint, integer, text, text, text),
    dbal.renew_lock_lease(uuid, bigint, integer, text, text, text),
    dbal.release_lock(uuid, bigint, text, text, text),
    dbal.release_expired_locks(text, text, text),
    dbal.record_execution(uuid, text, double precision, text, bigint, timestamptz, text, text, text, text),
    dbal.execution_stats(uuid, timestamptz, timestamptz, text, text, text)
    TO @app_role@;

-- The API's entry points (sql/70_api.sql) and what they call as the invoker.
GRANT EXECUTE ON FUNCTION
    dbal.enter_app(text, text, text),
    dbal.filter_sql(jsonb),
    dbal.patch_set_sql(jsonb),
    dbal.validation_set_sql(text, jsonb, integer),
    dbal.free_name(text, text, text[]),
    dbal.writable(text, uuid),
    dbal.changeable_sql(),
    dbal.api_get(text, text, text, uuid),
    dbal.api_list(text, text, text, jsonb, text, boolean, integer, integer),
    dbal.api_search(text, text, text, text, integer),
    dbal.api_insert(text, text, text, uuid[], text[], text[], jsonb[], jsonb[], jsonb[], jsonb[],
                    jsonb[], text[], boolean[], text[], jsonb[], integer, boolean),
    dbal.api_update(text, text, text, uuid, jsonb, integer, text, jsonb, integer),
    dbal.api_delete(text, text, text, uuid),
    dbal.api_update_many(text, text, text, jsonb, jsonb, text, jsonb, integer),
    dbal.api_delete_many(text, text, text, jsonb),
    dbal.api_history(text, text, text, uuid),
    dbal.api_executions(text, text, text, uuid, timestamptz, timestamptz, text, integer),
    dbal.api_audit(text, text, text, uuid, integer),
    dbal.store_validation(text, text, text, uuid, integer, text, jsonb, integer)
    TO @app_role@;
