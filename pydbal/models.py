"""The public data models (pydantic v2).

Attributes are snake_case; ``model_dump(by_alias=True)`` and every JSON pydbal writes use the
design's camelCase names, and inputs accept either spelling. Output values are Python objects:
nodes a list, edges a dict, tags a list, times timezone-aware datetimes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Generic, Literal, TypeVar, get_args
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic.alias_generators import to_camel

from pydbal.validation import ValidationIssue, ValidationReport, coerce_json, tag_list

Role = Literal["user", "admin", "god", "supergod"]
Category = Literal["system", "user", "package", "automation", "integration", "template"]
ValidationStatus = Literal["valid", "invalid", "stale", "pending"]
ExecutionStatus = Literal["success", "failure", "pending", "timeout"]
SortField = Literal["created_at", "updated_at", "last_executed_at", "execution_count", "name"]

# Mirrors of what the database defines once (CHECK constraints of sql/10_workflows.sql and
# sql/13_executions.sql, dbal.ctx_role(), dbal.ctx_is_admin(), dbal.validity_period()):
# tests/schema/test_constants.py compares each with the database's catalog.
ROLES: tuple[str, ...] = get_args(Role)
ADMIN_ROLES: frozenset[str] = frozenset({"admin", "god", "supergod"})
CATEGORIES: tuple[str, ...] = get_args(Category)
VALIDATION_STATUSES: tuple[str, ...] = get_args(ValidationStatus)
EXECUTION_STATUSES: tuple[str, ...] = get_args(ExecutionStatus)
SORT_FIELDS: tuple[str, ...] = get_args(SortField)
#: How long a stored validation result stays current (dbal.validity_period()).
VALIDITY_PERIOD = timedelta(hours=1)

T = TypeVar("T")

__all__ = [
    "AuditEntry",
    "CreateWorkflowInput",
    "Execution",
    "ExecutionStats",
    "ExportBundle",
    "Lock",
    "Page",
    "RecordedExecution",
    "Sort",
    "UpdateWorkflowInput",
    "ValidationIssue",
    "ValidationReport",
    "Workflow",
    "WorkflowFilter",
    "WorkflowVersion",
]


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class _Input(_Model):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", str_strip_whitespace=False
    )


class Workflow(_Model):
    """A stored workflow as a caller sees it (lock fields read as unlocked once expired)."""

    id: UUID
    tenant_id: str
    name: str
    description: str | None = None
    nodes: list[Any]
    edges: dict[str, Any]
    enabled: bool
    version: int
    execution_count: int
    last_executed_at: datetime | None = None
    last_execution_status: ExecutionStatus | None = None
    average_execution_time: float | None = None
    created_at: datetime
    updated_at: datetime
    created_by: str
    updated_by: str | None = None
    variables: dict[str, Any]
    config: dict[str, Any]
    tags: list[str]
    category: Category
    validation_status: ValidationStatus
    validation_errors: dict[str, Any] | None = None
    validated_at: datetime | None = None
    valid_until: datetime | None = None
    validator_version: int | None = None
    is_locked: bool
    locked_by: str | None = None
    locked_at: datetime | None = None
    lock_expires_at: datetime | None = None
    #: When it was archived (``delete``); None for a live workflow. Archived workflows are read
    #: only through ``list({"archived": True})`` and come back with ``unarchive``.
    archived_at: datetime | None = None


class _DefinitionFields(_Input):
    @field_validator("nodes", "edges", "variables", "config", mode="before", check_fields=False)
    @classmethod
    def _definition_json(cls, v: Any, info: ValidationInfo) -> Any:
        return coerce_json(v, info.field_name or "") if v is not None else v

    @field_validator("tags", mode="before", check_fields=False)
    @classmethod
    def _tag_list(cls, v: Any) -> Any:
        return tag_list(v)


class CreateWorkflowInput(_DefinitionFields):
    """What ``create`` takes. ``nodes``/``edges``/``variables``/``config`` accept JSON text or
    Python objects; ``tags`` a list or a comma-separated string. ``tenant_id``, when given, must
    be the caller's tenant (else TENANT_MISMATCH)."""

    name: str = Field(min_length=1, max_length=255)
    description: str | None = None
    nodes: list[Any] = Field(default_factory=list)
    edges: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True
    variables: dict[str, Any] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    category: Category = "user"
    tenant_id: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("name must not be blank")
        return v


