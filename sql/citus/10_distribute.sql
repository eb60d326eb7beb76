-- citus/10_distribute.sql — pydbal distributed by tenant on a Citus coordinator.
--
-- Applied by `pydbal migrate` (after sql/*.sql or the pending migrations) and by
-- `pydbal distribute` when the connected database has the citus extension; never on a single
-- node (sql/*.sql is the schema, this directory only says how it is spread). Idempotent: objects
-- already distributed are left alone, so it runs after every migration. Runs as a superuser.
--
-- Guarantees:
--   * every table of dbal holding tenant_id (all but analyst_grants and schema_migrations) is a
--     distributed table by tenant_id, colocated with dbal.workflows: one tenant's rows of every
--     table live in shards of the same shard group, on one worker. Existing rows move into the
--     shards (an in-place distribution keeps the data).
--   * dbal.analyst_grants (small, read by every analyst statement) is a reference table;
--     dbal.schema_migrations stays local to the coordinator (only migrate reads it).
--   * the time-partitioned tables (workflow_executions, audit_log) are distributed partitioned
--     tables: each partition is colocated too, and new partitions (pg_partman maintenance on the
--     coordinator, where installed) are distributed when attached.
--   * RLS is enabled and forced on every shard: Citus creates shards from the table's DDL, which
--     carries ENABLE/FORCE ROW LEVEL SECURITY and the policies (tests/citus checks the shards).
--   * the triggers of dbal.workflows fire on its shards (citus.enable_unsafe_triggers): they
--     write only the same tenant's rows of colocated tables (history, audit), which are local to
--     the shard's worker.
--   * every function of dbal with a p_tenant argument is a distributed function by that
--     argument, colocated with dbal.workflows, with force_delegation: a call is sent to the
--     worker holding the tenant and runs there in one round trip, also inside a transaction
--     block (whose later statements must then stay with the same tenant). Every other function
--     of dbal is propagated to every node (same body, owner and grants), so that the delegated
--     functions and the shards' policies, defaults and triggers find them.

-- Session settings (set by pydbal/distribute.py, one statement each, because Citus forwards a
-- SET's whole query string to the workers): citus.enable_unsafe_triggers = on,
-- citus.propagate_set_commands = 'local' and check_function_bodies = off (function bodies name
-- tables that reach the workers later in this file), citus.multi_shard_modify_mode = sequential.

-- pydbal's own operators and GIN operator classes (sql/05_index_operators.sql: dbal.&&, @@, %
-- and dbal.tags_ops, search_ops, name_trgm_ops, which the indexes of dbal.workflows use):
-- Citus 13.2 cannot propagate an operator class and refuses to distribute a table, or a
-- function of its row type, depending on one it does not know to be on every node.
-- pydbal/distribute.py creates them on every worker (the coordinator's text) before this file;
-- here they are marked as present on every node for this file's time only (the shards'
-- indexes are then built with them), and unmarked at its end, so that no later Citus operation
-- (adding a node) tries to create them itself.
CREATE TEMP TABLE pg_temp.dbal_marked ON COMMIT DROP AS
SELECT x.classid, x.objid
  FROM (SELECT 'pg_opclass'::regclass AS classid, oid AS objid FROM pg_opclass
         WHERE opcnamespace = 'dbal'::regnamespace
        UNION ALL
        SELECT 'pg_opfamily'::regclass, oid FROM pg_opfamily
         WHERE opfnamespace = 'dbal'::regnamespace
        UNION ALL
        SELECT 'pg_operator'::regclass, oid FROM pg_operator
         WHERE oprnamespace = 'dbal'::regnamespace) x
 WHERE NOT EXISTS (SELECT FROM pg_dist_object o WHERE o.classid = x.classid AND o.objid = x.objid);
INSERT INTO pg_catalog.pg_dist_object (classid, objid, objsubid)
SELECT classid, objid, 0 FROM pg_temp.dbal_marked;

-- Functions that do not depend on a table's row type go to every node first: the tables'
-- CHECK constraints, defaults and policies call them (also through inlined SQL functions,
-- which Citus' dependency tracking cannot see).
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT p.oid::regprocedure::text AS fn
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'dbal' AND p.prokind = 'f' AND NOT ('p_tenant' = ANY (p.proargnames))
           AND NOT EXISTS (SELECT FROM pg_dist_object o
                            WHERE o.classid = 'pg_proc'::regclass AND o.objid = p.oid)
           AND NOT EXISTS (
               SELECT FROM pg_depend d JOIN pg_type t ON d.refclassid = 'pg_type'::regclass
                                                    AND t.oid = d.refobjid
                WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND t.typrelid <> 0)
           AND p.prorettype <> 'trigger'::regtype
         ORDER BY 1
    LOOP
        PERFORM create_distributed_function(r.fn::regprocedure);
    END LOOP;
END
$$;

DO $$
DECLARE
    r record;
    v_refkey boolean := false;
BEGIN
    -- the colocation anchor first
    IF NOT EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = 'dbal.workflows'::regclass) THEN
        PERFORM create_distributed_table('dbal.workflows', 'tenant_id');
    END IF;
    -- small tables every tenant reads (retention_overrides' foreign key names
    -- retention_defaults): reference tables, before the tables referencing them
    -- (the foreign key is taken off while the tables are placed: Citus would otherwise turn
    -- retention_overrides into a coordinator-local table when its referenced table becomes a
    -- reference table; it is put back once both are placed, below)
    IF to_regclass('dbal.retention_defaults') IS NOT NULL
       AND NOT EXISTS (SELECT FROM pg_dist_partition
                        WHERE logicalrelid = 'dbal.retention_defaults'::regclass) THEN
        ALTER TABLE dbal.retention_overrides DROP CONSTRAINT retention_overrides_kind_fkey;
        PERFORM create_reference_table('dbal.retention_defaults');
        v_refkey := true;
    END IF;
    FOR r IN
        SELECT c.oid::regclass AS rel
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'dbal' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
           AND c.relname NOT IN ('workflows', 'schema_migrations', 'analyst_grants',
                                 'retention_defaults')
           AND EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid
                          AND a.attname = 'tenant_id' AND NOT a.attisdropped)
           AND NOT EXISTS (SELECT FROM pg_dist_partition p WHERE p.logicalrelid = c.oid)
         ORDER BY c.relname
    LOOP
        PERFORM create_distributed_table(r.rel, 'tenant_id', colocate_with => 'dbal.workflows');
    END LOOP;
    IF to_regclass('dbal.analyst_grants') IS NOT NULL
       AND NOT EXISTS (SELECT FROM pg_dist_partition
                        WHERE logicalrelid = 'dbal.analyst_grants'::regclass) THEN
        PERFORM create_reference_table('dbal.analyst_grants');
    END IF;
    IF v_refkey THEN
        ALTER TABLE dbal.retention_overrides ADD CONSTRAINT retention_overrides_kind_fkey
            FOREIGN KEY (kind) REFERENCES dbal.retention_defaults (kind) ON DELETE CASCADE;
    END IF;
END
$$;

DO $$
DECLARE
    r record;
    v_distributed boolean;
BEGIN
    -- helpers first (the entry points call them), then the entry points by tenant
    FOR r IN
        SELECT p.oid, p.oid::regprocedure::text AS fn, 'p_tenant' = ANY (p.proargnames) AS by_tenant
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'dbal' AND p.prokind = 'f'
         ORDER BY 3, 2
    LOOP
        v_distributed := EXISTS (SELECT FROM pg_dist_object o
                                  WHERE o.classid = 'pg_proc'::regclass AND o.objid = r.oid);
        IF r.by_tenant THEN
            IF NOT v_distributed OR NOT EXISTS (
                    SELECT FROM pg_dist_object o WHERE o.classid = 'pg_proc'::regclass
                       AND o.objid = r.oid AND o.distribution_argument_index IS NOT NULL) THEN
                PERFORM create_distributed_function(r.fn::regprocedure, 'p_tenant',
                                                    colocate_with => 'dbal.workflows',
                                                    force_delegation => true);
            END IF;
        ELSIF NOT v_distributed THEN
            PERFORM create_distributed_function(r.fn::regprocedure);
        END IF;
    END LOOP;
END
$$;

-- Privileges on the workers equal the coordinator's. Citus creates a propagated function with
-- PostgreSQL's default ACL (EXECUTE for PUBLIC) and then replays the explicit GRANTs only; a
-- delegated call is checked for EXECUTE on the worker, not on the coordinator, so without this
-- any login could call any entry point through the coordinator. The REVOKE is a no-op on the
-- coordinator (sql/90_grants.sql revoked it there) and reaches every worker.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT p.oid::regprocedure::text AS fn
          FROM pg_proc p
         WHERE p.pronamespace = 'dbal'::regnamespace
           AND NOT EXISTS (SELECT FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                            WHERE a.grantee = 0)  -- not executable by PUBLIC here
         ORDER BY 1
    LOOP
        EXECUTE format('REVOKE EXECUTE ON ROUTINE %s FROM PUBLIC', r.fn);
    END LOOP;
END
$$;

-- the operators and classes unmarked again (see the top of this file)
DELETE FROM pg_catalog.pg_dist_object o
 USING pg_temp.dbal_marked m
 WHERE o.classid = m.classid AND o.objid = m.objid AND o.objsubid = 0;
