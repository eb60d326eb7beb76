"""Checks of the workflow variables: declarations of a known type whose default matches it
(``INVALID_VARIABLE_TYPE``), and every ``$workflow.variables.x`` reference declared
(``MISSING_VARIABLE``)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import orjson

from pydbal.validation.coerce import json_kind
from pydbal.validation.report import Collector, is_number, quote_key

VARIABLE_TYPES: frozenset[str] = frozenset(
    {"string", "number", "boolean", "array", "object", "date", "any"}
)

_VARIABLE_REF = re.compile(
    r"""\$workflow\.variables(?:\.([A-Za-z_$][\w$]*)|\[\s*(?:"([^"]*)"|'([^']*)')\s*\])"""
)


def _default_matches(var_type: str, default: Any) -> bool:
    """Whether ``default`` is a value of ``var_type`` (a date: ISO-8601 text)."""
    if var_type == "any":
        return True
    if var_type == "string":
        return isinstance(default, str)
    if var_type == "number":
        return is_number(default)
    if var_type == "boolean":
        return isinstance(default, bool)
    if var_type == "array":
        return isinstance(default, list)
    if var_type == "object":
        return isinstance(default, dict)
    if var_type == "date":
        if not isinstance(default, str):
            return False
        try:
            datetime.fromisoformat(default)
        except ValueError:
            return False
        return True
    return False


def check_variables(variables: dict[str, Any], out: Collector) -> None:
    """INVALID_VARIABLE_TYPE for a declaration whose ``type`` is not one of
    :data:`VARIABLE_TYPES` or whose non-null ``default``/``defaultValue`` does not match it. A
    declaration that is not an object is its own default, of type ``any``: never an error."""
    for name, decl in variables.items():
        base = f"variables[{quote_key(name)}]"
        if not isinstance(decl, dict):
            continue  # a bare value: its own default, type "any"
        var_type = decl.get("type", "any")
        if not isinstance(var_type, str) or var_type not in VARIABLE_TYPES:
            out.error(
                "INVALID_VARIABLE_TYPE",
                f"{base}.type",
                f"variable {name!r} has type {var_type!r};"
                f" expected one of {sorted(VARIABLE_TYPES)}",
            )
            continue
        for key in ("default", "defaultValue"):
            if key in decl and decl[key] is not None and not _default_matches(var_type, decl[key]):
                out.error(
                    "INVALID_VARIABLE_TYPE",
                    f"{base}.{key}",
                    f"default of variable {name!r} is {json_kind(decl[key])}, not a {var_type}",
                )


def _without_references(nodes: list[Any]) -> bool:
    """True when no string of ``nodes`` can hold "$workflow" (False when it cannot be encoded:
    the walk decides then)."""
    try:
        return b"$workflow" not in orjson.dumps(nodes)
    except TypeError:  # orjson.JSONEncodeError: e.g. integers beyond 64 bits
        return False


def check_variable_refs(nodes: list[Any], variables: dict[str, Any], out: Collector) -> None:
    """MISSING_VARIABLE for each ``$workflow.variables.x`` or ``$workflow.variables["x"]`` in
    any string of a node (walked iteratively, depth first) whose ``x`` is not declared.

    Most definitions reference no variable: when the nodes' JSON text holds no "$workflow" at
    all (a string holding it would show it verbatim), there is nothing to find and no walk."""
    if _without_references(nodes):
        return
    for i, node in enumerate(nodes):
        work: list[tuple[str, Any]] = [(f"nodes[{i}]", node)]
        while work:
            path, value = work.pop()
            if isinstance(value, str):
                if "$workflow" not in value:
                    continue
                for match in _VARIABLE_REF.finditer(value):
                    name = match.group(1) or match.group(2) or match.group(3) or ""
                    if name not in variables:
                        out.error(
                            "MISSING_VARIABLE",
                            path,
                            f"workflow variable {name!r} is referenced but not declared",
                        )
            elif isinstance(value, dict):
                for key, item in reversed(value.items()):
                    sub = f"{path}.{key}" if key.isidentifier() else f"{path}[{quote_key(key)}]"
                    work.append((sub, item))
            elif isinstance(value, list):
                for k in range(len(value) - 1, -1, -1):
                    work.append((f"{path}[{k}]", value[k]))
