"""Validation of workflow definitions (nodes, edges, variables, settings).

:func:`validate_definition` never touches the database. It accepts both connection shapes found in
real files (n8n UI exports keyed by node name, MetaBuilder files keyed by node id or by name, target
lists as ``{"main": [[...]]}`` or ``{"main": {"0": [...]}}``, any output type) and returns a
:class:`ValidationReport` whose issues carry a stable ``code`` and a ``path`` into the input.

Input that is not a workflow definition at all (text that is not JSON, ``nodes`` not a list,
``edges``/``settings`` not an object, ``variables`` neither an object nor a list of named
declarations) raises ``DBALError(ErrorCode.VALIDATION_ERROR, …, {"issues": [...], "field": ...})``;
input nested too deeply to parse, the ``json_depth`` refusal (``{"field", "limit", "max"}``).
Nothing else is ever raised for bad input.

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

The package: :mod:`.report` (the report model), :mod:`.coerce` (input coercion; the one home of
the variable and tag reading rules), :mod:`.nodes`, :mod:`.graph` and :mod:`.variables` (the
checks).
"""

from __future__ import annotations

from typing import Any

from pydbal.validation.coerce import coerce_json, json_kind, tag_list, variables_by_name
from pydbal.validation.graph import check_cycles, check_edges
from pydbal.validation.nodes import (
    EXECUTION_TIMEOUT_MAX_S,
    NODE_TIMEOUT_MAX_MS,
    NODE_TIMEOUT_MIN_MS,
    STICKY_NOTE_TYPE,
    check_nodes,
    check_orphans,
    check_timeouts,
)
from pydbal.validation.report import (
    VALIDATOR_VERSION,
    Collector,
    ValidationIssue,
    ValidationReport,
)
from pydbal.validation.variables import VARIABLE_TYPES, check_variable_refs, check_variables

__all__ = [
    "EXECUTION_TIMEOUT_MAX_S",
    "NODE_TIMEOUT_MAX_MS",
    "NODE_TIMEOUT_MIN_MS",
    "STICKY_NOTE_TYPE",
    "VALIDATOR_VERSION",
    "VARIABLE_TYPES",
    "ValidationIssue",
    "ValidationReport",
    "coerce_json",
    "json_kind",
    "tag_list",
    "validate_coerced",
    "validate_definition",
    "variables_by_name",
]


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
    out = Collector()
    labels, resolve = check_nodes(node_list, out)
    adjacency, connected, used_outputs = check_edges(edge_map, resolve, labels, out)
    check_cycles(node_list, labels, adjacency, used_outputs, out)
    check_orphans(node_list, labels, connected, out)
    check_timeouts(node_list, setting_map, out)
    check_variables(var_map, out)
    check_variable_refs(node_list, var_map, out)
    return ValidationReport(
        valid=not out.errors,
        errors=out.errors,
        warnings=out.warnings,
        validator_version=VALIDATOR_VERSION,
    )
