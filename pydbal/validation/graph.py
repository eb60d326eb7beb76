"""Checks of the connections: well-formed and pointing at known nodes (``INVALID_EDGES``,
``UNKNOWN_NODE``), and cycles (``CIRCULAR_DEPENDENCY`` when no node on the cycle can branch,
else the warning ``LOOP``)."""

from __future__ import annotations

import re
from typing import Any

from pydbal.validation.coerce import json_kind
from pydbal.validation.report import Collector, is_index, quote_key

_TYPE_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_BRANCHING_WORDS = frozenset({"if", "switch", "filter", "condition", "branch", "loop"})


def _type_branches(node_type: str, name: str) -> bool:
    """Whether a node can branch by its type (the last ``.``/``/`` segment holds one of the words
    if, switch, filter, condition, branch, loop, or contains splitInBatches) or its name ("Loop Over
    Items…")."""
    segment = re.split(r"[./]", node_type)[-1]
    if "splitinbatches" in segment.lower() or name.startswith("Loop Over Items"):
        return True
    words = {w.lower() for w in _TYPE_WORDS.findall(segment)}
    return not words.isdisjoint(_BRANCHING_WORDS)


def _iter_outputs(value: Any, path: str, out: Collector) -> list[tuple[int, str, Any]]:
    """The (output index, path, target list) triples of one output type, in either shape."""
    if isinstance(value, list):
        return [(k, f"{path}[{k}]", v) for k, v in enumerate(value)]
    if isinstance(value, dict):
        result: list[tuple[int, str, Any]] = []
        for key, targets in value.items():
            sub = f"{path}[{quote_key(key)}]"
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


def check_edges(
    edges: dict[str, Any],
    resolve: dict[str, int],
    labels: list[str],
    out: Collector,
) -> tuple[list[set[int]], set[int], list[set[tuple[str, int]]]]:
    """Check connections (INVALID_EDGES, UNKNOWN_NODE); return the adjacency (node index →
    target indexes), the indexes of connected nodes and the (output type, output index) pairs
    each node uses."""
    n = len(labels)
    adjacency: list[set[int]] = [set() for _ in range(n)]
    connected: set[int] = set()
    used_outputs: list[set[tuple[str, int]]] = [set() for _ in range(n)]
    for source_key, by_type in edges.items():
        base = f"edges[{quote_key(source_key)}]"
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
                else f"{base}[{quote_key(output_type)}]"
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
                    if "index" in target and not is_index(target["index"]):
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


def check_cycles(
    nodes: list[Any],
    labels: list[str],
    adjacency: list[set[int]],
    used_outputs: list[set[tuple[str, int]]],
    out: Collector,
) -> None:
    """CIRCULAR_DEPENDENCY for each cycle (a strongly connected component, or a self-loop) none
    of whose nodes can branch (by type or name, or by using more than one output); LOOP
    (a warning) for the others."""
    for component in _strongly_connected(adjacency):
        if len(component) == 1 and component[0] not in adjacency[component[0]]:
            continue
        names = [labels[i] for i in component]
        path = "cycle[" + ",".join(quote_key(name) for name in names) + "]"
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
