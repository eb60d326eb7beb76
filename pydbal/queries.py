"""SQL statements as module constants. This module holds:

- every statement of the request path: the workflow operations (``pydbal.workflows``), the
  batched recorder (``pydbal.recorder``), ``Database``'s retention calls and schema-version check
  (also ``pydbal.health``). Each calls one entry-point function of ``sql/`` with explicit casts,
  so a request is one statement (one round trip) that carries its own tenant context;
- the entry points of two operator commands: ``pydbal purge`` (``PURGE_ARCHIVED``) and
  ``pydbal locks sweep`` (``SWEEP_EXPIRED_LOCKS``);
- the catalog probes more than one module sends (the last section).

Not here: statements only one operator module sends (schema installation in ``migrate`` and
``distribute``, pg_cron and retention administration in ``maintenance``, the self-check and
partition reports of the CLI, analyst grants, the cache's server identity, ``sqlgate``'s
statement timeout); each stays next to the code that uses it.
"""

from __future__ import annotations


def workflow_columns(prefix: str) -> str:
    """The columns of a Workflow read from a ``dbal.workflows`` value named by ``prefix``.
    Validation and lock state are read as callers must see them (expired = stale/unlocked)."""
    p = prefix
    live = f"{p}lock_expires_at > clock_timestamp()"  # the lease still runs: the lock counts
    return (
        f"{p}id, {p}tenant_id, {p}name, {p}description, {p}nodes, {p}edges, {p}enabled, "
        f"{p}version, {p}execution_count, {p}last_executed_at, {p}last_execution_status, "
        f"{p}average_execution_time, {p}created_at, {p}updated_at, {p}created_by, {p}updated_by, "
        f"{p}variables, {p}config, {p}tags, {p}category, "
        f"dbal.effective_validation_status({p}validation_status, {p}valid_until, "
        f"{p}validator_version) AS validation_status, "
        f"{p}validation_errors, {p}validated_at, {p}valid_until, {p}validator_version, "
        f"({p}is_locked AND {live}) AS is_locked, "
        f"CASE WHEN {live} THEN {p}locked_by END AS locked_by, "
        f"CASE WHEN {live} THEN {p}locked_at END AS locked_at, "
        f"CASE WHEN {live} THEN {p}lock_expires_at END AS lock_expires_at, "
        f"{p}archived_at"
    )


_W = workflow_columns("w.")
_RW = workflow_columns("(r.wf).")

GET = f"SELECT {_W} FROM dbal.api_get($1::text, $2::text, $3::text, $4::uuid) w"

# The workflow columns (as read) first, in Workflow's field order, then total, total_exact and
# has_more: dbal.api_list computes them itself (no composite value to take apart here).
LIST = (
    "SELECT * FROM dbal.api_list($1::text, $2::text, $3::text, $4::jsonb, $5::text, "
    "$6::boolean, $7::integer, $8::integer, $9::text, $10::uuid)"
)

SEARCH = (
    f"SELECT {_RW}, r.rank FROM dbal.api_search($1::text, $2::text, $3::text, $4::text, "
    "$5::integer) r"
)

# The JSON arrays travel as text[] (binary: each element's bytes as they are) and become jsonb[]
# in the server: a jsonb[] parameter with pydbal's text codec goes as an array literal, every
# element quoted and escaped by asyncpg and unescaped by array_in, ~40 % of the parameters'
# parsing for 10 KB definitions (issue 13, bench/results/TRANSFER.md).
_INSERT_CALL = (
    "dbal.api_insert($1::text, $2::text, $3::text, "
    "p_names => $4::text[], p_descriptions => $5::text[], "
    "p_nodes => $6::text[]::jsonb[], p_edges => $7::text[]::jsonb[], "
    "p_variables => $8::text[]::jsonb[], p_config => $9::text[]::jsonb[], "
    "p_tags => $10::text[]::jsonb[], p_categories => $11::text[], "
    "p_enabled => $12::boolean[], p_validation_status => $13::text[], "
    "p_validation_errors => $14::text[]::jsonb[], p_validator_version => $15::integer, "
    "p_rename => $16::boolean)"
)

INSERT = f"SELECT {_W} FROM {_INSERT_CALL} w"

# create_many: the rows are not sent back, only how many were stored.
INSERT_COUNT = f"SELECT count(*) FROM {_INSERT_CALL}"

UPDATE = (
    f"SELECT {_W} FROM dbal.api_update($1::text, $2::text, $3::text, p_id => $4::uuid, "
    "p_patch => $5::jsonb, p_expected_version => $6::integer, p_validation_status => $7::text, "
    "p_validation_errors => $8::jsonb, p_validator_version => $9::integer) w"
)

DELETE = "SELECT dbal.api_delete($1::text, $2::text, $3::text, $4::uuid)"

UNARCHIVE = f"SELECT {_W} FROM dbal.api_unarchive($1::text, $2::text, $3::text, $4::uuid) w"

# Operators only (a superuser DSN): sql/73_purge.sql.
PURGE_ARCHIVED = (
    "SELECT tenant_id, workflow_id, name, archived_at "
    "FROM dbal.purge_archived($1::interval, $2::text)"
)

