"""The workflow operations of one tenant: ``db.tenant(...).workflows``.

Every method is one (or, for bulk and definition changes, a few) statements calling the
``dbal.api_*`` entry points of ``sql/70_api.sql`` and the lock/execution functions of
``sql/40_locks.sql`` and ``sql/41_record_execution.sql``. Access rules are checked here for clear
errors and enforced by the database regardless (row-level security, role checks in SQL).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID, uuid4

import asyncpg
import orjson
from pydantic import BaseModel, ValidationError

from pydbal import queries as q
from pydbal.errors import DBALError, ErrorCode
from pydbal.formats import Definition, build_bundle, derive_name, parse_import
from pydbal.instrument import operations
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
from pydbal.validation import VALIDATOR_VERSION, ValidationReport, validate_coerced

if TYPE_CHECKING:
    from pydbal.database import Tenant

M = TypeVar("M", bound=BaseModel)

ADMIN_ROLES = frozenset({"admin", "god", "supergod"})
EXECUTION_STATUSES = frozenset({"success", "failure", "pending", "timeout"})
FIND_FIELDS = frozenset({"name", "created_by", "category", "tags"})
DEFINITION_FIELDS = ("nodes", "edges", "variables")
CREATE_BATCH = 1000
# Fields that cannot be NULL: None in an update means "leave unchanged".
_NOT_NULL = frozenset(
    {"name", "nodes", "edges", "enabled", "variables", "config", "tags", "category"}
)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _parse(cls: type[M], value: Any) -> M:
    """Validate caller input into a model; bad input is VALIDATION_ERROR, never a traceback."""
    if isinstance(value, cls):
        return value
    if isinstance(value, BaseModel):
        value = value.model_dump(exclude_unset=True)
    if value is None:
        value = {}
    try:
        return cls.model_validate(value)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        fields = ", ".join(".".join(str(p) for p in e["loc"]) or "input" for e in errors)
        raise DBALError(
            ErrorCode.VALIDATION_ERROR,
            f"invalid {cls.__name__}: {fields}",
            {"errors": [{"loc": list(e["loc"]), "msg": e["msg"]} for e in errors]},
        ) from None


def _uuid(value: Any) -> UUID | None:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        return None


_WORKFLOW_FIELDS = tuple(Workflow.model_fields)
_WORKFLOW_FIELDS_SET = frozenset(_WORKFLOW_FIELDS)


def _workflow(rec: Mapping[str, Any]) -> Workflow:
    """A Workflow from a row of ``queries.workflow_columns``.

    The values come from the database's own CHECKed columns, decoded by asyncpg, so they are not
    validated again. This is what ``Workflow.model_construct`` does, without its per-field default
    handling (every field is present): a third of the cost, on every read."""
    obj = Workflow.__new__(Workflow)
    object.__setattr__(obj, "__dict__", {k: rec[k] for k in _WORKFLOW_FIELDS})
    object.__setattr__(obj, "__pydantic_fields_set__", set(_WORKFLOW_FIELDS_SET))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


def _report_status(report: ValidationReport) -> tuple[str, str]:
    return (
        "valid" if report.valid else "invalid",
        _json(report.model_dump(mode="json", by_alias=True)),
    )


def _settings(config: Mapping[str, Any] | None) -> Any:
    settings = (config or {}).get("settings")
    return settings if isinstance(settings, dict) else None


def _validate(
    nodes: Any, edges: Any, variables: Any, config: Mapping[str, Any] | None
) -> ValidationReport:
    """Validate a definition held by a model or a stored workflow (already plain JSON data)."""
    return validate_coerced(nodes, edges, variables, _settings(config) or {})


def _bundle(src: Workflow, exported_at: datetime) -> ExportBundle:
    """The export bundle of a workflow. Its validation report is the stored one while that is
    current (not stale, made by this validator), else computed now."""
    report: dict[str, Any] | None = None
    if src.validation_status in ("valid", "invalid") and src.validator_version == VALIDATOR_VERSION:
        report = src.validation_errors
    if report is None:
        computed = _validate(src.nodes, src.edges, src.variables, src.config)
        report = computed.model_dump(mode="json", by_alias=True)
    return ExportBundle.model_validate(build_bundle(src.model_dump(), report, exported_at))


@dataclass
class Run:
    """The handle of ``async with workflows.executing(id) as run``."""

    workflow_id: UUID
    lock: Lock
    execution_id: str = field(default_factory=lambda: str(uuid4()))
    lost: bool = False
    error: str | None = None
    recorded: RecordedExecution | None = None


@operations  # every public method: refused once closing, counted in flight, traced when on
class Workflows:
    """Workflow operations of one tenant (tenant, user and role fixed by the scope)."""

    def __init__(self, scope: Tenant) -> None:
        self._scope = scope
        self._db = scope.db
        self._ctx = scope.ctx
        self._cache = scope.db.cache

    # -- helpers ------------------------------------------------------------------------------
    @property
    def _is_admin(self) -> bool:
        return self._scope.role in ADMIN_ROLES

    def _require_create(self) -> None:
        if not self._is_admin:
            raise DBALError(
                ErrorCode.FORBIDDEN,
                f"role {self._scope.role} may not create workflows (admin, god or supergod may)",
            )

    def _check_tenant(self, tenant_id: str | None) -> None:
        if tenant_id is not None and tenant_id != self._scope.tenant_id:
            raise DBALError(
                ErrorCode.TENANT_MISMATCH,
                "the payload names another tenant than the caller's",
                {"tenant_id": tenant_id},
            )

    def _id(self, workflow_id: Any) -> UUID:
        """A workflow id for an operation on an existing workflow; unparseable = not found."""
        parsed = _uuid(workflow_id)
        if parsed is None:
            raise DBALError(
                ErrorCode.WORKFLOW_NOT_FOUND, "workflow not found", {"id": str(workflow_id)}
            )
        return parsed

    async def _invalidate(self, *ids: Any, lists: bool = True) -> None:
        await self._cache.invalidate(self._scope.tenant_id, [str(i) for i in ids], lists=lists)

    async def _invalidate_tenant(self) -> None:
        """After a bulk write: everything cached of the tenant."""
        await self._cache.invalidate(self._scope.tenant_id, (), lists=True, all_workflows=True)

    def _create_input(self, value: Any) -> CreateWorkflowInput:
        inp = _parse(CreateWorkflowInput, value)
        self._check_tenant(inp.tenant_id)
        return inp

    def _insert_args(
        self,
        inputs: Sequence[CreateWorkflowInput],
        rename: bool,
        reports: Sequence[ValidationReport] | None,
    ) -> tuple[Any, ...]:
        """The arguments of ``dbal.api_insert`` for ``inputs`` (validated here unless given)."""
        if reports is None:
            reports = [_validate(i.nodes, i.edges, i.variables, i.config) for i in inputs]
        statuses = [_report_status(r) for r in reports]
        args = (
            *self._ctx,
            [uuid4() for _ in inputs],
            [i.name for i in inputs],
            [i.description for i in inputs],
            [_json(i.nodes) for i in inputs],
            [_json(i.edges) for i in inputs],
            [_json(i.variables) for i in inputs],
            [_json(i.config) for i in inputs],
            [_json(i.tags) for i in inputs],
            [i.category for i in inputs],
            [i.enabled for i in inputs],
            [s for s, _ in statuses],
            [e for _, e in statuses],
            VALIDATOR_VERSION,
            rename,
        )
        return args

    async def _insert(
        self,
        inputs: Sequence[CreateWorkflowInput],
        *,
        rename: bool,
        conn: asyncpg.Connection | None = None,
        reports: Sequence[ValidationReport] | None = None,
    ) -> builtins.list[Workflow]:
        args = self._insert_args(inputs, rename, reports)
        if conn is not None:
            rows = await conn.fetch(q.INSERT, *args)
        else:
            rows = await self._db.fetch(q.INSERT, *args)
        return [_workflow(r) for r in rows]

    async def _insert_renaming(
        self,
        inputs: Sequence[CreateWorkflowInput],
        reports: Sequence[ValidationReport] | None = None,
    ) -> builtins.list[Workflow]:
        """Insert in one transaction, each taking the next free "<name> (n)". A concurrent writer
        can take a chosen name between the choice and the insert: then choose again."""
        for attempt in range(5):
            try:
                async with self._db.transaction() as conn:
                    return await self._insert(inputs, rename=True, conn=conn, reports=reports)
            except DBALError as exc:
                if exc.code != ErrorCode.CONFLICT or attempt == 4:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _load(self, workflow_id: UUID) -> Workflow | None:
        row = await self._db.fetchrow(q.GET, *self._ctx, workflow_id)
        return _workflow(row) if row is not None else None

    async def _existing(self, workflow_id: Any) -> Workflow:
        wid = self._id(workflow_id)
        found = await self._load(wid)
        if found is None:
            raise DBALError(ErrorCode.WORKFLOW_NOT_FOUND, "workflow not found", {"id": str(wid)})
        return found

    # -- reads --------------------------------------------------------------------------------
    async def get(self, workflow_id: Any) -> Workflow | None:
        """The workflow, or None when it does not exist or belongs to another tenant."""
        wid = _uuid(workflow_id)
        if wid is None:
            return None
        return await self._cache.workflow(self._scope.tenant_id, str(wid), lambda: self._load(wid))

    async def list(
        self,
        filter: WorkflowFilter | Mapping[str, Any] | None = None,
        sort: Sort | Mapping[str, Any] | None = None,
        page: int = 1,
        limit: int = 20,
    ) -> Page[Workflow]:
        """A page of workflows (limit 1-100), sorted with a stable tie-break on id."""
        if not isinstance(page, int) or isinstance(page, bool) or page < 1:
            raise DBALError(ErrorCode.VALIDATION_ERROR, "page must be an integer >= 1")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 100:
            raise DBALError(ErrorCode.VALIDATION_ERROR, "limit must be an integer from 1 to 100")
        return await self._list(filter, sort, (page - 1) * limit, limit)

    async def _list(self, filter: Any, sort: Any, offset: int, limit: int) -> Page[Workflow]:
        flt = _parse(WorkflowFilter, filter).model_dump(mode="json", exclude_none=True)
        srt = _parse(Sort, sort)
        args = (*self._ctx, _json(flt), srt.field, srt.direction == "desc", offset, limit)

        async def load() -> Page[Workflow]:
            rows = await self._db.fetch(q.LIST, *args)
            if not rows:
                return Page[Workflow](items=[], total=0, has_more=False)
            total = int(rows[0]["total"])
            items = [] if rows[0]["empty"] else [_workflow(r) for r in rows]
            return Page[Workflow](items=items, total=total, has_more=offset + len(items) < total)

        return await self._cache.warm(self._scope.tenant_id, "list", _json(args[3:]), load)

    async def find_first(
        self,
        filter: WorkflowFilter | Mapping[str, Any] | None = None,
        sort: Sort | Mapping[str, Any] | None = None,
    ) -> Workflow | None:
        page = await self._list(filter, sort, 0, 1)
        return page.items[0] if page.items else None

    async def find_by_field(
        self, field: str, value: Any, limit: int = 100
    ) -> builtins.list[Workflow]:
        """Workflows whose ``field`` (name, created_by, category, tags) equals ``value`` (for
        tags: has it)."""
        if field not in FIND_FIELDS:
            raise DBALError(
                ErrorCode.VALIDATION_ERROR,
                f"find_by_field supports {', '.join(sorted(FIND_FIELDS))}, not {field!r}",
                {"field": field},
            )
        if not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise DBALError(ErrorCode.VALIDATION_ERROR, "limit must be an integer from 1 to 1000")
        if field == "tags" and isinstance(value, str):
            value = [value]
        return (
            await self._list({field: value}, {"field": "name", "direction": "asc"}, 0, limit)
        ).items

    async def search(self, text: str, limit: int = 10) -> builtins.list[Workflow]:
        """Best matches first: full text over name, description and tags (web-search syntax),
        then names similar to ``text`` (tolerates a typo)."""
        if not isinstance(text, str):
            raise DBALError(ErrorCode.VALIDATION_ERROR, "search text must be a string")
        if not isinstance(limit, int) or not 1 <= limit <= 100:
            raise DBALError(ErrorCode.VALIDATION_ERROR, "limit must be an integer from 1 to 100")

        async def load() -> builtins.list[Workflow]:
            rows = await self._db.fetch(q.SEARCH, *self._ctx, text, limit)
            return [_workflow(r) for r in rows]

        return await self._cache.warm(self._scope.tenant_id, "search", _json([text, limit]), load)

    async def get_execution_stats(
        self, workflow_id: Any, start: datetime | None = None, end: datetime | None = None
    ) -> ExecutionStats:
        wid = self._id(workflow_id)

        async def load() -> ExecutionStats:
            row = await self._db.fetchrow(q.EXECUTION_STATS, *self._ctx, wid, start, end)
            assert row is not None
            return ExecutionStats.model_validate(dict(row))

        key = _json(
            [str(wid), start.isoformat() if start else None, end.isoformat() if end else None]
        )
        return await self._cache.warm(
            self._scope.tenant_id, "stats", key, load, workflow_id=str(wid)
        )

    async def executions(
        self,
        workflow_id: Any,
        start: datetime | None = None,
        end: datetime | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> builtins.list[Execution]:
        wid = self._id(workflow_id)
        if status is not None and status not in EXECUTION_STATUSES:
            raise DBALError(ErrorCode.VALIDATION_ERROR, f"unknown execution status {status!r}")
        if not isinstance(limit, int) or not 1 <= limit <= 10000:
            raise DBALError(ErrorCode.VALIDATION_ERROR, "limit must be an integer from 1 to 10000")
        rows = await self._db.fetch(q.EXECUTIONS, *self._ctx, wid, start, end, status, limit)
        return [Execution.model_validate(dict(r)) for r in rows]

    async def audit(self, workflow_id: Any = None, limit: int = 100) -> builtins.list[AuditEntry]:
        wid = None if workflow_id is None else self._id(workflow_id)
        if not isinstance(limit, int) or not 1 <= limit <= 10000:
            raise DBALError(ErrorCode.VALIDATION_ERROR, "limit must be an integer from 1 to 10000")
        rows = await self._db.fetch(q.AUDIT, *self._ctx, wid, limit)
        return [AuditEntry.model_validate(dict(r)) for r in rows]

    async def history(self, workflow_id: Any) -> builtins.list[WorkflowVersion]:
        """Previous definitions, newest first."""
        rows = await self._db.fetch(q.HISTORY, *self._ctx, self._id(workflow_id))
        return [WorkflowVersion.model_validate(dict(r)) for r in rows]

    # -- writes -------------------------------------------------------------------------------
    async def create(self, input: CreateWorkflowInput | Mapping[str, Any]) -> Workflow:
        """Create a workflow (admin, god, supergod). A taken name is CONFLICT."""
        self._require_create()
        inp = self._create_input(input)
        created = (await self._insert([inp], rename=False))[0]
        await self._invalidate(created.id)
        return created

    async def create_many(self, inputs: Iterable[CreateWorkflowInput | Mapping[str, Any]]) -> int:
        """Create many workflows, all or nothing, in batches of 1000 rows per statement."""
        self._require_create()
        parsed = [self._create_input(i) for i in inputs]
        if not parsed:
            return 0
        async with self._db.transaction() as conn:
            count = 0
            for start in range(0, len(parsed), CREATE_BATCH):
                batch = parsed[start : start + CREATE_BATCH]
                args = self._insert_args(batch, False, None)
                count += int(await conn.fetchval(q.INSERT_COUNT, *args))
        await self._invalidate()
        return count

    def _patch(self, value: Any) -> dict[str, Any]:
        inp = _parse(UpdateWorkflowInput, value)
        self._check_tenant(inp.tenant_id)
        patch = inp.model_dump(mode="json", exclude_unset=True, exclude={"tenant_id"})
        return {k: v for k, v in patch.items() if not (v is None and k in _NOT_NULL)}

    async def update(
        self,
        workflow_id: Any,
        input: UpdateWorkflowInput | Mapping[str, Any],
        expected_version: int | None = None,
    ) -> Workflow:
        """Apply the given fields; bumps ``version``. A stale ``expected_version`` is CONFLICT
        and nothing is written. A definition change is validated and kept in history."""
        wid = self._id(workflow_id)
        patch = self._patch(input)
        return await self._apply(wid, patch, expected_version)

    async def _apply(
        self, wid: UUID, patch: dict[str, Any], expected_version: int | None
    ) -> Workflow:
        for attempt in range(3):
            version = expected_version
            vstatus: str | None = None
            verrors: str | None = None
            if any(k in patch for k in (*DEFINITION_FIELDS, "config")):
                current = await self._load(wid)
                if current is None:
                    raise DBALError(
                        ErrorCode.WORKFLOW_NOT_FOUND, "workflow not found", {"id": str(wid)}
                    )
                merged = {
                    k: patch.get(k, getattr(current, k)) for k in (*DEFINITION_FIELDS, "config")
                }
                report = _validate(
                    merged["nodes"], merged["edges"], merged["variables"], merged["config"]
                )
                vstatus, verrors = _report_status(report)
                if version is None:
                    version = current.version  # the report must describe what is stored
            try:
                row = await self._db.fetchrow(
                    q.UPDATE,
                    *self._ctx,
                    wid,
                    _json(patch),
                    version,
                    vstatus,
                    verrors,
                    VALIDATOR_VERSION,
                )
            except DBALError as exc:
                if (
                    exc.code == ErrorCode.CONFLICT
                    and expected_version is None
                    and attempt < 2
                    and "expected_version" in exc.details
                ):
                    continue  # changed between our read and write: validate again
                raise
            assert row is not None
            await self._invalidate(wid)
            return _workflow(row)
        raise DBALError(ErrorCode.CONFLICT, "workflow keeps changing; try again", {"id": str(wid)})

    async def set_enabled(self, workflow_id: Any, enabled: bool) -> Workflow:
        if not isinstance(enabled, bool):
            raise DBALError(ErrorCode.VALIDATION_ERROR, "enabled must be a boolean")
        return await self._apply(self._id(workflow_id), {"enabled": enabled}, None)

    async def delete(self, workflow_id: Any) -> bool:
        """True when deleted; False when there was no such workflow (or another tenant's)."""
        wid = _uuid(workflow_id)
        if wid is None:
            return False
        deleted = bool(await self._db.fetchval(q.DELETE, *self._ctx, wid))
        if deleted:
            await self._invalidate(wid)
        return deleted

    async def upsert(
        self,
        name: str,
        create: CreateWorkflowInput | Mapping[str, Any],
        update: UpdateWorkflowInput | Mapping[str, Any],
    ) -> Workflow:
        """Update the workflow named ``name`` with ``update``, or create it from ``create``."""
        create_data = self._create_input({**_as_dict(create), "name": name})
        patch = self._patch(update)
        for _ in range(2):
            existing = await self.find_first({"name": name})
            if existing is not None:
                return await self._apply(existing.id, patch, None)
            try:
                return await self.create(create_data)
            except DBALError as exc:
                if exc.code != ErrorCode.CONFLICT:
                    raise  # a concurrent create won the name: update it instead
        raise DBALError(
            ErrorCode.CONFLICT, "workflow name keeps changing; try again", {"name": name}
        )

    async def update_many(
        self,
        filter: WorkflowFilter | Mapping[str, Any] | None,
        input: UpdateWorkflowInput | Mapping[str, Any],
    ) -> int:
        """Apply ``input`` to every matching workflow the caller may change; returns how many.
        Rows of another creator (role user) or locked by another user are left untouched."""
        flt = _parse(WorkflowFilter, filter).model_dump(mode="json", exclude_none=True)
        patch = self._patch(input)
        vstatus: str | None = None
        verrors: str | None = None
        if all(k in patch for k in DEFINITION_FIELDS):
            report = _validate(
                patch["nodes"], patch["edges"], patch["variables"], patch.get("config")
            )
            vstatus, verrors = _report_status(report)
        count = int(
            await self._db.fetchval(
                q.UPDATE_MANY,
                *self._ctx,
                _json(flt),
                _json(patch),
                vstatus,
                verrors,
                VALIDATOR_VERSION,
            )
        )
        await self._invalidate_tenant()
        return count

    async def delete_many(self, filter: WorkflowFilter | Mapping[str, Any] | None) -> int:
        """Delete every matching workflow the caller may delete; returns how many."""
        flt = _parse(WorkflowFilter, filter).model_dump(mode="json", exclude_none=True)
        count = int(await self._db.fetchval(q.DELETE_MANY, *self._ctx, _json(flt)))
        await self._invalidate_tenant()
        return count

    async def restore(self, workflow_id: Any, version: int) -> Workflow:
        """Make a new version equal to ``version`` from the history (name and definition)."""
        wid = self._id(workflow_id)
        for old in await self.history(wid):
            if old.version == version:
                return await self._apply(
                    wid,
                    {
                        "name": old.name,
                        "description": old.description,
                        "nodes": old.nodes,
                        "edges": old.edges,
                        "variables": old.variables,
                        "config": old.config,
                    },
                    None,
                )
        raise DBALError(
            ErrorCode.WORKFLOW_NOT_FOUND,
            f"workflow has no version {version} in its history",
            {"id": str(wid), "version": version},
        )

    # -- validation ---------------------------------------------------------------------------
    async def validate(self, workflow_id: Any) -> ValidationReport:
        """Validate the stored definition and keep the result (valid for 1 hour)."""
        current = await self._existing(workflow_id)
        return await self._store_validation(current)

    async def _store_validation(self, current: Workflow) -> ValidationReport:
        report = _validate(current.nodes, current.edges, current.variables, current.config)
        status, errors = _report_status(report)
        await self._db.fetchval(
            q.STORE_VALIDATION,
            *self._ctx,
            current.id,
            current.version,
            status,
            errors,
            VALIDATOR_VERSION,
        )
        await self._invalidate(current.id, lists=True)
        return report

    # -- locks and executions -----------------------------------------------------------------
    async def acquire_lock(self, workflow_id: Any, timeout_ms: int = 30000) -> Lock | None:
        """A lease lock with a fencing token, or None while someone holds one. A stale or
        never-validated workflow is validated once before refusing it."""
        wid = self._id(workflow_id)
        for attempt in range(2):
            try:
                row = await self._db.fetchrow(q.ACQUIRE_LOCK, *self._ctx, wid, timeout_ms)
            except DBALError as exc:
                stale = exc.details.get("validation_status") in ("stale", "pending")
                if exc.code == ErrorCode.VALIDATION_STATUS_INVALID and stale and attempt == 0:
                    current = await self._existing(wid)
                    await self._store_validation(current)
                    continue
                raise
            if row is None:
                return None
            await self._invalidate(wid)  # list pages show lock state too
            return Lock(workflow_id=wid, token=row["token"], expires_at=row["expires_at"])
        return None  # pragma: no cover - the loop always returns or raises

    async def renew_lock(
        self, workflow_id: Any, lock: Lock, timeout_ms: int = 30000
    ) -> Lock | None:
        """The extended lock, or None once it was lost."""
        wid = self._id(workflow_id)
        expires = await self._db.fetchval(q.RENEW_LOCK, *self._ctx, wid, lock.token, timeout_ms)
        if expires is None:
            return None
        await self._invalidate(wid)  # lock_expires_at changed
        return Lock(workflow_id=wid, token=lock.token, expires_at=expires)

    async def release_lock(self, workflow_id: Any, lock: Lock | None = None) -> bool:
        """Release by the holder (with its lock) or by admin and up (without)."""
        wid = self._id(workflow_id)
        released = bool(
            await self._db.fetchval(
                q.RELEASE_LOCK, *self._ctx, wid, lock.token if lock is not None else None
            )
        )
        await self._invalidate(wid)
        return released

    async def release_expired_locks(self) -> int:
        count = int(await self._db.fetchval(q.RELEASE_EXPIRED_LOCKS, *self._ctx))
        if count:
            await self._invalidate_tenant()
        return count

    async def record_execution(
        self,
        workflow_id: Any,
        status: str,
        execution_time_ms: float | None,
        execution_id: str | None = None,
        lock: Lock | None = None,
        started_at: datetime | None = None,
        error: str | None = None,
    ) -> RecordedExecution:
        """Record one execution (counted once per execution id; see sql/41_record_execution.sql)."""
        wid = self._id(workflow_id)
        if status not in EXECUTION_STATUSES:
            raise DBALError(
                ErrorCode.VALIDATION_ERROR,
                f"unknown execution status {status!r}",
                {"status": status},
            )
        if execution_time_ms is not None and (
            isinstance(execution_time_ms, bool) or not isinstance(execution_time_ms, int | float)
        ):
            raise DBALError(ErrorCode.VALIDATION_ERROR, "execution_time_ms must be a number")
        if started_at is not None and started_at.tzinfo is None:
            raise DBALError(ErrorCode.VALIDATION_ERROR, "started_at must be timezone-aware")
        row = await self._db.fetchrow(
            q.RECORD_EXECUTION,
            *self._ctx,
            wid,
            status,
            None if execution_time_ms is None else float(execution_time_ms),
            execution_id,
            lock.token if lock is not None else None,
            started_at,
            error,
        )
        assert row is not None
        await self._cache.invalidate(self._scope.tenant_id, [str(wid)], lists=True)
        return RecordedExecution(execution_id=row["execution_id"], outcome=row["outcome"])

    @contextlib.asynccontextmanager
    async def executing(
        self, workflow_id: Any, *, timeout_ms: int = 30000, deadline_ms: int | None = None
    ) -> AsyncIterator[Run]:
        """The design's safe execution: lock (4042 disabled, 4243 not valid, 4231 held by
        someone), renew while the block runs, record success — or failure when it raises, or
        timeout when it raises TimeoutError or runs past ``deadline_ms`` (then the block is
        cancelled and TimeoutError raised) — with the measured duration, and always release.
        ``timeout_ms`` is the lease, renewed every third of it."""
        wid = self._id(workflow_id)
        lock = await self.acquire_lock(wid, timeout_ms)
        if lock is None:
            holder = await self._load(wid)
            raise DBALError(
                ErrorCode.WORKFLOW_LOCKED,
                "workflow is locked",
                {
                    "id": str(wid),
                    "locked_by": holder.locked_by if holder else None,
                    "locked_at": holder.locked_at.isoformat()
                    if holder and holder.locked_at
                    else None,
                },
            )
        run = Run(workflow_id=wid, lock=lock)

        async def renew() -> None:
            while True:
                await asyncio.sleep(max(timeout_ms / 3000.0, 0.01))
                renewed = await self.renew_lock(wid, run.lock, timeout_ms)
                if renewed is None:
                    run.lost = True
                    return
                run.lock = renewed

        renewer = asyncio.create_task(renew())
        started = datetime.now(UTC)
        t0 = time.perf_counter()
        try:
            try:
                if deadline_ms is None:
                    yield run
                else:
                    async with asyncio.timeout(deadline_ms / 1000):
                        yield run
            except BaseException as exc:
                status = "timeout" if isinstance(exc, TimeoutError) else "failure"
                run.error = f"{type(exc).__name__}: {exc}"
                renewer.cancel()
                with contextlib.suppress(DBALError, asyncpg.PostgresError, OSError):
                    run.recorded = await self.record_execution(
                        wid,
                        status,
                        (time.perf_counter() - t0) * 1000,
                        run.execution_id,
                        run.lock,
                        started,
                        run.error,
                    )
                raise
            renewer.cancel()
            run.recorded = await self.record_execution(
                wid,
                "success",
                (time.perf_counter() - t0) * 1000,
                run.execution_id,
                run.lock,
                started,
            )
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await renewer
            with contextlib.suppress(DBALError):
                await self.release_lock(wid, run.lock)

    # -- clone, export, import ----------------------------------------------------------------
    async def clone(
        self, workflow_id: Any, new_name: str | None = None, enabled: bool = False
    ) -> Workflow:
        """A copy with fresh counters, named ``new_name`` or "<name> (Clone)"; a taken name
        becomes "<name> (2)", "(3)", …"""
        self._require_create()
        src = await self._existing(workflow_id)
        name = new_name if new_name is not None else f"{src.name[:247]} (Clone)"
        inp = _parse(
            CreateWorkflowInput,
            {
                "name": name,
                "description": src.description,
                "nodes": src.nodes,
                "edges": src.edges,
                "enabled": enabled,
                "variables": src.variables,
                "config": src.config,
                "tags": src.tags,
                "category": src.category,
            },
        )
        created = (await self._insert_renaming([inp]))[0]
        await self._invalidate(created.id)
        return created

    async def export(self, workflow_id: Any) -> ExportBundle:
        """``{format: "pydbal.workflow/v1", exportedAt, workflow, validationReport}``."""
        return _bundle(await self._existing(workflow_id), datetime.now(UTC))

    async def export_many(self, workflow_ids: Iterable[Any]) -> builtins.list[ExportBundle]:
        """Bundles of many workflows, in the order given, read 100 per statement. Any id that
        is missing (or another tenant's) is WORKFLOW_NOT_FOUND, listing them all."""
        ids = [self._id(i) for i in workflow_ids]
        found: dict[UUID, Workflow] = {}
        for start in range(0, len(ids), 100):
            chunk = ids[start : start + 100]
            page = await self._list({"ids": chunk}, None, 0, 100)
            found.update((w.id, w) for w in page.items)
        missing = [str(i) for i in ids if i not in found]
        if missing:
            raise DBALError(
                ErrorCode.WORKFLOW_NOT_FOUND,
                f"{len(missing)} workflow(s) not found",
                {"ids": missing},
            )
        now = datetime.now(UTC)
        return [_bundle(found[i], now) for i in ids]

    async def import_workflow(
        self, definition: Any, name: str | None = None, enabled: bool = False, strict: bool = False
    ) -> Workflow:
        """Import one workflow from any accepted shape (pydbal bundle, MetaBuilder file, n8n
        editor download or database export of one, n8n template wrapper); bytes, text, parsed
        JSON or a path. A taken name becomes "<name> (2)", …"""
        imported = await self.import_many(definition, name=name, enabled=enabled, strict=strict)
        if len(imported) != 1:
            raise DBALError(
                ErrorCode.INVALID_EXPORT_FORMAT,
                f"the input holds {len(imported)} workflows: use import_many",
                {"reason": "more than one workflow", "count": len(imported)},
            )
        return imported[0]

    async def import_many(
        self, data: Any, name: str | None = None, enabled: bool = False, strict: bool = False
    ) -> builtins.list[Workflow]:
        """Import every workflow of ``data`` (an n8n export array gives several), all or none."""
        self._require_create()
        source_name: str | None = None
        if isinstance(data, os.PathLike):
            path = Path(data)
            source_name = path.name
            try:
                data = await asyncio.to_thread(path.read_bytes)
            except OSError as exc:
                raise DBALError(
                    ErrorCode.INVALID_EXPORT_FORMAT,
                    f"cannot read {path}: {exc.strerror}",
                    {"reason": "unreadable file"},
                ) from None
        definitions = parse_import(data, source_name=source_name)
        if name is not None and len(definitions) > 1:
            raise DBALError(ErrorCode.VALIDATION_ERROR, "name applies to a single workflow only")
        inputs: builtins.list[CreateWorkflowInput] = []
        reports: builtins.list[ValidationReport] = []
        for index, d in enumerate(definitions):
            inp, report = self._import_input(d, name, enabled, source_name, index)
            if strict and not report.valid:
                raise DBALError(
                    ErrorCode.IMPORT_VALIDATION_FAILED,
                    f"workflow {inp.name!r} is not valid",
                    {"index": index, "report": report.model_dump(mode="json", by_alias=True)},
                )
            inputs.append(inp)
            reports.append(report)
        created = await self._insert_renaming(inputs, reports)
        await self._invalidate(*(w.id for w in created))
        return created

    def _import_input(
        self, d: Definition, name: str | None, enabled: bool, source_name: str | None, index: int
    ) -> tuple[CreateWorkflowInput, ValidationReport]:
        chosen = name or d.name or derive_name(d.nodes, source_name)
        try:
            inp = _parse(
                CreateWorkflowInput,
                {
                    "name": chosen,
                    "description": d.description,
                    "nodes": d.nodes,
                    "edges": d.edges,
                    "variables": d.variables,
                    "config": d.config,
                    "tags": d.tags,
                    "category": d.category or "user",
                    "enabled": enabled,
                },
            )
            report = _validate(inp.nodes, inp.edges, inp.variables, inp.config)
        except DBALError as exc:
            raise DBALError(
                ErrorCode.INVALID_EXPORT_FORMAT,
                f"workflow {index}: {exc.message}",
                {"reason": exc.message, "index": index, **exc.details},
            ) from None
        return inp, report


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_unset=True)
    return dict(value or {})
