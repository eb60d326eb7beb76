"""Moving workflows of :class:`pydbal.workflows.Workflows`: clone, export (bundles in the
``pydbal.workflow/v1`` format) and import (every shape ``pydbal.formats.parse_import`` accepts).

Each write invalidates what ``invalidation.INVALIDATES`` names for it.
"""

from __future__ import annotations

import asyncio
import builtins
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson

from pydbal import gcpause
from pydbal import limits as lim
from pydbal import queries as q
from pydbal.errors import DBALError, ErrorCode
from pydbal.formats import (
    DEFINITION_FIELDS,
    Definition,
    build_bundle,
    derive_name,
    in_workflow,
    parse_import,
)
from pydbal.instrument import operations
from pydbal.models import CreateWorkflowInput, ExportBundle, Workflow
from pydbal.validation import VALIDATOR_VERSION, ValidationReport
from pydbal.workflows._base import _json, _parse, _validate, _workflow, batch_sizes
from pydbal.workflows.reads import Reads

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # a placeholder exportedAt, replaced by the stamp


def _report(src: Workflow) -> dict[str, Any]:
    """The validation report of a workflow's bundle: the stored one while that is current (not
    stale, made by this validator), else computed now."""
    report: dict[str, Any] | None = None
    if src.validation_status in ("valid", "invalid") and src.validator_version == VALIDATOR_VERSION:
        report = src.validation_errors
    if report is None:
        computed = _validate(src.nodes, src.edges, src.variables, src.config)
        report = computed.model_dump(mode="json", by_alias=True)
    return report


def _fields(src: Workflow) -> dict[str, Any]:
    """The definition fields of a stored workflow, the values themselves (what its
    ``model_dump()`` gives for them, without copying every node)."""
    return {key: getattr(src, key) for key in DEFINITION_FIELDS}


def _bundle(src: Workflow, exported_at: datetime) -> ExportBundle:
    """The export bundle of a workflow."""
    return ExportBundle.model_validate(build_bundle(_fields(src), _report(src), exported_at))


def _stamp(exported_at: datetime) -> str:
    """``exportedAt`` as the JSON dump of an :class:`ExportBundle` writes it."""
    bundle = ExportBundle.model_validate(build_bundle({}, None, exported_at))
    return str(bundle.model_dump(mode="json", by_alias=True)["exportedAt"])


