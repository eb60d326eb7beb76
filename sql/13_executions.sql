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
        REFERENCES dbal.workflows (tenant_id, id)
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
        REFERENCES dbal.workflows (tenant_id, id)
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
        REFERENCES dbal.workflows (tenant_id, id)
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
        REFERENCES dbal.workflows (tenant_id, id)
);

COMMENT ON TABLE dbal.workflow_stats_daily IS
    'Daily (UTC) roll-up of executions per workflow; maintained by dbal.record_execution.';

RESET ROLE;
