-- 14_tenant_counters.sql — how many workflows each tenant has, kept with every write.
--
-- Guarantees:
--   * dbal.tenant_counters holds, per tenant, the number of live and of archived workflows,
--     equal to count(*) over dbal.workflows at every commit: the triggers below change it in the
--     same transaction as every insert, archive, unarchive and purge, whoever makes it (the
--     definer entry points, an operator's purge, direct SQL by a superuser).
--   * An unfiltered api_list reads its total here: exact and O(1), whatever the tenant's size.
--   * Row-level security like the other tables (sql/50_policies.sql): the application role reads
--     its tenant's row only and writes nothing; the triggers run as the writer (the owner inside
--     a definer entry point, with the request's tenant; a superuser, whom RLS does not apply to).
--   * Writers of one tenant serialise on its counter row for the rest of their transaction (one
--     row update per statement, not per workflow, except archive/unarchive: one per row).
-- The same text is part of migrations/0006_flat_reads.sql.

SET LOCAL ROLE @owner_role@;

CREATE TABLE dbal.tenant_counters (
    tenant_id text   NOT NULL,
    live      bigint NOT NULL DEFAULT 0,  -- workflows with archived_at NULL
    archived  bigint NOT NULL DEFAULT 0,  -- workflows with archived_at set
    CONSTRAINT tenant_counters_pkey PRIMARY KEY (tenant_id),
    CONSTRAINT tenant_counters_not_negative CHECK (live >= 0 AND archived >= 0)
);

COMMENT ON TABLE dbal.tenant_counters IS
    'Live and archived workflows per tenant, kept by triggers on dbal.workflows (sql/14_tenant_counters.sql).';

-- count_workflow_rows(): after an INSERT or DELETE statement on dbal.workflows, adds (removes)
-- the statement's rows to (from) their tenants' counters, one row update per tenant, in tenant
-- order (no deadlock between two multi-tenant purges). Runs as the writer.
CREATE FUNCTION dbal.count_workflow_rows() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO dbal.tenant_counters AS c (tenant_id, live, archived)
        SELECT n.tenant_id, count(*) FILTER (WHERE n.archived_at IS NULL),
               count(*) FILTER (WHERE n.archived_at IS NOT NULL)
          FROM new_rows n GROUP BY n.tenant_id ORDER BY n.tenant_id
        ON CONFLICT (tenant_id) DO UPDATE
           SET live = c.live + excluded.live, archived = c.archived + excluded.archived;
    ELSE
        UPDATE dbal.tenant_counters c
           SET live = c.live - d.live, archived = c.archived - d.archived
          FROM (SELECT o.tenant_id, count(*) FILTER (WHERE o.archived_at IS NULL) AS live,
                       count(*) FILTER (WHERE o.archived_at IS NOT NULL) AS archived
                  FROM old_rows o GROUP BY o.tenant_id) d
         WHERE c.tenant_id = d.tenant_id;
    END IF;
    RETURN NULL;
END
$$;

-- count_workflow_archive(): after a row's archived state changed (archive or unarchive), moves
-- it between the live and archived counts of its tenant. Runs as the writer.
CREATE FUNCTION dbal.count_workflow_archive() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_step integer := CASE WHEN NEW.archived_at IS NULL THEN 1 ELSE -1 END;
BEGIN
    INSERT INTO dbal.tenant_counters AS c (tenant_id, live, archived)
    VALUES (NEW.tenant_id, greatest(v_step, 0), greatest(-v_step, 0))
    ON CONFLICT (tenant_id) DO UPDATE
       SET live = c.live + v_step, archived = c.archived - v_step;
    RETURN NULL;
END
$$;

CREATE TRIGGER workflows_count_insert
    AFTER INSERT ON dbal.workflows REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION dbal.count_workflow_rows();
CREATE TRIGGER workflows_count_delete
    AFTER DELETE ON dbal.workflows REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION dbal.count_workflow_rows();
CREATE TRIGGER workflows_count_archive
    AFTER UPDATE OF archived_at ON dbal.workflows
    FOR EACH ROW WHEN ((OLD.archived_at IS NULL) <> (NEW.archived_at IS NULL))
    EXECUTE FUNCTION dbal.count_workflow_archive();

RESET ROLE;
