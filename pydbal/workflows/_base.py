"""The base of :class:`pydbal.workflows.Workflows`: the tenant scope it works in, the coercion
of caller arguments into checked values, the building of Workflow models from rows, and the
helpers several operation groups share (load, insert, invalidate).

Module-level functions are pure (no I/O); ``_Base`` holds the scope and the helpers that need it.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import asyncpg
import orjson
from pydantic import BaseModel, ValidationError

from pydbal import limits as lim
from pydbal import queries as q
from pydbal.errors import DBALError, ErrorCode
from pydbal.models import (
    ADMIN_ROLES,
    EXECUTION_STATUSES,
    CreateWorkflowInput,
    Lock,
    UpdateWorkflowInput,
    Workflow,
)
from pydbal.validation import VALIDATOR_VERSION, ValidationReport, validate_coerced
from pydbal.workflows.invalidation import after_write

if TYPE_CHECKING:
    from pydbal.database import Tenant

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")

DEFINITION_FIELDS = ("nodes", "edges", "variables")  # a change of these (or config) re-validates
STATUSES = frozenset(EXECUTION_STATUSES)  # an execution's status (models.ExecutionStatus)
TOKEN_MAX = 2**63 - 1  # a fencing token is a bigint
BATCH_ROWS = 1000  # the most rows one statement of a bulk write carries
BATCH_MIN_ROWS = 50  # the fewest rows of a statement of a bulk write (but the last)
# Fields that cannot be NULL: None in an update means "leave unchanged".
_NOT_NULL = frozenset(
    {"name", "nodes", "edges", "enabled", "variables", "config", "tags", "category"}
)

log = logging.getLogger("pydbal.workflows")


def _json(value: Any) -> str:
    """``value`` as JSON text (for a jsonb parameter)."""
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
    """``value`` as a UUID, or None when it cannot name a workflow."""
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
    handling (every field is present): about 2 µs instead of 13 µs a row, on every read. It sets
    pydantic's instance attributes itself; ``tests/unit/test_model_building.py`` pins every
    behaviour relied on (equality, fields set, dumps, copies, round trips)."""
    obj: Workflow = _new(Workflow)
    _set(obj, "__dict__", dict(zip(_WORKFLOW_FIELDS, rec.values(), strict=False)))
    _set(obj, "__pydantic_fields_set__", set(_WORKFLOW_FIELDS_SET))
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj


def _status(value: Any) -> str:
    """An execution status (VALIDATION_ERROR for anything else)."""
    if not isinstance(value, str) or value not in STATUSES:
        raise lim.refuse("status", f"unknown execution status {value!r}")
    return value


def _report_status(report: ValidationReport) -> tuple[str, str]:
    """The stored form of a report: its status ("valid"/"invalid") and its JSON text."""
    return (
        "valid" if report.valid else "invalid",
        _json(report.model_dump(mode="json", by_alias=True)),
    )


def _settings(config: Mapping[str, Any] | None) -> Any:
    """The validator settings of a workflow's config (``config.settings``), if a mapping."""
    settings = (config or {}).get("settings")
    return settings if isinstance(settings, dict) else None


def _validate(
    nodes: Any, edges: Any, variables: Any, config: Mapping[str, Any] | None
) -> ValidationReport:
    """Validate a definition held by a model or a stored workflow (already plain JSON data)."""
    return validate_coerced(nodes, edges, variables, _settings(config) or {})


#: Whether bulk transfers (create_many, import_many, export_many/export_json) pause Python's
#: cyclic garbage collector while they run (see :func:`gc_paused`). Set False to keep it running.


