"""Validation of workflow definitions (nodes, edges, variables, settings).

:func:`validate_definition` never touches the database. It accepts both connection shapes found in
real files (n8n UI exports keyed by node name, MetaBuilder files keyed by node id or by name, target
lists as ``{"main": [[...]]}`` or ``{"main": {"0": [...]}}``, any output type) and returns a
:class:`ValidationReport` whose issues carry a stable ``code`` and a ``path`` into the input.

Input that is not a workflow definition at all (text that is not JSON, ``nodes`` not a list,
``edges``/``variables``/``settings`` not an object) raises
``DBALError(ErrorCode.VALIDATION_ERROR, …, {"issues": [...], "field": ...})``; nothing else is ever
raised for bad input.

Rules (bump :data:`VALIDATOR_VERSION` whenever one changes):

errors
    ``INVALID_NODES``          a node that is not an object, or lacks a non-empty string ``id``,
                               ``name`` or ``type``
    ``DUPLICATE_NODE_ID``      two nodes with the same id
    ``DUPLICATE_NODE_NAME``    two nodes with the same name
    ``INVALID_EDGES``          a malformed connection entry (wrong container, target without
                               ``node``, an output index or target ``index`` that is not a
                               non-negative integer)
    ``UNKNOWN_NODE``           a connection from or to a node that does not exist (keys and targets
                               are resolved by id first, then by name)
    ``CIRCULAR_DEPENDENCY``    a cycle (strongly connected component, self-loops included, over all
                               output types) none of whose nodes can branch
    ``MISSING_VARIABLE``       ``$workflow.variables.x`` (or ``$workflow.variables["x"]``) anywhere
                               in a node's strings while ``x`` is not declared
    ``INVALID_VARIABLE_TYPE``  a declared variable whose ``type`` is not one of
                               :data:`VARIABLE_TYPES`, or whose ``default``/``defaultValue`` does
                               not match it

warnings
    ``LOOP``                    a cycle with a node that can branch (If, Switch, Filter, condition,
                                branch, loop, splitInBatches / "Loop Over Items", or a node whose
                                connections use more than one output)
    ``ORPHANED_NODE``           a node connected to nothing (sticky notes never; a workflow with a
                                single non-sticky node never)
    ``NODE_TIMEOUT_RANGE``      a numeric node ``timeout`` (node or ``parameters``; milliseconds)
                                below 1000 or above 3 600 000
    ``EXECUTION_TIMEOUT_RANGE`` ``settings.executionTimeout`` (seconds) above 3600, or not a number,
                                or ≤ 0 other than -1 (which means "no limit")

Variables are an object keyed by name (``{"x": {"type": "number", "defaultValue": 3}}``) or a list
of declarations (``[{"name": "x", "type": "number", "default": 3}]``), which :func:`coerce_json`
normalises to the keyed form. A declaration without ``type`` is of type ``any``; a declaration that
is not an object is taken as its own default value.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from .errors import DBALError, ErrorCode

__all__ = [
    "VALIDATOR_VERSION",
    "VARIABLE_TYPES",
    "ValidationIssue",
    "ValidationReport",
    "coerce_json",
    "validate_definition",
]

VALIDATOR_VERSION: int = 1
"""Version of the rules above; stored with every result. Bump it whenever a rule changes."""

VARIABLE_TYPES: frozenset[str] = frozenset(
    {"string", "number", "boolean", "array", "object", "date", "any"}
)

NODE_TIMEOUT_MIN_MS = 1000
NODE_TIMEOUT_MAX_MS = 3_600_000
EXECUTION_TIMEOUT_MAX_S = 3600

STICKY_NOTE_TYPE = "n8n-nodes-base.stickyNote"

_FIELD_ISSUES: dict[str, str] = {
    "nodes": "INVALID_NODES",
    "edges": "INVALID_EDGES",
    "variables": "INVALID_VARIABLES",
    "config": "INVALID_CONFIG",
}

_VARIABLE_REF = re.compile(
    r"""\$workflow\.variables(?:\.([A-Za-z_$][\w$]*)|\[\s*(?:"([^"]*)"|'([^']*)')\s*\])"""
)
_TYPE_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_BRANCHING_WORDS = frozenset({"if", "switch", "filter", "condition", "branch", "loop"})


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class ValidationIssue(_Model):
    """One finding: a stable ``code``, a ``path`` into the definition, a readable ``message``."""

    code: str
    path: str
    message: str
    severity: Literal["error", "warning"]


