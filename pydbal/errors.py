"""Domain errors and the one place that maps database errors to them.

SQL functions raise with a custom SQLSTATE of the form ``D`` + four digits, the design's error code
zero-padded (``D4231`` is WORKFLOW_LOCKED, ``D0403`` FORBIDDEN), a readable message, and an
optional JSON object in DETAIL. :func:`from_postgres` turns such an error, or a well-known
PostgreSQL error (unique violation, check violation, RLS refusal), into a :class:`DBALError`.
"""

from __future__ import annotations

import json
from enum import IntEnum
from typing import Any


class ErrorCode(IntEnum):
    """The design's error codes. They are public API: never renumber one."""

    FORBIDDEN = 403
    CONFLICT = 409
    VALIDATION_ERROR = 422
    TENANT_MISMATCH = 4034
    CROSS_TENANT_ACCESS_DENIED = 4035
    WORKFLOW_NOT_FOUND = 4041
    WORKFLOW_DISABLED = 4042
    INVALID_NODES = 4220
    INVALID_EDGES = 4221
    CIRCULAR_DEPENDENCY = 4222
    ORPHANED_NODE = 4223
    MISSING_VARIABLE = 4224
    INVALID_VARIABLE_TYPE = 4225
    WORKFLOW_LOCKED = 4231
    LOCK_ACQUISITION_FAILED = 4232
    LOCK_NOT_OWNED = 4233
    WORKFLOW_NOT_EXECUTABLE = 4241
    EXECUTION_IN_PROGRESS = 4242
    VALIDATION_STATUS_INVALID = 4243
    INVALID_EXPORT_FORMAT = 4251
    IMPORT_VALIDATION_FAILED = 4252
    CONFIGURATION_ERROR = 5000


class DBALError(Exception):
    """An error of pydbal's contract: ``code`` (an :class:`ErrorCode`), ``message``, ``details``."""

    def __init__(self, code: ErrorCode, message: str, details: dict[str, Any] | None = None):
        super().__init__(f"{code.name} ({int(code)}): {message}")
        self.code = code
        self.message = message
        self.details: dict[str, Any] = details or {}

    def __repr__(self) -> str:
        return f"DBALError({self.code.name}, {self.message!r}, {self.details!r})"


# Constraint names (see sql/) whose violation has a meaning of its own.
_CONSTRAINT_CODES: dict[str, tuple[ErrorCode, str]] = {
    "workflows_tenant_name_key": (ErrorCode.CONFLICT, "a workflow with this name already exists"),
    "workflows_nodes_is_array": (ErrorCode.VALIDATION_ERROR, "nodes must be a JSON array"),
    "workflows_edges_is_object": (ErrorCode.VALIDATION_ERROR, "edges must be a JSON object"),
}

# Plain CHECK constraints that bound a length: the field and the limit (pydbal/limits/) they
# enforce. The limits of sql/15_limits.sql raise D0422 with these details themselves.
_CONSTRAINT_LIMITS: dict[str, tuple[str, str]] = {
    "workflows_name_length": ("name", "name_length"),
    "workflows_tenant_not_empty": ("tenant_id", "tenant_id_length"),
    "execution_keys_id_length": ("execution_id", "execution_id_length"),
}

_CONSTRAINT_ISSUES: dict[str, str] = {
    "workflows_nodes_is_array": "INVALID_NODES",
    "workflows_edges_is_object": "INVALID_EDGES",
}


# invalid_sql_statement_name ("prepared statement … does not exist") and
# duplicate_prepared_statement ("… already exists"): what asyncpg's named statements meet behind
# a transaction-mode pooler.
_PREPARED_STATEMENT_STATES = frozenset({"26000", "42P05"})


def _parse_detail(detail: str | None) -> dict[str, Any]:
    if not detail:
        return {}
    try:
        value = json.loads(detail)
    except ValueError:
        return {"detail": detail}
    return value if isinstance(value, dict) else {"detail": value}


def from_postgres(exc: BaseException) -> DBALError | None:
    """Translate a driver exception into a DBALError, or None when it is not one of ours.

    Works on anything carrying ``sqlstate`` (asyncpg's ``PostgresError``) so that this module
    does not import the driver.
    """
    sqlstate: str | None = getattr(exc, "sqlstate", None)
    if not sqlstate:
        # asyncpg's DataError (an argument the driver cannot encode) has no SQLSTATE: it is
        # bad input all the same. pydbal checks arguments first (pydbal/limits/), so this only
        # catches what slipped through, without a field name.
        if type(exc).__name__ == "DataError" and type(exc).__module__.startswith("asyncpg"):
            return DBALError(ErrorCode.VALIDATION_ERROR, f"invalid argument: {exc}", {})
        return None
    message = getattr(exc, "message", None) or str(exc)
    detail = getattr(exc, "detail", None)
    if sqlstate in _PREPARED_STATEMENT_STATES and "__asyncpg_" in message:
        return DBALError(
            ErrorCode.CONFIGURATION_ERROR,
            "a named prepared statement reached a server connection that did not make it "
            f"({message}): the DSN leads through PgBouncer (or another pooler) in transaction or "
            "statement mode. Connect with pydbal.connect(..., pgbouncer=True) (the same as "
            "statement_cache_size=0)",
            {"sqlstate": sqlstate, "fix": "pgbouncer=True"},
        )
    if len(sqlstate) == 5 and sqlstate[0] == "D" and sqlstate[1:].isdigit():
        try:
            code = ErrorCode(int(sqlstate[1:]))
        except ValueError:
            return None
        return DBALError(code, message, _parse_detail(detail))
    constraint = getattr(exc, "constraint_name", None)
    if constraint in _CONSTRAINT_CODES:
        code, text = _CONSTRAINT_CODES[constraint]
        details: dict[str, Any] = {"constraint": constraint}
        if constraint in _CONSTRAINT_ISSUES:
            details["issues"] = [_CONSTRAINT_ISSUES[constraint]]
        return DBALError(code, text, details)
    if constraint in _CONSTRAINT_LIMITS:
        field, limit = _CONSTRAINT_LIMITS[constraint]
        return DBALError(
            ErrorCode.VALIDATION_ERROR,
            f"{field} is empty or too long (limit {limit})",
            {"constraint": constraint, "field": field, "limit": limit},
        )
    if sqlstate == "23505":  # unique_violation
        return DBALError(ErrorCode.CONFLICT, message, {"constraint": constraint})
    # check violation, not null violation, invalid text representation, invalid parameter value
    if sqlstate in ("23514", "23502", "22P02", "22023"):
        return DBALError(ErrorCode.VALIDATION_ERROR, message, {"constraint": constraint})
    if sqlstate == "42501":  # insufficient_privilege, including row-level security refusals
        return DBALError(ErrorCode.FORBIDDEN, message)
    # Every other data exception (class 22: NUL or untranslatable characters, numbers and times
    # out of range, …) and program limit (class 54: statement too complex, index row too big)
    # is the caller's input; pydbal's own checks name the field, this is the backstop.
    if sqlstate[:2] in ("22", "54"):
        return DBALError(ErrorCode.VALIDATION_ERROR, message, {"sqlstate": sqlstate})
    return None
