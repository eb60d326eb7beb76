"""pydbal: multi-tenant workflow storage on PostgreSQL, tenant boundary enforced in the database.

import pydbal
async with pydbal.connect() as db:
    acme = db.tenant("acme", user_id="u-1", role="admin")
    wf = await acme.workflows.create({"name": "Hello", "nodes": [...], "edges": {...}})
"""

from pydbal._version import __version__
from pydbal.database import Database, SchemaOutdatedError, Tenant, connect
from pydbal.errors import DBALError, ErrorCode
from pydbal.health import Health
from pydbal.instrument import DatabaseClosedError, TelemetryOptions
from pydbal.models import (
    AuditEntry,
    CreateWorkflowInput,
    Execution,
    ExecutionStats,
    ExportBundle,
    Lock,
    Page,
    RecordedExecution,
    Sort,
    UpdateWorkflowInput,
    Workflow,
    WorkflowFilter,
    WorkflowVersion,
)
from pydbal.sync import SyncDatabase, SyncTenant, connect_sync
from pydbal.validation import (
    VALIDATOR_VERSION,
    ValidationIssue,
    ValidationReport,
    validate_definition,
)

__all__ = [
    "VALIDATOR_VERSION",
    "AuditEntry",
    "CreateWorkflowInput",
    "DBALError",
    "Database",
    "DatabaseClosedError",
    "ErrorCode",
    "Execution",
    "ExecutionStats",
    "ExportBundle",
    "Health",
    "Lock",
    "Page",
    "RecordedExecution",
    "SchemaOutdatedError",
    "Sort",
    "SyncDatabase",
    "SyncTenant",
    "TelemetryOptions",
    "Tenant",
    "UpdateWorkflowInput",
    "ValidationIssue",
    "ValidationReport",
    "Workflow",
    "WorkflowFilter",
    "WorkflowVersion",
    "__version__",
    "connect",
    "connect_sync",
    "validate_definition",
]
