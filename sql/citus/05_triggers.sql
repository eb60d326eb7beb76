-- citus/05_triggers.sql — the history and audit triggers of dbal.workflows, per row on shards.
--
-- On one node, sql/30_workflow_triggers.sql writes history and audit once per statement from the
-- transition tables (new_rows, old_rows). A trigger on a Citus shard cannot read a transition
-- table from a query on a distributed table (the executor does not find the named tuplestore),
-- so before dbal.workflows is distributed its three statement triggers are replaced by one
-- AFTER … FOR EACH ROW trigger with the same effect, row by row: the same audit rows ('create',
-- 'update' with the changed fields, 'purge') and the same history rows. It writes only the
-- tenant of the row, into colocated shards on the same worker, which Citus allows inside a
-- trigger (citus.enable_unsafe_triggers). The BEFORE row trigger (workflows_before_write) keeps
-- its rules; its comparison of the user-visible fields is written out, because on a shard OLD
-- and NEW are of the shard's row type. Runs once, before distribution; a no-op afterwards.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = 'dbal.workflows'::regclass
                      AND tgname = 'workflows_after_insert') THEN
        RETURN;  -- done already
    END IF;

    -- workflows_before_write(): the same rules as sql/30_workflow_triggers.sql, with
    -- dbal.content_changed() written out: on a shard, OLD and NEW have the shard's row type
    -- (dbal.workflows_102008), which that function does not take.
    CREATE OR REPLACE FUNCTION dbal.workflows_before_write() RETURNS trigger
        LANGUAGE plpgsql
        SET search_path = pg_catalog, pg_temp
        AS $fn$
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

        IF (OLD.name, OLD.description, OLD.nodes, OLD.edges, OLD.enabled, OLD.variables, OLD.config,
            OLD.tags, OLD.category)
           IS DISTINCT FROM
           (NEW.name, NEW.description, NEW.nodes, NEW.edges, NEW.enabled, NEW.variables, NEW.config,
            NEW.tags, NEW.category) OR NEW.version IS DISTINCT FROM OLD.version THEN
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
    $fn$;

    -- workflows_after_row(): history and audit for one written row (see the file header).
    CREATE FUNCTION dbal.workflows_after_row() RETURNS trigger
        LANGUAGE plpgsql
        SECURITY DEFINER
        SET search_path = pg_catalog, pg_temp
        AS $fn$
    DECLARE
        v_user text := coalesce(dbal.ctx_user(), session_user::text);
        v_role text := dbal.ctx_role();
        v_fields text[];
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO dbal.audit_log (tenant_id, user_id, user_role, operation, workflow_id, details)
            VALUES (NEW.tenant_id, v_user, v_role, 'create', NEW.id,
                    jsonb_build_object('name', NEW.name));
        ELSIF TG_OP = 'DELETE' THEN
            INSERT INTO dbal.audit_log (tenant_id, user_id, user_role, operation, workflow_id, details)
            VALUES (OLD.tenant_id, v_user, v_role, 'purge', OLD.id,
                    jsonb_build_object('name', OLD.name, 'version', OLD.version));
        ELSE
            IF (OLD.nodes, OLD.edges, OLD.variables, OLD.config)
               IS DISTINCT FROM (NEW.nodes, NEW.edges, NEW.variables, NEW.config) THEN
                INSERT INTO dbal.workflow_versions (tenant_id, workflow_id, version, name,
                                                    description, nodes, edges, variables, config,
                                                    created_by, created_at, replaced_by, replaced_at)
                VALUES (OLD.tenant_id, OLD.id, OLD.version, OLD.name, OLD.description, OLD.nodes,
                        OLD.edges, OLD.variables, OLD.config,
                        coalesce(OLD.updated_by, OLD.created_by), OLD.updated_at,
                        coalesce(NEW.updated_by, v_user), NEW.updated_at)
                ON CONFLICT (tenant_id, workflow_id, version) DO NOTHING;
            END IF;
            v_fields := ARRAY(SELECT nk.key
                                FROM jsonb_each(to_jsonb(NEW)) nk
                                JOIN jsonb_each(to_jsonb(OLD)) ok ON ok.key = nk.key
                               WHERE nk.value IS DISTINCT FROM ok.value
                                 AND nk.key NOT IN ('updated_at', 'version', 'search_document')
                               ORDER BY nk.key);
            IF NEW.version <> OLD.version OR NOT (v_fields <@ dbal.system_columns()) THEN
                INSERT INTO dbal.audit_log (tenant_id, user_id, user_role, operation, workflow_id,
                                            changed_fields, details)
                VALUES (NEW.tenant_id, v_user, v_role, 'update', NEW.id, v_fields,
                        jsonb_build_object('version', NEW.version));
            END IF;
        END IF;
        RETURN NULL;
    END
    $fn$;
    ALTER FUNCTION dbal.workflows_after_row() OWNER TO @owner_role@;
    REVOKE ALL ON FUNCTION dbal.workflows_after_row() FROM PUBLIC;

    DROP TRIGGER workflows_after_insert ON dbal.workflows;
    DROP TRIGGER workflows_after_update ON dbal.workflows;
    DROP TRIGGER workflows_after_delete ON dbal.workflows;
    CREATE TRIGGER workflows_after_row
        AFTER INSERT OR UPDATE OR DELETE ON dbal.workflows
        FOR EACH ROW EXECUTE FUNCTION dbal.workflows_after_row();
END
$$;

-- The tenant counters (sql/14_tenant_counters.sql) per row on shards, for the same reason: the
-- statement triggers counting inserted and purged workflows read transition tables. One AFTER
-- … FOR EACH ROW trigger adds or removes the row to or from its tenant's counter row (a
-- colocated shard of dbal.tenant_counters, on the same worker); the archive trigger is per row
-- already and stays. Same counts at every commit; a multi-row insert or purge updates its
-- tenant's counter once per row instead of once per statement. Runs once, before distribution.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = 'dbal.workflows'::regclass
                      AND tgname = 'workflows_count_insert') THEN
        RETURN;  -- done already (or no counters in this schema)
    END IF;

    CREATE FUNCTION dbal.count_workflow_row() RETURNS trigger
        LANGUAGE plpgsql
        SET search_path = pg_catalog, pg_temp
        AS $fn$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO dbal.tenant_counters AS c (tenant_id, live, archived)
            VALUES (NEW.tenant_id, CASE WHEN NEW.archived_at IS NULL THEN 1 ELSE 0 END,
                    CASE WHEN NEW.archived_at IS NULL THEN 0 ELSE 1 END)
            ON CONFLICT (tenant_id) DO UPDATE
               SET live = c.live + excluded.live, archived = c.archived + excluded.archived;
            RETURN NULL;
        END IF;
        UPDATE dbal.tenant_counters c
           SET live = c.live - CASE WHEN OLD.archived_at IS NULL THEN 1 ELSE 0 END,
               archived = c.archived - CASE WHEN OLD.archived_at IS NULL THEN 0 ELSE 1 END
         WHERE c.tenant_id = OLD.tenant_id;
        RETURN NULL;
    END
    $fn$;
    ALTER FUNCTION dbal.count_workflow_row() OWNER TO @owner_role@;
    REVOKE ALL ON FUNCTION dbal.count_workflow_row() FROM PUBLIC;

    DROP TRIGGER workflows_count_insert ON dbal.workflows;
    DROP TRIGGER workflows_count_delete ON dbal.workflows;
    CREATE TRIGGER workflows_count_row
        AFTER INSERT OR DELETE ON dbal.workflows
        FOR EACH ROW EXECUTE FUNCTION dbal.count_workflow_row();
END
$$;