@operations  # every public method: refused once closing, counted in flight, traced when on
class Transfer(Reads):
    """Cloning, exporting and importing workflows (reads through :class:`Reads`)."""

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
        await self._after_write("clone", [created.id])
        return created

    async def export(self, workflow_id: Any) -> ExportBundle:
        """``{format: "pydbal.workflow/v1", exportedAt, workflow, validationReport}``."""
        return _bundle(await self._existing(workflow_id), datetime.now(UTC))

    async def export_many(self, workflow_ids: Iterable[Any]) -> builtins.list[ExportBundle]:
        """Bundles of many workflows, in the order given, read up to 1000 per statement. Any id
        that is missing (or another tenant's) is WORKFLOW_NOT_FOUND, listing them all."""
        with gcpause.paused():
            now = datetime.now(UTC)
            return [_bundle(w, now) for w in await self._exported(workflow_ids)]

    async def export_json(self, workflow_ids: Iterable[Any]) -> bytes:
        """The bundles of :meth:`export_many` as one JSON array (UTF-8): byte for byte
        ``orjson.dumps([b.model_dump(mode="json", by_alias=True) for b in bundles])``, built
        from the stored rows without the models in between. What a file or a response body
        holds; :meth:`import_many` reads it back."""
        with gcpause.paused():
            found = await self._exported(workflow_ids)
            stamp = _stamp(datetime.now(UTC))
            bundles = []
            for w in found:
                bundle = build_bundle(_fields(w), _report(w), EPOCH)
                bundle["exportedAt"] = stamp
                bundles.append(bundle)
            return orjson.dumps(bundles)

    async def _exported(self, workflow_ids: Iterable[Any]) -> builtins.list[Workflow]:
        """The workflows named, in the order given, as stored now (read past the cache, up to
        1000 per statement); WORKFLOW_NOT_FOUND (listing them all) for any id missing or another
        tenant's."""
        ids = [self._id(i) for i in lim.items(workflow_ids, "workflow_ids")]
        found: dict[UUID, Workflow] = {}
        # ids per statement: api_list's largest page (the hard page_size, as find_by_field)
        per = max(1, min(lim.HARD.page_size, self._lim.filter_values))
        for start in range(0, len(ids), per):
            chunk = list(dict.fromkeys(ids[start : start + per]))
            flt = _json(self._filter({"ids": chunk}))
            rows = await self._db.fetch(
                q.LIST, *self._ctx, flt, "created_at", False, 0, len(chunk), None, None
            )
            found.update((r["id"], _workflow(r)) for r in rows if r["id"] is not None)
        missing = [str(i) for i in ids if i not in found]
        if missing:
            raise DBALError(
                ErrorCode.WORKFLOW_NOT_FOUND,
                f"{len(missing)} workflow(s) not found",
                {"ids": missing},
            )
        return [found[i] for i in ids]

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
        with gcpause.paused():
            created = await self._import(data, name, enabled, strict, source_name)
        await self._after_write("import", [w.id for w in created])
        return created

    async def _import(
        self, data: Any, name: str | None, enabled: bool, strict: bool, source_name: str | None
    ) -> builtins.list[Workflow]:
        """The body of :meth:`import_many` once ``data`` is bytes, text or JSON data."""
        definitions = parse_import(data, source_name=source_name, limits=self._lim)
        if name is not None and len(definitions) > 1:
            raise DBALError(ErrorCode.VALIDATION_ERROR, "name applies to a single workflow only")
        sizes = batch_sizes(len(definitions))
        starts = [sum(sizes[:k]) for k in range(len(sizes))]

        def prepare(k: int) -> tuple[Any, ...]:
            """Batch k checked, validated (refused when ``strict`` and invalid) and encoded."""
            inputs: builtins.list[CreateWorkflowInput] = []
            reports: builtins.list[ValidationReport] = []
            for index in range(starts[k], starts[k] + sizes[k]):
                d = definitions[index]
                inp, report = self._import_input(d, name, enabled, source_name, index)
                if strict and not report.valid:
                    raise DBALError(
                        ErrorCode.IMPORT_VALIDATION_FAILED,
                        f"workflow {inp.name!r} is not valid",
                        {"index": index, "report": report.model_dump(mode="json", by_alias=True)},
                    )
                inputs.append(inp)
                reports.append(report)
            return self._insert_args(inputs, True, reports)

        async def run(conn: Any, args: tuple[Any, ...]) -> builtins.list[Any]:
            return list(await conn.fetch(q.INSERT, *args))

        # one transaction, batches prepared while the one before is stored (_pipelined); the
        # names are chosen as by _insert_renaming, and chosen again after a concurrent writer
        # took one (each batch sees the names of those before it: same transaction)
        prepared: builtins.list[tuple[Any, ...]] = []
        for attempt in range(5):
            try:
                results = await self._pipelined(len(sizes), prepare, run, prepared)
                break
            except DBALError as exc:
                if exc.code != ErrorCode.CONFLICT or attempt == 4:
                    raise
        return [_workflow(r) for rows in results for r in rows]

    def _import_input(
        self, d: Definition, name: str | None, enabled: bool, source_name: str | None, index: int
    ) -> tuple[CreateWorkflowInput, ValidationReport]:
        """The checked input and validation report of the ``index``-th imported definition; a
        bad one is INVALID_EXPORT_FORMAT (a limit exceeded: VALIDATION_ERROR), naming it."""
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
                raise in_workflow(exc, index) from None
            raise DBALError(
                ErrorCode.INVALID_EXPORT_FORMAT,
                f"workflow {index}: {exc.message}",
                {"reason": exc.message, "index": index, **exc.details},
            ) from None
        return inp, report
