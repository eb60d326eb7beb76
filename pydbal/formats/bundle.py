"""The export bundle: ``{"format", "exportedAt", "workflow", "validationReport"}``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from pydbal.formats.definition import DEFINITION_FIELDS, EXPORT_FORMAT, Definition


def build_bundle(
    workflow: Mapping[str, Any] | Definition,
    validation_report: dict[str, Any] | None,
    exported_at: datetime,
) -> dict[str, Any]:
    """An export bundle: ``{"format", "exportedAt", "workflow", "validationReport"}``.

    ``workflow`` holds snake_case definition fields (a row dict or a :class:`Definition`); only
    those fields are exported, so ids, tenant, counters, lock and validation fields never leave.
    A naive ``exported_at`` is taken as UTC; it is written in ISO 8601 with its offset.
    """
    fields = asdict(workflow) if isinstance(workflow, Definition) else workflow
    if exported_at.tzinfo is None or exported_at.utcoffset() is None:
        exported_at = exported_at.replace(tzinfo=UTC)
    defaults: dict[str, Any] = {
        "name": None,
        "description": None,
        "nodes": [],
        "edges": {},
        "variables": {},
        "config": {},
        "tags": [],
        "category": None,
        "enabled": None,
    }
    body: dict[str, Any] = {}
    for key in DEFINITION_FIELDS:
        value = fields.get(key)
        body[key] = defaults[key] if value is None else value
    return {
        "format": EXPORT_FORMAT,
        "exportedAt": exported_at.isoformat(),
        "workflow": body,
        "validationReport": validation_report,
    }
