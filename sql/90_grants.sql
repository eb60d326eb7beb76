-- 90_grants.sql — what each role may do. Nothing is granted to PUBLIC.
--
-- @app_role@ (services, through pydbal): reads its tenant's rows (policies) and writes NOTHING
-- directly: no INSERT, UPDATE, DELETE or TRUNCATE on any table, not even a column. Every write is
-- a call of a SECURITY DEFINER entry point that makes its own checks (sql/71_api_writes.sql,
-- sql/72_archive.sql, sql/75_validation_store.sql, sql/40_locks.sql, sql/41_record_execution.sql), so a compromised service
-- login can act for a tenant (it is trusted to name it) but cannot forge what the database
-- promises: ids, validation lifetimes, history, fencing tokens. Executes the context helpers and
-- the entry-point functions; internal helpers (workflow_for_update, audit, rollup_add,
-- archive_rows, clear_expired_locks, sweep_expired_locks, purge_archived) are executable by no
-- one but the owner and superusers.

REVOKE ALL ON ALL TABLES IN SCHEMA dbal FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA dbal FROM PUBLIC;

GRANT SELECT ON dbal.workflows, dbal.workflow_versions, dbal.audit_log, dbal.workflow_executions,
                dbal.execution_keys, dbal.workflow_stats_hourly, dbal.workflow_stats_daily,
                dbal.tenant_counters
    TO @app_role@;

GRANT EXECUTE ON FUNCTION
    dbal.ctx_tenant(), dbal.ctx_user(), dbal.ctx_role(), dbal.ctx_is_admin(),
    dbal.roles(), dbal.admin_roles(),
    dbal.enter(text, text, text),
    dbal.raise_error(integer, text, jsonb),
    dbal.current_validator_version(),
    dbal.ctx_archived(),
    dbal.validity_period(),
    dbal.effective_validation_status(text, timestamptz, integer),
    dbal.lease_live(boolean, timestamptz, timestamptz),
    dbal.lease_expired(boolean, timestamptz, timestamptz),
    dbal.visible_or_4041(text, uuid, boolean),
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

-- The API's entry points (sql/01_context.sql's enter_app, sql/70_api_builders.sql,
-- sql/71_api_writes.sql, sql/72_archive.sql, sql/74_api_reads.sql, sql/75_validation_store.sql)
-- and what they call as the invoker.
GRANT EXECUTE ON FUNCTION
    dbal.enter_app(text, text, text),
    dbal.filter_sql(jsonb),
    dbal.patch_set_sql(jsonb),
    dbal.validation_set_sql(text, jsonb, integer),
    dbal.free_name(text, text, text[]),
    dbal.writable(text, uuid),
    dbal.changeable_sql(),
    dbal.api_get(text, text, text, uuid),
    dbal.api_list(text, text, text, jsonb, text, boolean, integer, integer, text, uuid),
    dbal.api_search(text, text, text, text, integer),
    dbal.api_insert(text, text, text, text[], text[], jsonb[], jsonb[], jsonb[], jsonb[],
                    jsonb[], text[], boolean[], text[], jsonb[], integer, boolean),
    dbal.api_update(text, text, text, uuid, jsonb, integer, text, jsonb, integer),
    dbal.api_delete(text, text, text, uuid),
    dbal.api_update_many(text, text, text, jsonb, jsonb, text, jsonb, integer),
    dbal.api_delete_many(text, text, text, jsonb),
    dbal.api_unarchive(text, text, text, uuid),
    dbal.api_history(text, text, text, uuid),
    dbal.api_executions(text, text, text, uuid, timestamptz, timestamptz, text, integer),
    dbal.api_audit(text, text, text, uuid, integer),
    dbal.store_validation(text, text, text, uuid, integer, text, jsonb, integer)
    TO @app_role@;
