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