class UpdateWorkflowInput(_DefinitionFields):
    """What ``update`` takes: only the fields given are changed."""

    name: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = None
    nodes: list[Any] | None = None
    edges: dict[str, Any] | None = None
    enabled: bool | None = None
    variables: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    tags: list[str] | None = None
    category: Category | None = None
    tenant_id: str | None = None


class WorkflowFilter(_Input):
    """Filter for ``list``, ``find_first``, ``update_many`` and ``delete_many``. ``tags`` match
    any of the given tags; ``search`` uses web-search syntax ("a -b", "quoted phrase")."""

    enabled: bool | None = None
    is_locked: bool | None = None
    category: Category | None = None
    created_by: str | None = None
    name: str | None = None
    tags: list[str] | None = None
    validation_status: ValidationStatus | None = None
    last_execution_status: ExecutionStatus | None = None
    search: str | None = None
    ids: list[UUID] | None = None
    #: True: only archived (deleted) workflows; False or None: live ones.
    archived: bool | None = None

    @field_validator("tags", mode="before")
    @classmethod
    def _tag_list(cls, v: Any) -> Any:
        return None if v is None else tag_list(v)


class Sort(_Input):
    field: SortField = "created_at"
    direction: Literal["asc", "desc"] = "desc"


class Page(_Model, Generic[T]):
    """One page of a list. ``total``: the number of matches, exact when ``total_exact``; a
    filtered list counts at most 1000 matches, beyond which ``total`` is 1000 and
    ``total_exact`` false ("at least 1000"). ``next_cursor``: pass it as ``after=`` for the next
    page (None on the last page)."""

    items: list[T]
    total: int
    has_more: bool
    total_exact: bool = True
    next_cursor: str | None = None


class ExecutionStats(_Model):
    """Statistics over a window: exact counts and averages; nearest-rank percentiles from a
    log-scale histogram, within 4.9 % for durations of 1 ms and more."""

    total: int
    success: int
    failure: int
    pending: int
    timeout: int
    success_rate: float | None = None
    average_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    last_executed_at: datetime | None = None
    last_status: ExecutionStatus | None = None


class Execution(_Model):
    execution_id: str
    workflow_id: UUID
    status: ExecutionStatus
    duration_ms: float | None = None
    started_at: datetime
    finished_at: datetime | None = None
    executed_by: str
    error: str | None = None


class RecordedExecution(_Model):
    """What ``record_execution`` did: ``recorded`` (new), ``completed`` (a pending one got its
    final status) or ``duplicate`` (already recorded: nothing changed)."""

    execution_id: str
    outcome: Literal["recorded", "completed", "duplicate"]


class Lock(_Model):
    workflow_id: UUID
    token: int
    expires_at: datetime


class WorkflowVersion(_Model):
    workflow_id: UUID
    version: int
    name: str
    description: str | None = None
    nodes: list[Any]
    edges: dict[str, Any]
    variables: dict[str, Any]
    config: dict[str, Any]
    created_by: str
    created_at: datetime
    replaced_by: str | None = None
    replaced_at: datetime


class AuditEntry(_Model):
    id: int
    tenant_id: str
    at: datetime
    user_id: str
    user_role: str | None = None
    operation: str
    workflow_id: UUID | None = None
    changed_fields: list[str] | None = None
    details: dict[str, Any] | None = None


class ExportBundle(_Model):
    format: str
    exported_at: datetime
    workflow: dict[str, Any]
    validation_report: dict[str, Any] | None = None
