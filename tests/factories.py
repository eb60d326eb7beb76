"""The workflow definitions the tests build, in one place (n8n connection shape).

- :func:`valid_definition`: a two-node chain (manual trigger → Set) that validates cleanly.
- :func:`cyclic_definition`: well formed but invalid, a cycle no node can leave
  (CIRCULAR_DEPENDENCY).
- :func:`dangling_definition`: well formed but invalid, an edge to a node that does not exist.

``tests/api/conftest.py`` re-exports the first two for the API tests; the CLI and analyst suites
import them from here.
"""

from __future__ import annotations

from typing import Any


def valid_nodes(prefix: str = "") -> list[dict[str, Any]]:
    return [
        {"id": f"{prefix}t", "name": f"{prefix}Start", "type": "n8n-nodes-base.manualTrigger"},
        {"id": f"{prefix}s", "name": f"{prefix}Set", "type": "n8n-nodes-base.set"},
    ]


def valid_edges(prefix: str = "") -> dict[str, Any]:
    return {f"{prefix}Start": {"main": [[{"node": f"{prefix}Set", "type": "main", "index": 0}]]}}


def valid_definition(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "nodes": valid_nodes(), "edges": valid_edges(), **extra}


def cyclic_definition(name: str, **extra: Any) -> dict[str, Any]:
    """Well-formed but invalid: a cycle no node can leave (CIRCULAR_DEPENDENCY)."""
    nodes = [
        {"id": "a", "name": "A", "type": "n8n-nodes-base.set"},
        {"id": "b", "name": "B", "type": "n8n-nodes-base.set"},
    ]
    edges = {
        "A": {"main": [[{"node": "B", "type": "main", "index": 0}]]},
        "B": {"main": [[{"node": "A", "type": "main", "index": 0}]]},
    }
    return {"name": name, "nodes": nodes, "edges": edges, **extra}


def dangling_definition(name: str, **extra: Any) -> dict[str, Any]:
    """Well-formed but invalid: the Set node points at a node named "Nowhere"."""
    edges = valid_edges()
    edges["Set"] = {"main": [[{"node": "Nowhere", "type": "main", "index": 0}]]}
    return {**valid_definition(name, **extra), "edges": edges}
