-- 45_maintenance.sql — the scheduler's one job: sweep expired locks, pg_partman, retention.
--
-- CALL dbal.run_maintenance(runner, min_interval_s, batch, max_batches) is what pg_cron runs
-- every minute (scheduled by `pydbal migrate` where pg_cron is installed, see
-- pydbal/maintenance.py) and what the in-process scheduler of a pydbal process runs otherwise.
-- Guarantees:
--   * one run at a time per database: a session advisory lock is taken with try-lock, so a
--     second runner (another process, pg_cron) skips instead of waiting; a run that started less
--     than min_interval_s seconds ago makes the others skip too (so N processes do not sweep N
--     times per interval);
--   * expired leases are cleared in the table (is_locked = false) and audited ('lock_expired',
--     user 'maintenance:<runner>');
--   * pg_partman (where installed) gets retention = the longest keep of any tenant for the
--     executions and audit parents, then run_maintenance_proc() creates and drops partitions;
--   * then bounded batched deletes (dbal.prune_batch) remove what is older than each tenant's
--     retention, committing after each batch (short locks), at most max_batches per kind;
--   * each run is a row of dbal.maintenance_runs: when, by whom, what it removed, errors.
-- It commits between steps, so it is a procedure, SECURITY INVOKER (SECURITY DEFINER procedures
-- cannot commit), executable by no role: superusers only (pg_cron's job runs as one; the
-- in-process scheduler needs a superuser DSN, which the embedded server's is).

SET LOCAL ROLE @owner_role@;

CREATE TABLE dbal.maintenance_runs (
    id                  bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    runner              text        NOT NULL,   -- 'pg_cron', 'pydbal:<host>:<pid>', 'cli'
    started_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at         timestamptz,            -- NULL: running, or died (see error)
    locks_cleared       integer,
    partitions_dropped  integer,
    removed             jsonb,                  -- rows deleted per kind
    error               text
);

COMMENT ON TABLE dbal.maintenance_runs IS
    'One row per run of dbal.run_maintenance (kept 30 days); shown by `pydbal status`.';

CREATE INDEX maintenance_runs_started_idx ON dbal.maintenance_runs (started_at DESC);

CREATE PROCEDURE dbal.run_maintenance(
        p_runner text DEFAULT 'pg_cron',
        p_min_interval_s double precision DEFAULT 0,
        p_batch integer DEFAULT 5000,
        p_max_batches integer DEFAULT 100)
    LANGUAGE plpgsql
    AS $$
DECLARE
    c_lock CONSTANT bigint := 8101238223536500852;  -- 'pydbalmt'
    v_run bigint;
    v_now timestamptz;
    v_locks integer := 0;
    v_dropped integer := NULL;
    v_removed jsonb := '{}';
    v_errors text[] := '{}';
    v_kind text;
    v_n integer;
    v_total integer;
    v_batches integer;
    v_before text[];
BEGIN
    IF NOT pg_catalog.pg_try_advisory_lock(c_lock) THEN
        RAISE NOTICE 'dbal.run_maintenance: another run is in progress; skipped';
        RETURN;
    END IF;
    IF EXISTS (SELECT FROM dbal.maintenance_runs r
                WHERE r.started_at > pg_catalog.clock_timestamp()
                                     - pg_catalog.make_interval(secs => p_min_interval_s)) THEN
        PERFORM pg_catalog.pg_advisory_unlock(c_lock);
        RETURN;
    END IF;
    INSERT INTO dbal.maintenance_runs (runner) VALUES (p_runner) RETURNING id INTO v_run;
    v_now := pg_catalog.clock_timestamp();
    COMMIT;

    -- 1. expired leases
    BEGIN
        PERFORM pg_catalog.set_config('dbal.user_id', 'maintenance:' || p_runner, true);
        v_locks := dbal.sweep_expired_locks();
    EXCEPTION WHEN OTHERS THEN
        v_errors := v_errors || ('locks: ' || SQLERRM);
    END;
    COMMIT;

    -- 2. pg_partman: retention from the policy, then its own maintenance
    IF EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_partman') THEN
        UPDATE partman.part_config c
           SET retention = (SELECT pg_catalog.max(k.keep)::text FROM (
                               SELECT d.keep FROM dbal.retention_defaults d WHERE d.kind = x.kind
                               UNION ALL
                               SELECT o.keep FROM dbal.retention_overrides o WHERE o.kind = x.kind) k),
               retention_keep_table = false
          FROM (VALUES ('dbal.workflow_executions', 'executions'),
                       ('dbal.audit_log', 'audit')) AS x(parent, kind)
         WHERE c.parent_table = x.parent;
        SELECT pg_catalog.array_agg(i.inhrelid::regclass::text) INTO v_before
          FROM pg_catalog.pg_inherits i
         WHERE i.inhparent IN ('dbal.workflow_executions'::regclass, 'dbal.audit_log'::regclass);
        COMMIT;
        CALL partman.run_maintenance_proc();
        SELECT pg_catalog.count(*) INTO v_dropped
          FROM pg_catalog.unnest(v_before) b(name)
         WHERE pg_catalog.to_regclass(b.name) IS NULL;
    END IF;

    -- 3. batched deletes, per kind, committing after each batch
    FOR v_kind IN SELECT d.kind FROM dbal.retention_defaults d ORDER BY d.kind LOOP
        v_total := 0;
        v_batches := 0;
        LOOP
            v_n := 0;
            BEGIN
                v_n := dbal.prune_batch(v_kind, v_now, p_batch);
            EXCEPTION WHEN OTHERS THEN
                v_errors := v_errors || (v_kind || ': ' || SQLERRM);
            END;
            COMMIT;
            v_total := v_total + v_n;
            v_batches := v_batches + 1;
            EXIT WHEN v_n < p_batch OR v_batches >= p_max_batches;
        END LOOP;
        v_removed := v_removed || pg_catalog.jsonb_build_object(v_kind, v_total);
    END LOOP;

    DELETE FROM dbal.maintenance_runs r WHERE r.started_at < v_now - interval '30 days';
    UPDATE dbal.maintenance_runs
       SET finished_at = pg_catalog.clock_timestamp(), locks_cleared = v_locks,
           partitions_dropped = v_dropped, removed = v_removed,
           error = CASE WHEN pg_catalog.cardinality(v_errors) > 0
                        THEN pg_catalog.array_to_string(v_errors, '; ') END
     WHERE id = v_run;
    COMMIT;
    PERFORM pg_catalog.pg_advisory_unlock(c_lock);
END
$$;

COMMENT ON PROCEDURE dbal.run_maintenance(text, double precision, integer, integer) IS
    'Sweep expired locks, pg_partman maintenance, retention; one run at a time (sql/45_maintenance.sql).';

REVOKE ALL ON dbal.maintenance_runs FROM PUBLIC;
REVOKE ALL ON PROCEDURE dbal.run_maintenance(text, double precision, integer, integer) FROM PUBLIC;

RESET ROLE;
