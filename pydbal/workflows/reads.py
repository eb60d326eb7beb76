"""The reads of :class:`pydbal.workflows.Workflows`: one workflow, list pages (offset and
keyset), finds, search, execution statistics and history, audit and previous versions.

``get``, ``list`` (and the finds built on it), ``search`` and ``get_execution_stats`` answer
through the cache; what each write makes stale is in ``invalidation.py``.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from pydbal import cursors
from pydbal import limits as lim
from pydbal import queries as q
from pydbal.errors import DBALError, ErrorCode
from pydbal.instrument import operations
from pydbal.models import (
    AuditEntry,
    Execution,
    ExecutionStats,
    Page,
    Sort,
    Workflow,
    WorkflowFilter,
    WorkflowVersion,
)
from pydbal.workflows._base import _Base, _json, _parse, _status, _uuid, _workflow

FIND_FIELDS = frozenset({"name", "created_by", "category", "tags"})


@operations  # every public method: refused once closing, counted in flight, traced when on
class Reads(_Base):
    """Reading workflows, their executions, audit and history."""

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
        """A page of workflows sorted with a stable tie-break on id; ``limit`` from 1 to the
        ``page_size`` limit (100 unless configured).

        ``after``: the ``next_cursor`` of the previous page (same filter and sort, else
        VALIDATION_ERROR): a keyset page, as fast at any depth and unshifted by concurrent
        inserts and deletes. ``page``: the offset form, kept for compatibility (with ``after``,
        only page 1)."""
        window = self._lim.list_window
        page = lim.integer(page, "page", 1, window, "list_window")
        limit = self._limit(limit, self._lim.page_size)
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
        """The page of ``limit`` rows at ``offset`` (or after the cursor ``after``), cached in
        the warm tier under the tenant's list generation."""
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
            """The page from the database (on a cache miss)."""
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
        """A checked filter as JSON data (unset fields left out)."""
        flt = _parse(WorkflowFilter, filter).model_dump(mode="json", exclude_none=True)
        lim.check_filter(flt, self._lim)
        return flt

    async def find_first(
        self,
        filter: WorkflowFilter | Mapping[str, Any] | None = None,
        sort: Sort | Mapping[str, Any] | None = None,
    ) -> Workflow | None:
        """The first workflow of ``list(filter, sort)``, or None when none matches."""
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
        limit = self._limit(limit, lim.HARD.page_size)
        if field == "tags" and isinstance(value, str):
            value = [value]
        return (
            await self._list({field: value}, {"field": "name", "direction": "asc"}, 0, limit)
        ).items

    async def search(self, text: str, limit: int = 10) -> builtins.list[Workflow]:
        """Best matches first: full text over name, description and tags (web-search syntax),
        then names similar to ``text`` (tolerates a typo)."""
        text = lim.check_search(text, "search", self._lim)
        limit = self._limit(limit, self._lim.page_size)

        async def load() -> builtins.list[Workflow]:
            """The matches from the database (on a cache miss)."""
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
            """The statistics from the database (on a cache miss)."""
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
        """The workflow's executions started in [start, end), newest first, at most ``limit``
        (1-10000), optionally only those with ``status``."""
        wid = self._id(workflow_id)
        start = lim.optional_timestamp(start, "start")
        end = lim.optional_timestamp(end, "end")
        if status is not None:
            status = _status(status)
        limit = self._limit(limit, 10000)
        rows = await self._db.fetch(q.EXECUTIONS, *self._ctx, wid, start, end, status, limit)
        return [Execution.model_validate(dict(r)) for r in rows]

    async def audit(self, workflow_id: Any = None, limit: int = 100) -> builtins.list[AuditEntry]:
        """The tenant's audit entries (of one workflow when given), newest first, at most
        ``limit`` (1-10000)."""
        wid = None if workflow_id is None else self._id(workflow_id)
        limit = self._limit(limit, 10000)
        rows = await self._db.fetch(q.AUDIT, *self._ctx, wid, limit)
        return [AuditEntry.model_validate(dict(r)) for r in rows]

    async def history(self, workflow_id: Any) -> builtins.list[WorkflowVersion]:
        """Previous definitions, newest first."""
        rows = await self._db.fetch(q.HISTORY, *self._ctx, self._id(workflow_id))
        return [WorkflowVersion.model_validate(dict(r)) for r in rows]
