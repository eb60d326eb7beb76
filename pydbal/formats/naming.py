"""The name of an imported workflow whose file gives none."""

from __future__ import annotations

import re
from typing import Any

from pydbal.formats.definition import DEFAULT_NAME, MAX_NAME_LENGTH
from pydbal.formats.normalize import text

_SEPARATORS = re.compile(r"[_\-\s]+")
_STICKY_NOTE = "stickynote"


def derive_name(defn_nodes: list[Any], source_name: str | None) -> str:
    """A name for a workflow whose file has none.

    From ``source_name`` if given (its stem, without ``.workflow``, with ``_``/``-`` runs turned
    into single spaces); else the first trigger node's name (``type`` contains "trigger" or
    "webhook", any case); else the first node's name (sticky notes only as a last resort); else
    ``"Imported workflow"``. At most 255 characters.
    """
    if source_name:
        base = source_name.replace("\\", "/").rsplit("/", 1)[-1]
        stem = base[: base.rfind(".")] if base.rfind(".") > 0 else base
        if stem.lower().endswith(".workflow"):
            stem = stem[: -len(".workflow")]
        from_file = _SEPARATORS.sub(" ", stem).strip()[:MAX_NAME_LENGTH].rstrip()
        if from_file:
            return from_file
    nodes = [n for n in defn_nodes if isinstance(n, dict)] if isinstance(defn_nodes, list) else []
    for node in nodes:
        kind = node.get("type")
        if isinstance(kind, str) and ("trigger" in kind.lower() or "webhook" in kind.lower()):
            node_name = text(node.get("name"), MAX_NAME_LENGTH)
            if node_name:
                return node_name
    for skip_notes in (True, False):
        for node in nodes:
            kind = node.get("type")
            if skip_notes and isinstance(kind, str) and _STICKY_NOTE in kind.lower():
                continue
            node_name = text(node.get("name"), MAX_NAME_LENGTH)
            if node_name:
                return node_name
    return DEFAULT_NAME
