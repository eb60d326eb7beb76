"""The single-workflow writes of :class:`pydbal.workflows.Workflows`: create, update (and
set_enabled, restore, upsert built on it), archive and unarchive, and validation (validate and
storing a result).

Each write invalidates what ``invalidation.INVALIDATES`` names for it, once it wrote.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from pydbal import limits as lim
from pydbal import queries as q
from pydbal.cache import bypass
from pydbal.errors import DBALError, ErrorCode
from pydbal.instrument import operations
from pydbal.models import CreateWorkflowInput, UpdateWorkflowInput, Workflow
from pydbal.validation import VALIDATOR_VERSION, ValidationReport
from pydbal.workflows._base import (
    DEFINITION_FIELDS,
    _as_dict,
    _json,
    _report_status,
    _uuid,
    _validate,
    _workflow,
)
from pydbal.workflows.reads import Reads

INT4_MAX = 2**31 - 1  # versions are integers
APPLY_ATTEMPTS = 100


@operations  # every public method: refused once closing, counted in flight, traced when on
class Writes(Reads):
    """Creating, changing, archiving and validating one workflow (uses ``find_first`` and
    ``history`` of :class:`Reads`)."""

    async def create(self, input: CreateWorkflowInput | Mapping[str, Any]) -> Workflow:
        """Create a workflow (admin, god, supergod). A taken name is CONFLICT."""
        self._require_create()
        inp = self._create_input(input)
        created = (await self._insert([inp], rename=False))[0]
        await self._after_write("create", [created.id])
        return created

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
        """Write ``patch`` to ``wid`` (at ``expected_version`` when given) and return the row.

        Without an expected version, a definition change is validated against the row read
        and written only if that row is still current; a concurrent writer makes it read and
        validate again. Each conflict means another writer committed, so contention among N
        writers settles within N rounds: the cap only guards against a runaway."""
        for attempt in range(APPLY_ATTEMPTS):
            version = expected_version
            vstatus: str | None = None
            verrors: str | None = None
            if any(k in patch for k in (*DEFINITION_FIELDS, "config")):
                current = await self._existing(wid)
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
            await self._after_write("update", [wid])
            return _workflow(row)
        raise DBALError(ErrorCode.CONFLICT, "workflow keeps changing; try again", {"id": str(wid)})

    async def set_enabled(self, workflow_id: Any, enabled: bool) -> Workflow:
        """Enable or disable the workflow (an update of ``enabled``; bumps ``version``)."""
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
            await self._after_write("delete", [wid])
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
        await self._after_write("unarchive", [wid])
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
                # CONFLICT: a concurrent create won the name: go round and update it instead
                if exc.code != ErrorCode.CONFLICT:
                    raise
        raise DBALError(
            ErrorCode.CONFLICT, "workflow name keeps changing; try again", {"name": name}
        )

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
        """Validate ``current`` (as read) and store the result for its version."""
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
        await self._after_write("store_validation", [current.id])
        return report