class ValidationReport(_Model):
    """The verdict on a definition. ``valid`` is true when there is no error (warnings allowed)."""

    valid: bool
    errors: list[ValidationIssue]
    warnings: list[ValidationIssue]
    validator_version: int


# --------------------------------------------------------------------------------------------
# Input coercion


def _structural(field: str, message: str) -> DBALError:
    issue = _FIELD_ISSUES.get(field, "VALIDATION_ERROR")
    return DBALError(ErrorCode.VALIDATION_ERROR, message, {"issues": [issue], "field": field})


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def _normalise_variables(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if not isinstance(value, list):
        kind = json_kind(value)
        raise _structural("variables", f"variables must be an object or a list, not {kind}")
    result: dict[str, Any] = {}
    for i, item in enumerate(value):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name:
            raise _structural("variables", f"variables[{i}] must be an object with a string name")
        if name in result:
            raise _structural("variables", f"variable {name!r} is declared twice")
        result[name] = item
    return result


def coerce_json(value: Any, field: str) -> Any:
    """Return ``value`` as plain JSON data, parsing it first when it is a JSON text.

    ``field`` is one of ``nodes`` (must be a list), ``edges`` (an object; ``None`` gives ``{}``),
    ``variables`` (an object or a list of declarations with ``name``, normalised to an object keyed
    by name; ``None`` gives ``{}``) or ``config`` (an object; ``None`` gives ``{}``). Python
    objects are round-tripped through JSON so the result is exactly what would be stored (tuples
    become lists, non-string keys strings); NaN and infinities are refused.

    Raises ``DBALError(VALIDATION_ERROR, …, {"issues": [INVALID_NODES|INVALID_EDGES|
    INVALID_VARIABLES|INVALID_CONFIG], "field": field})`` when the value cannot be that field.
    """
    if field not in _FIELD_ISSUES:
        raise ValueError(f"unknown field {field!r}; expected one of {sorted(_FIELD_ISSUES)}")
    try:
        if isinstance(value, (bytes, bytearray, memoryview)):
            value = bytes(value).decode("utf-8")
        if isinstance(value, str):
            data = json.loads(value, parse_constant=_reject_constant, parse_float=_finite_float)
        else:
            data = json.loads(json.dumps(value, allow_nan=False))
    except (ValueError, TypeError, RecursionError, OverflowError) as exc:
        raise _structural(field, f"{field} is not valid JSON: {str(exc)[:200]}") from None

    if field == "nodes":
        if not isinstance(data, list):
            raise _structural(field, f"nodes must be a list, not {json_kind(data)}")
        return data
    if data is None:
        return {}
    if field == "variables":
        return _normalise_variables(data)
    if not isinstance(data, dict):
        raise _structural(field, f"{field} must be an object, not {json_kind(data)}")
    return data


def json_kind(value: Any) -> str:
    """How a JSON value is named in error messages ("an object", "a list", …)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# --------------------------------------------------------------------------------------------
# Validation


def _q(key: str) -> str:
    """A key as it appears in a path: JSON-quoted."""
    return json.dumps(key, ensure_ascii=False)


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Collector:
    def __init__(self) -> None:
        self.errors: list[ValidationIssue] = []
        self.warnings: list[ValidationIssue] = []

    def error(self, code: str, path: str, message: str) -> None:
        self.errors.append(ValidationIssue(code=code, path=path, message=message, severity="error"))

    def warning(self, code: str, path: str, message: str) -> None:
        self.warnings.append(
            ValidationIssue(code=code, path=path, message=message, severity="warning")
        )


def _type_branches(node_type: str, name: str) -> bool:
    segment = re.split(r"[./]", node_type)[-1]
    if "splitinbatches" in segment.lower() or name.startswith("Loop Over Items"):
        return True
    words = {w.lower() for w in _TYPE_WORDS.findall(segment)}
    return not words.isdisjoint(_BRANCHING_WORDS)


def _check_nodes(nodes: list[Any], out: _Collector) -> tuple[list[str], dict[str, int]]:
    """Check each node; return display labels and a key → node index map (ids over names)."""
    labels: list[str] = []
    by_id: dict[str, int] = {}
    by_name: dict[str, int] = {}
    for i, node in enumerate(nodes):
        if not isinstance(node, dict):
            out.error(
                "INVALID_NODES", f"nodes[{i}]", f"node {i} must be an object, not {json_kind(node)}"
            )
            labels.append(f"#{i}")
            continue
        for attr in ("id", "name", "type"):
            value = node.get(attr)
            if not isinstance(value, str) or not value:
                problem = "is missing" if value is None else "must be a non-empty string"
                out.error("INVALID_NODES", f"nodes[{i}].{attr}", f"node {i}: {attr} {problem}")
        node_id, name = node.get("id"), node.get("name")
        label = name if isinstance(name, str) and name else node_id
        labels.append(label if isinstance(label, str) and label else f"#{i}")
        if isinstance(node_id, str) and node_id:
            if node_id in by_id:
                out.error(
                    "DUPLICATE_NODE_ID",
                    f"nodes[{i}].id",
                    f"node id {node_id!r} is already used by nodes[{by_id[node_id]}]",
                )
            else:
                by_id[node_id] = i
        if isinstance(name, str) and name:
            if name in by_name:
                out.error(
                    "DUPLICATE_NODE_NAME",
                    f"nodes[{i}].name",
                    f"node name {name!r} is already used by nodes[{by_name[name]}]",
                )
            else:
                by_name[name] = i
    # Resolve by id first, then by name.
    resolve = dict(by_name)
    resolve.update(by_id)
    return labels, resolve


def _iter_outputs(value: Any, path: str, out: _Collector) -> list[tuple[int, str, Any]]:
    """The (output index, path, target list) triples of one output type, in either shape."""
    if isinstance(value, list):
        return [(k, f"{path}[{k}]", v) for k, v in enumerate(value)]
    if isinstance(value, dict):
        result: list[tuple[int, str, Any]] = []
        for key, targets in value.items():
            sub = f"{path}[{_q(key)}]"
            text = key.strip()
            if not (text.isascii() and text.isdigit()):
                out.error(
                    "INVALID_EDGES", sub, f"output index {key!r} is not a non-negative integer"
                )
                continue
            result.append((int(text), sub, targets))
        return result
    out.error(
        "INVALID_EDGES",
        path,
        f"outputs must be a list or an object keyed by index, not {json_kind(value)}",
    )
    return []


def _check_edges(
    edges: dict[str, Any],
    resolve: dict[str, int],
    labels: list[str],
    out: _Collector,
) -> tuple[list[set[int]], set[int], list[set[tuple[str, int]]]]:
    """Check connections; return adjacency, connected node indexes and used outputs per node."""
    n = len(labels)
    adjacency: list[set[int]] = [set() for _ in range(n)]
    connected: set[int] = set()
    used_outputs: list[set[tuple[str, int]]] = [set() for _ in range(n)]
    for source_key, by_type in edges.items():
        base = f"edges[{_q(source_key)}]"
        source = resolve.get(source_key)
        if source is None:
            out.error("UNKNOWN_NODE", base, f"connection from unknown node {source_key!r}")
        if not isinstance(by_type, dict):
            out.error(
                "INVALID_EDGES",
                base,
                f"connections of a node must be an object, not {json_kind(by_type)}",
            )
            continue
        for output_type, outputs in by_type.items():
            type_path = (
                f"{base}.{output_type}"
                if output_type.isidentifier()
                else f"{base}[{_q(output_type)}]"
            )
            for index, list_path, targets in _iter_outputs(outputs, type_path, out):
                if targets is None:  # n8n writes null for an unconnected output
                    continue
                if not isinstance(targets, list):
                    out.error(
                        "INVALID_EDGES",
                        list_path,
                        f"targets must be a list, not {json_kind(targets)}",
                    )
                    continue
                for j, target in enumerate(targets):
                    path = f"{list_path}[{j}]"
                    if not isinstance(target, dict):
                        out.error(
                            "INVALID_EDGES",
                            path,
                            f"target must be an object, not {json_kind(target)}",
                        )
                        continue
                    target_key = target.get("node")
                    if not isinstance(target_key, str) or not target_key:
                        out.error("INVALID_EDGES", f"{path}.node", "target has no node")
                        continue
                    if "index" in target and not _is_index(target["index"]):
                        out.error(
                            "INVALID_EDGES",
                            f"{path}.index",
                            f"input index {target['index']!r} is not a non-negative integer",
                        )
                    if "type" in target and not isinstance(target["type"], str):
                        out.error("INVALID_EDGES", f"{path}.type", "target type must be a string")
                    dest = resolve.get(target_key)
                    if dest is None:
                        out.error(
                            "UNKNOWN_NODE",
                            f"{path}.node",
                            f"connection to unknown node {target_key!r}",
                        )
                        continue
                    if source is None:
                        continue
                    adjacency[source].add(dest)
                    connected.add(source)
                    connected.add(dest)
                    used_outputs[source].add((output_type, index))
    return adjacency, connected, used_outputs


def _strongly_connected(adjacency: list[set[int]]) -> list[list[int]]:
    """Tarjan's algorithm, iterative. Components come out in reverse topological order."""
    n = len(adjacency)
    order = [-1] * n
    low = [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    components: list[list[int]] = []
    counter = 0
    succ = [sorted(s) for s in adjacency]
    for root in range(n):
        if order[root] != -1:
            continue
        work: list[tuple[int, int]] = [(root, 0)]
        while work:
            v, i = work[-1]
            if i == 0:
                order[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on_stack[v] = True
            if i < len(succ[v]):
                work[-1] = (v, i + 1)
                w = succ[v][i]
                if order[w] == -1:
                    work.append((w, 0))
                elif on_stack[w]:
                    low[v] = min(low[v], order[w])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
            if low[v] == order[v]:
                component: list[int] = []
                while True:
                    w = stack.pop()
                    on_stack[w] = False
                    component.append(w)
                    if w == v:
                        break
                components.append(sorted(component))
    return components


def _check_cycles(
    nodes: list[Any],
    labels: list[str],
    adjacency: list[set[int]],
    used_outputs: list[set[tuple[str, int]]],
    out: _Collector,
) -> None:
    for component in _strongly_connected(adjacency):
        if len(component) == 1 and component[0] not in adjacency[component[0]]:
            continue
        names = [labels[i] for i in component]
        path = "cycle[" + ",".join(_q(name) for name in names) + "]"
        if len(names) > 1:
            shown = "nodes " + ", ".join(repr(name) for name in names) + " form a cycle"
        else:
            shown = f"node {names[0]!r} connects to itself"
        branching = []
        for i in component:
            node = nodes[i]
            node_type = node.get("type") if isinstance(node, dict) else None
            by_type = isinstance(node_type, str) and _type_branches(node_type, labels[i])
            if by_type or len(used_outputs[i]) > 1:
                branching.append(labels[i])
        if branching:
            out.warning(
                "LOOP", path, f"{shown}; it can be left through {', '.join(map(repr, branching))}"
            )
        else:
            out.error(
                "CIRCULAR_DEPENDENCY",
                path,
                f"{shown}, and no node on it branches, so it can never be left",
            )


def _check_orphans(
    nodes: list[Any], labels: list[str], connected: set[int], out: _Collector
) -> None:
    real = [
        i
        for i, node in enumerate(nodes)
        if not (isinstance(node, dict) and node.get("type") == STICKY_NOTE_TYPE)
    ]
    if len(real) < 2:
        return
    for i in real:
        if i not in connected:
            out.warning(
                "ORPHANED_NODE", f"nodes[{i}]", f"node {labels[i]!r} is connected to nothing"
            )


def _check_timeouts(nodes: list[Any], settings: dict[str, Any], out: _Collector) -> None:
    for i, node in enumerate(nodes):
        if not isinstance(node, dict):
            continue
        places: list[tuple[str, Any]] = [(f"nodes[{i}].timeout", node.get("timeout"))]
        params = node.get("parameters")
        if isinstance(params, dict):
            places.append((f"nodes[{i}].parameters.timeout", params.get("timeout")))
        for path, value in places:
            if _is_number(value) and not NODE_TIMEOUT_MIN_MS <= value <= NODE_TIMEOUT_MAX_MS:
                out.warning(
                    "NODE_TIMEOUT_RANGE",
                    path,
                    f"timeout {value} ms is outside"
                    f" {NODE_TIMEOUT_MIN_MS}..{NODE_TIMEOUT_MAX_MS} ms",
                )
    if "executionTimeout" not in settings:
        return
    value = settings["executionTimeout"]
    path = "settings.executionTimeout"
    if not _is_number(value):
        out.warning("EXECUTION_TIMEOUT_RANGE", path, "executionTimeout must be a number of seconds")
    elif value > EXECUTION_TIMEOUT_MAX_S:
        out.warning(
            "EXECUTION_TIMEOUT_RANGE",
            path,
            f"executionTimeout {value} s is over {EXECUTION_TIMEOUT_MAX_S} s",
        )
    elif value <= 0 and value != -1:
        out.warning(
            "EXECUTION_TIMEOUT_RANGE", path, f"executionTimeout {value} s: use -1 for no limit"
        )


def _default_matches(var_type: str, default: Any) -> bool:
    if var_type == "any":
        return True
    if var_type == "string":
        return isinstance(default, str)
    if var_type == "number":
        return _is_number(default)
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


def _check_variables(variables: dict[str, Any], out: _Collector) -> None:
    for name, decl in variables.items():
        base = f"variables[{_q(name)}]"
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


def _check_variable_refs(nodes: list[Any], variables: dict[str, Any], out: _Collector) -> None:
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
                    sub = f"{path}.{key}" if key.isidentifier() else f"{path}[{_q(key)}]"
                    work.append((sub, item))
            elif isinstance(value, list):
                for k in range(len(value) - 1, -1, -1):
                    work.append((f"{path}[{k}]", value[k]))


def validate_definition(
    nodes: Any,
    edges: Any,
    variables: Any = None,
    settings: Any = None,
) -> ValidationReport:
    """Validate a workflow definition; see the module docstring for the rules.

    Each argument is a JSON text or the equivalent Python value. Raises :class:`DBALError`
    (``VALIDATION_ERROR``) only when an argument is structurally unusable.
    """
    return validate_coerced(
        coerce_json(nodes, "nodes"),
        coerce_json(edges, "edges"),
        coerce_json(variables, "variables"),
        coerce_json(settings, "config"),
    )


def validate_coerced(
    node_list: list[Any],
    edge_map: dict[str, Any],
    var_map: dict[str, Any],
    setting_map: dict[str, Any],
) -> ValidationReport:
    """:func:`validate_definition` for values that are already what :func:`coerce_json` returns
    (pydbal's input models coerce their fields), so the JSON is not walked once more."""
    out = _Collector()
    labels, resolve = _check_nodes(node_list, out)
    adjacency, connected, used_outputs = _check_edges(edge_map, resolve, labels, out)
    _check_cycles(node_list, labels, adjacency, used_outputs, out)
    _check_orphans(node_list, labels, connected, out)
    _check_timeouts(node_list, setting_map, out)
    _check_variables(var_map, out)
    _check_variable_refs(node_list, var_map, out)
    return ValidationReport(
        valid=not out.errors,
        errors=out.errors,
        warnings=out.warnings,
        validator_version=VALIDATOR_VERSION,
    )