UPDATE_MANY = (
    "SELECT dbal.api_update_many($1::text, $2::text, $3::text, p_filter => $4::jsonb, "
    "p_patch => $5::jsonb, p_validation_status => $6::text, p_validation_errors => $7::jsonb, "
    "p_validator_version => $8::integer)"
)

DELETE_MANY = "SELECT dbal.api_delete_many($1::text, $2::text, $3::text, $4::jsonb)"

STORE_VALIDATION = (
    "SELECT dbal.store_validation($1::text, $2::text, $3::text, p_id => $4::uuid, "
    "p_version => $5::integer, p_status => $6::text, p_errors => $7::jsonb, "
    "p_validator_version => $8::integer)"
)

HISTORY = (
    "SELECT workflow_id, version, name, description, nodes, edges, variables, config, "
    "created_by, created_at, replaced_by, replaced_at "
    "FROM dbal.api_history($1::text, $2::text, $3::text, $4::uuid)"
)

EXECUTIONS = (
    "SELECT execution_id, workflow_id, status, duration_ms, started_at, finished_at, "
    "executed_by, error FROM dbal.api_executions($1::text, $2::text, $3::text, p_id => $4::uuid, "
    "p_from => $5::timestamptz, p_to => $6::timestamptz, p_status => $7::text, "
    "p_limit => $8::integer)"
)

AUDIT = (
    "SELECT id, tenant_id, at, user_id, user_role, operation, workflow_id, changed_fields, details "
    "FROM dbal.api_audit($1::text, $2::text, $3::text, $4::uuid, $5::integer)"
)

ACQUIRE_LOCK = (
    "SELECT token, expires_at FROM dbal.acquire_lock_lease(p_workflow => $4::uuid, "
    "p_timeout_ms => $5::integer, p_tenant => $1::text, p_user => $2::text, p_role => $3::text)"
)

RENEW_LOCK = (
    "SELECT dbal.renew_lock_lease(p_workflow => $4::uuid, p_token => $5::bigint, "
    "p_timeout_ms => $6::integer, p_tenant => $1::text, p_user => $2::text, p_role => $3::text)"
)

RELEASE_LOCK = (
    "SELECT dbal.release_lock(p_workflow => $4::uuid, p_token => $5::bigint, "
    "p_tenant => $1::text, p_user => $2::text, p_role => $3::text)"
)

RELEASE_EXPIRED_LOCKS = (
    "SELECT dbal.release_expired_locks(p_tenant => $1::text, p_user => $2::text, "
    "p_role => $3::text)"
)

SWEEP_EXPIRED_LOCKS = "SELECT dbal.sweep_expired_locks()"

RECORD_EXECUTION = (
    "SELECT execution_id, outcome FROM dbal.record_execution(p_workflow => $4::uuid, "
    "p_status => $5::text, p_duration_ms => $6::double precision, p_execution_id => $7::text, "
    "p_token => $8::bigint, p_started_at => $9::timestamptz, p_error => $10::text, "
    "p_tenant => $1::text, p_user => $2::text, p_role => $3::text)"
)

RECORD_EXECUTIONS = (
    "SELECT ord, execution_id, outcome, code, message, details FROM dbal.record_executions("
    "p_tenant => $1::text, p_user => $2::text, p_role => $3::text, p_workflows => $4::uuid[], "
    "p_statuses => $5::text[], p_durations => $6::double precision[], "
    "p_execution_ids => $7::text[], p_tokens => $8::bigint[], p_started_at => $9::timestamptz[], "
    "p_errors => $10::text[])"
)

RETENTION = (
    "SELECT kind, keep, source FROM dbal.retention(p_tenant => $1::text, p_user => $2::text, "
    "p_role => $3::text)"
)

SET_RETENTION = (
    "SELECT dbal.set_retention(p_kind => $4::text, p_keep => $5::interval, p_tenant => $1::text, "
    "p_user => $2::text, p_role => $3::text)"
)

EXECUTION_STATS = (
    "SELECT total, success, failure, pending, timeout, success_rate, avg_ms AS average_ms, "
    "min_ms, max_ms, p50_ms, p95_ms, p99_ms, last_executed_at, last_status "
    "FROM dbal.execution_stats(p_workflow => $4::uuid, p_from => $5::timestamptz, "
    "p_to => $6::timestamptz, p_tenant => $1::text, p_user => $2::text, p_role => $3::text)"
)

SCHEMA_VERSION = "SELECT max(name) FROM dbal.schema_migrations"

# -- catalog probes sent by more than one module ------------------------------------------------

#: The migration ledger exists (pydbal's schema was installed by ``migrate``).
LEDGER_EXISTS = "SELECT to_regclass('dbal.schema_migrations') IS NOT NULL"

#: The workflows table exists (pydbal's schema is here, with or without its ledger).
SCHEMA_EXISTS = "SELECT to_regclass('dbal.workflows') IS NOT NULL"

#: The extension named by $1 is created in the connected database (citus, pg_partman, pg_cron).
EXTENSION_INSTALLED = "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = $1)"

#: The connection's login is a superuser (an operator's DSN).
IS_SUPERUSER = "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"

CURRENT_DATABASE = "SELECT current_database()"
