-- 30_workflow_triggers.sql — what every write to dbal.workflows does, whoever makes it.
--
-- Before each row is written (workflows_before_write, runs as the caller):
--   * INSERT: version 1, timestamps from the server, validation fields consistent;
--   * INSERT or UPDATE storing a validation result (valid/invalid with a new validated_at):
--     validated_at is the database clock and valid_until at most dbal.validity_period() later,
--     whatever the writer sent (the CHECK constraints of sql/10_workflows.sql back this up);
--   * UPDATE: updated_at kept; version + 1 when the content changed or the writer asked for it
--     (SET version = version + 1, so an update without changes still counts as one); a change of
--     nodes, edges or variables without a new validation result marks validation 'stale', so a
--     direct SQL edit can never leave a stale 'valid' behind.
-- After each statement (workflows_after_*, SECURITY DEFINER so that every role that may change
-- a workflow can write history and audit rows it may not write itself):
--   * the previous definition of every row whose definition changed goes to workflow_versions
--     (a plain INSERT: a definition change always bumps the version, so the key is new; no
--     ON CONFLICT, which would need the inserted row to be visible to the owner's policies and
--     so refused an operator's direct SQL made without a request context);
--   * one audit row per created, changed or purged workflow. Changes to lock and execution
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
    IF NEW.validation_status IN ('valid', 'invalid')
       AND (TG_OP = 'INSERT' OR NEW.validated_at IS DISTINCT FROM OLD.validated_at
            OR NEW.validation_status IS DISTINCT FROM OLD.validation_status) THEN
        NEW.validated_at := now();
        NEW.valid_until := least(coalesce(NEW.valid_until, 'infinity'),
                                 now() + dbal.validity_period());
    END IF;
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

-- The columns changed only through the lock, execution and archive functions, which audit
-- themselves.
CREATE FUNCTION dbal.system_columns() RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT ARRAY['execution_count', 'finished_execution_count', 'last_executed_at',
                       'last_execution_status', 'average_execution_time', 'is_locked',
                       'locked_by', 'locked_at', 'lock_expires_at', 'lock_token',
                       'archived_at', 'archived_by'] $$;

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
        -- only an operator's purge deletes rows (sql/73_purge.sql): audited as such
        INSERT INTO dbal.audit_log (tenant_id, user_id, user_role, operation, workflow_id, details)
        SELECT o.tenant_id, v_user, v_role, 'purge', o.id,
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
        WHERE (o.nodes, o.edges, o.variables, o.config) IS DISTINCT FROM (n.nodes, n.edges, n.variables, n.config);

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
