"""The accepted shapes of an import file, each reduced to the workflow object(s) it holds: a
pydbal bundle, a MetaBuilder or n8n workflow object, an n8n database export (an array of them),
and n8n's template wrapper."""

from __future__ import annotations

from typing import Any

from pydbal.formats.definition import EXPORT_FORMAT, Definition, RefusedError
from pydbal.formats.normalize import normalize
from pydbal.validation import json_kind


def definitions(value: Any) -> list[Definition]:
    """The workflows of a parsed file: one per element of an array (a refusal names the
    element's ``index``), else the one object."""
    if isinstance(value, list):
        if not value:
            raise RefusedError("the array holds no workflow")
        result = []
        for index, element in enumerate(value):
            try:
                result.append(_one(element))
            except RefusedError as refused:
                raise RefusedError(refused.reason, **refused.extra, index=index) from None
        return result
    return [_one(value)]


def _one(value: Any) -> Definition:
    """One workflow object of any accepted shape."""
    if not isinstance(value, dict):
        raise RefusedError(f"expected a workflow object, got {json_kind(value)}")
    fmt = value.get("format")
    if fmt == EXPORT_FORMAT:
        inner = value.get("workflow")
        if not isinstance(inner, dict):
            raise RefusedError("the bundle has no 'workflow' object")
        return normalize(inner, outer=())
    if isinstance(fmt, str) and fmt.startswith("pydbal.") and "nodes" not in value:
        raise RefusedError(f"unsupported export format {fmt!r} (expected {EXPORT_FORMAT!r})")
    if "nodes" in value:
        return normalize(value, outer=())
    level1 = value.get("workflow")
    if isinstance(level1, dict):
        level2 = level1.get("workflow")
        if isinstance(level2, dict):  # n8n template API: {"workflow": {..., "workflow": {...}}}
            return normalize(level2, outer=(level1, value))
        if "nodes" in level1:  # {"workflow": {nodes, connections}}
            return normalize(level1, outer=(value,))
    raise RefusedError("no 'nodes' list")
