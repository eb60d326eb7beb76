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
import logging
import os
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from uuid import UUID, uuid4

import asyncpg
import orjson
from pydantic import BaseModel, ValidationError

from pydbal import cursors
from pydbal import limits as lim
from pydbal import queries as q
from pydbal.cache import bypass
from pydbal.errors import DBALError, ErrorCode
from pydbal.formats import Definition, build_bundle, derive_name, parse_import
from pydbal.instrument import operations
from pydbal.models import (
    ADMIN_ROLES,
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

EXECUTION_STATUSES = frozenset({"success", "failure", "pending", "timeout"})
FIND_FIELDS = frozenset({"name", "created_by", "category", "tags"})
DEFINITION_FIELDS = ("nodes", "edges", "variables")
CREATE_BATCH = 1000
INT4_MAX = 2**31 - 1
TOKEN_MAX = 2**63 - 1
APPLY_ATTEMPTS = 100
# Fields that cannot be NULL: None in an update means "leave unchanged".
_NOT_NULL = frozenset(
    {"name", "nodes", "edges", "enabled", "variables", "config", "tags", "category"}
)

log = logging.getLogger("pydbal.workflows")


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
    if not isinstance(value, str) or len(value) > 100:
        return None  # an id is a UUID or its text; anything else names no workflow
    try:
        return UUID(value)
    except ValueError:
        return None


_WORKFLOW_FIELDS = tuple(Workflow.model_fields)
_WORKFLOW_FIELDS_SET = frozenset(_WORKFLOW_FIELDS)


def _workflow(
    rec: Mapping[str, Any], _new: Any = Workflow.__new__, _set: Any = object.__setattr__
) -> Workflow:
    """A Workflow from a row of ``queries.workflow_columns``: its first columns are the model's
    fields in order (``tests/unit`` checks it), any after them (rank, total) are not read.

    The values come from the database's own CHECKed columns, decoded by asyncpg, so they are not
    validated again. This is what ``Workflow.model_construct`` does, without its per-field default
    handling (every field is present): a third of the cost, on every read."""
    obj: Workflow = _new(Workflow)
    _set(obj, "__dict__", dict(zip(_WORKFLOW_FIELDS, rec.values(), strict=False)))
    _set(obj, "__pydantic_fields_set__", set(_WORKFLOW_FIELDS_SET))
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
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
        self._lim = scope.db.limits

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
            shown = (
                workflow_id[:100] if isinstance(workflow_id, str) else type(workflow_id).__name__
            )
            raise DBALError(ErrorCode.WORKFLOW_NOT_FOUND, "workflow not found", {"id": shown})
        return parsed

    async def _invalidate(self, *ids: Any, lists: bool = True) -> None:
        await self._cache.invalidate(self._scope.tenant_id, [str(i) for i in ids], lists=lists)

    async def _invalidate_tenant(self) -> None:
        """After a bulk write: everything cached of the tenant."""
        await self._cache.invalidate(self._scope.tenant_id, (), lists=True, all_workflows=True)

    def _checked(self, cls: type[M], value: Any) -> M:
        """Parse a create/update input and check it against the limits: a definition given as
        data is walked (bounded) and one given as text measured before either is parsed."""
        checked = lim.precheck_raw(value, self._lim)
        inp = _parse(cls, value)
        values = {k: getattr(inp, k) for k in inp.model_fields_set}
        lim.check_workflow_text(values, self._lim)
        lim.check_definition(values, self._lim, skip=checked)
        return inp

    def _create_input(self, value: Any) -> CreateWorkflowInput:
        inp = self._checked(CreateWorkflowInput, value)
        self._check_tenant(inp.tenant_id)
        return inp

    def _lock(self, value: Any) -> Lock:
        """A Lock (or a mapping of its fields) whose token fits the database's bigint."""
        if isinstance(value, Mapping):
            try:
                value = Lock.model_validate(value)
            except ValidationError:
                raise lim.refuse(
                    "lock", "lock must be a Lock (workflow_id, token, expires_at)"
                ) from None
        if not isinstance(value, Lock):
            raise lim.refuse("lock", f"lock must be a Lock, not {type(value).__name__}")
        lim.integer(value.token, "lock", 1, TOKEN_MAX, "token")
        return value

    def _lease(self, timeout_ms: Any) -> int:
        return lim.integer(
            timeout_ms, "timeout_ms", self._lim.lease_min_ms, self._lim.lease_max_ms, "lease_ms"
        )

    def _limit(self, value: Any, maximum: int) -> int:
        return lim.integer(value, "limit", 1, maximum)

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
        after: str | None = None,
    ) -> Page[Workflow]:
        """A page of workflows (limit 1-100), sorted with a stable tie-break on id.

        ``after``: the ``next_cursor`` of the previous page (same filter and sort, else
        VALIDATION_ERROR): a keyset page, as fast at any depth and unshifted by concurrent
        inserts and deletes. ``page``: the offset form, kept for compatibility (with ``after``,
        only page 1)."""
        window = self._lim.list_window
        page = lim.integer(page, "page", 1, window, "list_window")
        limit = self._limit(limit, 100)
        if page * limit > window:
            raise lim.refuse(
                "page",
                f"page * limit must be at most {window:,} (limit list_window)",
                limit="list_window",
                max=window,
            )
        if after is not None and page != 1:
            raise lim.refuse("page", "page must be 1 with after= (a cursor marks the start)")
        return await self._list(filter, sort, (page - 1) * limit, limit, after)

    async def _list(
        self, filter: Any, sort: Any, offset: int, limit: int, after: Any = None
    ) -> Page[Workflow]:
        flt = self._filter(filter)
        srt = _parse(Sort, sort)
        tenant = self._scope.tenant_id
        flt_json = _json(flt)
        digest = cursors.filter_digest(flt_json)
        key: str | None = None
        after_id: UUID | None = None
        if after is not None:
            position = cursors.decode(tenant, after, srt.field, srt.direction, digest)
            key, after_id = position.key, position.id
        args = (
            *self._ctx,
            flt_json,
            srt.field,
            srt.direction == "desc",
            offset,
            limit,
            key,
            after_id,
        )

        async def load() -> Page[Workflow]:
            rows = await self._db.fetch(q.LIST, *args)
            if not rows:  # pragma: no cover - api_list always returns a row
                return Page[Workflow](items=[], total=0, has_more=False)
            first = rows[0]
            total, exact = int(first["total"]), bool(first["total_exact"])
            if first["id"] is None:
                return Page[Workflow](items=[], total=total, has_more=False, total_exact=exact)
            items = [_workflow(r) for r in rows]
            more = bool(first["has_more"])
            last = items[-1]
            cursor = (
                cursors.encode(
                    tenant, srt.field, srt.direction, digest, getattr(last, srt.field), last.id
                )
                if more
                else None
            )
            return Page[Workflow](
                items=items, total=total, has_more=more, total_exact=exact, next_cursor=cursor
            )

        return await self._cache.warm(tenant, "list", _json(args[3:]), load)

    def _filter(self, filter: Any) -> dict[str, Any]:
        flt = _parse(WorkflowFilter, filter).model_dump(mode="json", exclude_none=True)
        lim.check_filter(flt, self._lim)
        return flt

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
        if not isinstance(field, str) or field not in FIND_FIELDS:
            raise DBALError(
                ErrorCode.VALIDATION_ERROR,
                f"find_by_field supports {', '.join(sorted(FIND_FIELDS))}, not {field!r}",
                {"field": "field", "limit": "type"},
            )
        limit = self._limit(limit, 1000)
        if field == "tags" and isinstance(value, str):
            value = [value]
        return (
            await self._list({field: value}, {"field": "name", "direction": "asc"}, 0, limit)
        ).items

    async def search(self, text: str, limit: int = 10) -> builtins.list[Workflow]:
        """Best matches first: full text over name, description and tags (web-search syntax),
        then names similar to ``text`` (tolerates a typo)."""
        text = lim.check_search(text, "search", self._lim)
        limit = self._limit(limit, 100)

        async def load() -> builtins.list[Workflow]:
            rows = await self._db.fetch(q.SEARCH, *self._ctx, text, limit)
            return [_workflow(r) for r in rows]

        return await self._cache.warm(self._scope.tenant_id, "search", _json([text, limit]), load)

    async def get_execution_stats(
        self, workflow_id: Any, start: Any = None, end: Any = None
    ) -> ExecutionStats:
        """Statistics of the executions started in [start, end): times as aware datetimes,
        ISO-8601 text with an offset, or epoch milliseconds."""
        wid = self._id(workflow_id)
        start = lim.optional_timestamp(start, "start")
        end = lim.optional_timestamp(end, "end")

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
        start: Any = None,
        end: Any = None,
        status: str | None = None,
        limit: int = 100,
    ) -> builtins.list[Execution]:
        wid = self._id(workflow_id)
        start = lim.optional_timestamp(start, "start")
        end = lim.optional_timestamp(end, "end")
        if status is not None and (not isinstance(status, str) or status not in EXECUTION_STATUSES):
            raise lim.refuse("status", f"unknown execution status {status!r}")
        limit = self._limit(limit, 10000)
        rows = await self._db.fetch(q.EXECUTIONS, *self._ctx, wid, start, end, status, limit)
        return [Execution.model_validate(dict(r)) for r in rows]

    async def audit(self, workflow_id: Any = None, limit: int = 100) -> builtins.list[AuditEntry]:
        wid = None if workflow_id is None else self._id(workflow_id)
        limit = self._limit(limit, 10000)
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
        parsed = [self._create_input(i) for i in lim.items(inputs, "inputs")]
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
        inp = self._checked(UpdateWorkflowInput, value)
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
        expected_version = lim.optional_integer(expected_version, "expected_version", 1, INT4_MAX)
        patch = self._patch(input)
        return await self._apply(wid, patch, expected_version)

    async def _apply(
        self, wid: UUID, patch: dict[str, Any], expected_version: int | None
    ) -> Workflow:
        # Without an expected version, a definition change is validated against the row read
        # and written only if that row is still current; a concurrent writer makes it read and
        # validate again. Each conflict means another writer committed, so contention among N
        # writers settles within N rounds: the cap only guards against a runaway.
        for attempt in range(APPLY_ATTEMPTS):
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
                    and attempt < APPLY_ATTEMPTS - 1
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
        """Archive the workflow: True when archived; False when there was no such live workflow
        (or another tenant's). It disappears from every read; its history, executions, roll-ups
        and audit stay, and ``unarchive`` brings it back. Only an operator removes data
        (``pydbal purge``)."""
        wid = _uuid(workflow_id)
        if wid is None:
            return False
        deleted = bool(await self._db.fetchval(q.DELETE, *self._ctx, wid))
        if deleted:
            await self._invalidate(wid)
        return deleted

    async def unarchive(self, workflow_id: Any) -> Workflow | None:
        """Bring an archived workflow back, with its id, history and executions; None when the
        tenant has no archived workflow with this id. If a live workflow took its name meanwhile,
        it comes back renamed to the next free ``"<name> (n)"``. Same role rule as ``update``."""
        wid = _uuid(workflow_id)
        if wid is None:
            return None
        rec = await self._db.fetchrow(q.UNARCHIVE, *self._ctx, wid)
        if rec is None:
            return None
        await self._invalidate(wid)
        return _workflow(rec)

    async def upsert(
        self,
        name: str,
        create: CreateWorkflowInput | Mapping[str, Any],
        update: UpdateWorkflowInput | Mapping[str, Any],
    ) -> Workflow:
        """Update the workflow named ``name`` with ``update``, or create it from ``create``."""
        name = lim.text(name, "name", self._lim.name_length, "name_length")
        create_data = self._create_input({**_as_dict(create, "create"), "name": name})
        patch = self._patch(update)
        for _ in range(3):
            # Read past the caches: after losing a race to create, the name's row is committed
            # (the unique violation waits for the winner), and only a fresh read is sure to see it.
            with bypass():
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
        flt = self._filter(filter)
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
        flt = self._filter(filter)
        count = int(await self._db.fetchval(q.DELETE_MANY, *self._ctx, _json(flt)))
        await self._invalidate_tenant()
        return count

    async def restore(self, workflow_id: Any, version: int) -> Workflow:
        """Make a new version equal to ``version`` from the history (name and definition)."""
        wid = self._id(workflow_id)
        version = lim.integer(version, "version", 1, INT4_MAX)
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
        timeout_ms = self._lease(timeout_ms)
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
        lock = self._lock(lock)
        timeout_ms = self._lease(timeout_ms)
        expires = await self._db.fetchval(q.RENEW_LOCK, *self._ctx, wid, lock.token, timeout_ms)
        if expires is None:
            return None
        await self._invalidate(wid)  # lock_expires_at changed
        return Lock(workflow_id=wid, token=lock.token, expires_at=expires)

    async def release_lock(self, workflow_id: Any, lock: Lock | None = None) -> bool:
        """Release by the holder (with its lock) or by admin and up (without)."""
        wid = self._id(workflow_id)
        lock = None if lock is None else self._lock(lock)
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
        execution_id: str | int | None = None,
        lock: Lock | None = None,
        started_at: Any = None,
        error: str | None = None,
    ) -> RecordedExecution:
        """Record one execution (counted once per execution id; see sql/41_record_execution.sql).
        ``started_at``: an aware datetime, ISO-8601 text with an offset or epoch milliseconds;
        an integer ``execution_id`` is stored as its decimal text."""
        wid = self._id(workflow_id)
        if not isinstance(status, str) or status not in EXECUTION_STATUSES:
            raise lim.refuse("status", f"unknown execution status {status!r}")
        limits = self._lim
        duration = None
        if execution_time_ms is not None:
            duration = lim.number(
                execution_time_ms,
                "execution_time_ms",
                0,
                limits.duration_max_ms,
                "duration_max_ms",
            )
        if isinstance(execution_id, int) and not isinstance(execution_id, bool):
            execution_id = str(execution_id)
        if execution_id is not None:
            execution_id = lim.text(
                execution_id, "execution_id", limits.execution_id_length, "execution_id_length"
            )
        token = None if lock is None else self._lock(lock).token
        started = lim.optional_timestamp(started_at, "started_at")
        error = lim.optional_text(error, "error", limits.error_length, "error_length")
        row = await self._db.fetchrow(
            q.RECORD_EXECUTION,
            *self._ctx,
            wid,
            status,
            duration,
            execution_id,
            token,
            started,
            error,
        )
        assert row is not None
        await self._cache.invalidate(self._scope.tenant_id, [str(wid)], lists=True)
        return RecordedExecution(execution_id=row["execution_id"], outcome=row["outcome"])

    @contextlib.asynccontextmanager
    async def executing(
        self,
        workflow_id: Any,
        *,
        timeout_ms: int = 30000,
        deadline_ms: int | None = None,
        record: Literal["sync", "batched"] = "sync",
    ) -> AsyncIterator[Run]:
        """The design's safe execution: lock (4042 disabled, 4243 not valid, 4231 held by
        someone), renew while the block runs, record success — or failure when it raises, or
        timeout when it raises TimeoutError or runs past ``deadline_ms`` (then the block is
        cancelled and TimeoutError raised) — with the measured duration, and always release.
        ``timeout_ms`` is the lease, renewed every third of it. ``record="batched"`` queues the
        result on the database's shared recorder (``db.shared_recorder``) instead of awaiting a
        round trip, and releases the lock after the recorder wrote it (so the token is still
        current); ``run.recorded`` then stays None and the execution id is ``run.execution_id``."""
        if record not in ("sync", "batched"):
            raise DBALError(ErrorCode.VALIDATION_ERROR, "record must be 'sync' or 'batched'")
        wid = self._id(workflow_id)
        timeout_ms = self._lease(timeout_ms)
        if deadline_ms is not None:
            deadline_ms = lim.integer(deadline_ms, "deadline_ms", 1, self._lim.duration_max_ms)
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
        raising = False  # an exception (the block's or the record's) is on its way out
        try:
            try:
                if deadline_ms is None:
                    yield run
                else:
                    async with asyncio.timeout(deadline_ms / 1000):
                        yield run
            except (Exception, asyncio.CancelledError) as exc:
                # the block failed, timed out or was cancelled: record that, then re-raise the
                # block's own error whatever recording does (a failed record is logged)
                raising = True
                status = "timeout" if isinstance(exc, TimeoutError) else "failure"
                run.error = f"{type(exc).__name__}: {exc}"
                renewer.cancel()
                try:
                    await self._record_run(run, record, status, t0, started)
                except Exception:
                    log.warning(
                        "executing(%s): recording the %s failed", wid, status, exc_info=True
                    )
                raise
            renewer.cancel()
            try:
                await self._record_run(run, record, "success", t0, started)
            except BaseException:
                raising = True
                raise
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await renewer
            try:
                await self.release_lock(wid, run.lock)
            except DBALError:
                pass  # the lease was lost or taken over: nothing of ours to release
            except Exception:
                if not raising:
                    raise
                # never mask the error already on its way out
                log.warning("executing(%s): releasing the lock failed", wid, exc_info=True)

    async def _record_run(
        self, run: Run, record: str, status: str, t0: float, started: datetime
    ) -> None:
        elapsed = (time.perf_counter() - t0) * 1000
        if record == "sync":
            run.recorded = await self.record_execution(
                run.workflow_id, status, elapsed, run.execution_id, run.lock, started, run.error
            )
            return
        # Batched: queue it, then wait until the batch holding it is written, because the lock
        # is released right after and a release before the write would make the token stale.
        # The caller awaits one batch (at most max_delay + a round trip), not its own round trip.
        recorder = self._scope.db.shared_recorder
        await recorder.record(
            self._scope,
            run.workflow_id,
            status,
            elapsed,
            execution_id=run.execution_id,
            lock=run.lock,
            started_at=started,
            error=run.error,
        )
        await recorder.wait_written()

    # -- clone, export, import ----------------------------------------------------------------
    async def clone(
        self, workflow_id: Any, new_name: str | None = None, enabled: bool = False
    ) -> Workflow:
        """A copy with fresh counters, named ``new_name`` or "<name> (Clone)"; a taken name
        becomes "<name> (2)", "(3)", …"""
        self._require_create()
        new_name = lim.optional_text(new_name, "new_name", self._lim.name_length, "name_length")
        enabled = lim.boolean(enabled, "enabled")
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
        ids = [self._id(i) for i in lim.items(workflow_ids, "workflow_ids")]
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
        name = lim.optional_text(name, "name", self._lim.name_length, "name_length")
        enabled = lim.boolean(enabled, "enabled")
        strict = lim.boolean(strict, "strict")
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
        lim.raw_size(data, "data", self._lim.import_bytes, "import_bytes")
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
            inp = self._checked(
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
            if "limit" in exc.details:  # a limit, not the format: VALIDATION_ERROR, with where
                raise DBALError(
                    exc.code, f"workflow {index}: {exc.message}", {**exc.details, "index": index}
                ) from None
            raise DBALError(
                ErrorCode.INVALID_EXPORT_FORMAT,
                f"workflow {index}: {exc.message}",
                {"reason": exc.message, "index": index, **exc.details},
            ) from None
        return inp, report


def _as_dict(value: Any, field: str) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_unset=True)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise lim.refuse(field, f"{field} must be a mapping, not {type(value).__name__}")
    return dict(value)