def batch_sizes(n: int) -> builtins.list[int]:
    """How a bulk write of ``n`` rows is split into statements: a first batch of about n/7 rows
    (at least BATCH_MIN_ROWS), then each twice the one before (at most BATCH_ROWS) until all are
    placed; 1000 rows are 143, 286 and 571. Python prepares a batch while the server stores the
    one before (``_Base._pipelined``), and the server takes longer per row than Python: a small
    first batch starts the server early, and each next batch is ready by the time it is due."""
    sizes: builtins.list[int] = []
    size = max(BATCH_MIN_ROWS, -(-n // 7))
    left = n
    while left > 0:
        take = min(size, left, BATCH_ROWS)
        sizes.append(take)
        left -= take
        size *= 2
    return sizes or [0]


def _not_found(shown: str) -> DBALError:
    """WORKFLOW_NOT_FOUND (4041) for the id shown as ``shown``: absent, archived, another
    tenant's, or not an id at all look the same to the caller."""
    return DBALError(ErrorCode.WORKFLOW_NOT_FOUND, "workflow not found", {"id": shown})


def _as_dict(value: Any, field: str) -> dict[str, Any]:
    """A model or mapping argument named ``field`` as a dict of the fields it sets."""
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_unset=True)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise lim.refuse(field, f"{field} must be a mapping, not {type(value).__name__}")
    return dict(value)


class _Base:
    """The scope shared by every operation group: tenant, user and role fixed by ``scope``."""

    def __init__(self, scope: Tenant) -> None:
        self._scope = scope
        self._db = scope.db
        self._ctx = scope.ctx
        self._cache = scope.db.cache
        self._lim = scope.db.limits

    # -- helpers ------------------------------------------------------------------------------
    @property
    def _is_admin(self) -> bool:
        """The caller's role may create workflows and release others' locks."""
        return self._scope.role in ADMIN_ROLES

    def _require_create(self) -> None:
        """FORBIDDEN unless the caller's role may create workflows."""
        if not self._is_admin:
            raise DBALError(
                ErrorCode.FORBIDDEN,
                f"role {self._scope.role} may not create workflows (admin, god or supergod may)",
            )

    def _check_tenant(self, tenant_id: str | None) -> None:
        """TENANT_MISMATCH when a payload names a tenant other than the caller's."""
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
            raise _not_found(shown)
        return parsed

    async def _after_write(self, op: str, ids: Iterable[Any] = ()) -> None:
        """Invalidate what the write ``op`` makes stale (``invalidation.INVALIDATES``)."""
        await after_write(self._cache, self._scope.tenant_id, op, ids)

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
        """A checked create input of the caller's tenant."""
        inp = self._checked(CreateWorkflowInput, value)
        self._check_tenant(inp.tenant_id)
        return inp

    def _patch(self, value: Any) -> dict[str, Any]:
        """The fields an update input sets, as JSON data (a None for a NOT NULL field: unset)."""
        inp = self._checked(UpdateWorkflowInput, value)
        self._check_tenant(inp.tenant_id)
        patch = inp.model_dump(mode="json", exclude_unset=True, exclude={"tenant_id"})
        return {k: v for k, v in patch.items() if not (v is None and k in _NOT_NULL)}

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
        """A lease length in milliseconds, within the limits lease_min_ms..lease_max_ms."""
        return lim.integer(
            timeout_ms, "timeout_ms", self._lim.lease_min_ms, self._lim.lease_max_ms, "lease_ms"
        )

    def _limit(self, value: Any, maximum: int) -> int:
        """A page size or row limit of 1..``maximum``."""
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
        """Insert ``inputs`` (on ``conn`` when given) and return the stored workflows."""
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

    async def _pipelined(
        self,
        batches: int,
        prepare: Callable[[int], tuple[Any, ...]],
        run: Callable[[asyncpg.Connection, tuple[Any, ...]], Awaitable[R]],
        prepared: builtins.list[tuple[Any, ...]],
    ) -> builtins.list[R]:
        """``run(conn, prepare(k))`` for k = 0 … batches - 1 in one transaction, all or nothing,
        with batch k + 1 prepared (the caller's input parsed, checked, validated and encoded:
        Python's work) while the server executes batch k (sent, not yet answered). The work of
        both overlaps on two cores instead of following one another.

        Errors are exactly those of checking every input before the first statement: a refusal
        of any input (``prepare`` raises it) wins over a database error, so when a statement
        fails, or the connection does, the inputs not prepared yet are checked before the
        error is raised. ``prepared`` keeps the prepared batches (a caller that retries the
        transaction passes the same list and nothing is prepared twice)."""

        def upto(k: int) -> None:
            while len(prepared) <= k:
                prepared.append(prepare(len(prepared)))

        results: builtins.list[R] = []
        try:
            upto(0)
            async with self._db.transaction() as conn:
                for k in range(batches):
                    task = asyncio.ensure_future(run(conn, prepared[k]))
                    await asyncio.sleep(0)  # the task sends the statement: the server starts
                    if k + 1 < batches:
                        try:
                            upto(k + 1)
                        except BaseException:
                            # the statement must end before the transaction can roll back
                            with contextlib.suppress(Exception):
                                await task
                            raise
                    results.append(await task)
        except Exception:
            upto(batches - 1)  # a refusal of any input (raised here) comes first
            raise
        return results

    async def _load(self, workflow_id: UUID) -> Workflow | None:
        """The workflow as stored now (no cache), or None when it is not visible."""
        row = await self._db.fetchrow(q.GET, *self._ctx, workflow_id)
        return _workflow(row) if row is not None else None

    async def _existing(self, workflow_id: Any) -> Workflow:
        """The one "visible or WORKFLOW_NOT_FOUND (4041)" path: the workflow as stored now, or
        the error when the id names none the caller may see."""
        wid = self._id(workflow_id)
        found = await self._load(wid)
        if found is None:
            raise _not_found(str(wid))
        return found
