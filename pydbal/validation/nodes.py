"""Checks of the nodes themselves: well-formed and unique (``INVALID_NODES``,
``DUPLICATE_NODE_ID``, ``DUPLICATE_NODE_NAME``), connected to something (``ORPHANED_NODE``),
timeouts within range (``NODE_TIMEOUT_RANGE``, ``EXECUTION_TIMEOUT_RANGE``)."""

from __future__ import annotations

from typing import Any

from pydbal.validation.coerce import json_kind
from pydbal.validation.report import Collector, is_number

NODE_TIMEOUT_MIN_MS = 1000
NODE_TIMEOUT_MAX_MS = 3_600_000
EXECUTION_TIMEOUT_MAX_S = 3600

STICKY_NOTE_TYPE = "n8n-nodes-base.stickyNote"


def check_nodes(nodes: list[Any], out: Collector) -> tuple[list[str], dict[str, int]]:
    """Check each node (INVALID_NODES, DUPLICATE_NODE_ID, DUPLICATE_NODE_NAME); return each
    node's display label (its name, else its id, else ``#i``) and a key → node index map that
    resolves a key by id first, then by name."""
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
        for attr, code, seen in (
            ("id", "DUPLICATE_NODE_ID", by_id),
            ("name", "DUPLICATE_NODE_NAME", by_name),
        ):
            key = node.get(attr)
            if not isinstance(key, str) or not key:
                continue
            if key in seen:
                out.error(
                    code,
                    f"nodes[{i}].{attr}",
                    f"node {attr} {key!r} is already used by nodes[{seen[key]}]",
                )
            else:
                seen[key] = i
    # Resolve by id first, then by name.
    resolve = dict(by_name)
    resolve.update(by_id)
    return labels, resolve


def check_orphans(nodes: list[Any], labels: list[str], connected: set[int], out: Collector) -> None:
    """ORPHANED_NODE for each node outside ``connected``; sticky notes are never orphans, and
    nothing is reported unless there are at least two nodes that are not sticky notes."""
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


def check_timeouts(nodes: list[Any], settings: dict[str, Any], out: Collector) -> None:
    """NODE_TIMEOUT_RANGE for a numeric ``timeout`` (of a node or its ``parameters``) outside
    1000..3 600 000 ms; EXECUTION_TIMEOUT_RANGE for ``settings.executionTimeout`` that is not a
    number, is over 3600 s, or is ≤ 0 other than -1."""
    for i, node in enumerate(nodes):
        if not isinstance(node, dict):
            continue
        places: list[tuple[str, Any]] = [(f"nodes[{i}].timeout", node.get("timeout"))]
        params = node.get("parameters")
        if isinstance(params, dict):
            places.append((f"nodes[{i}].parameters.timeout", params.get("timeout")))
        for path, value in places:
            if is_number(value) and not NODE_TIMEOUT_MIN_MS <= value <= NODE_TIMEOUT_MAX_MS:
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
    if not is_number(value):
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
