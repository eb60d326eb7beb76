"""Import files nested deeper than orjson handles, refused as ``create`` refuses them.

orjson encodes at most 255 levels of nesting. Such a file is not turned away as unreadable
(``INVALID_EXPORT_FORMAT``): what lies deeper than :data:`CLIP_DEPTH` levels is cut off (the
cut value is still deeper than any ``json_depth`` limit), the file goes through the shape and
field rules as any other, and the definition fields are then checked against the limits, so the
answer is the ``VALIDATION_ERROR`` that ``create`` gives for the same definition, naming the
field, ``json_depth`` and the workflow's ``index``.

Text nested deeper than the parser goes (:data:`PARSE_DEPTH_MAX`) cannot be read at all; it is
refused with the same error naming the field ``data``. orjson 3.9.15 and later stop at 1024
levels themselves; older ones recurse without a bound (CVE-2024-27454: a few hundred thousand
levels crash the process), so with them text with more than :data:`PARSE_DEPTH_MAX` opening
brackets is scanned for its depth before it is parsed.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate
from typing import Any

import orjson

from pydbal.errors import DBALError
from pydbal.formats.definition import Definition, RefusedError
from pydbal.limits import HARD, Limits, json_bytes

CLIP_DEPTH = 2 * HARD.json_depth
"""Containers nested deeper than this are cut off (replaced by ``[]``) before encoding."""
_PARSER_BOUNDED = tuple(int(p) for p in orjson.__version__.split(".")[:3]) >= (3, 9, 15)
PARSE_DEPTH_MAX = 1024 if _PARSER_BOUNDED else 20_000
"""The deepest text that is parsed: orjson's own bound, or (older orjson) the one scanned for."""
CLIP_BUDGET = 1 << 20
"""At most this many values are copied while cutting parsed Python data (shared sub-objects
are copied once per reference); beyond it the data is refused as not storable."""

_DEFINITION_FIELDS = ("nodes", "edges", "variables", "config")  # in the order create checks them
_NOT_QUOTES_OR_BRACKETS = bytes(b for b in range(256) if b not in b'[]{}"')
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


class TooDeepError(Exception):
    """Nesting orjson cannot handle: ``clipped`` is the value cut at :data:`CLIP_DEPTH`, or
    ``None`` when the text was too deep to parse."""

    def __init__(self, clipped: Any) -> None:
        super().__init__("nested too deeply")
        self.clipped = clipped


def is_recursion(exc: Exception) -> bool:
    """Whether an orjson error is about nesting: "Recursion limit reached" (encoding),
    "recursion depth" (older parsers) or "depth limit exceeded" (the parser's bound, 3.9.15+)."""
    text = str(exc).lower()
    return "recursion" in text or "depth limit" in text


def check_text_depth(text: bytes | str) -> None:
    """With an orjson older than 3.9.15 (whose parser has no bound), raise
    :class:`TooDeepError` (nothing clipped) when ``text`` nests its arrays and objects deeper
    than :data:`PARSE_DEPTH_MAX` levels (brackets inside strings do not count). Text with no
    more opening brackets than that is not scanned; with a newer orjson nothing is."""
    if _PARSER_BOUNDED:
        return
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if raw.count(b"[") + raw.count(b"{") <= PARSE_DEPTH_MAX:
        return
    if b"\\" in raw:  # escaped backslashes, then escaped quotes: the quotes left delimit strings
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    quotes_and_brackets = raw.translate(None, _NOT_QUOTES_OR_BRACKETS)
    outside = b"".join(quotes_and_brackets.split(b'"')[::2])
    if outside and max(accumulate(map(_STEP.__getitem__, outside))) > PARSE_DEPTH_MAX:
        raise TooDeepError(None)


def clip(value: Any, budget: int | None) -> Any:
    """A copy of ``value`` whose dicts, lists and tuples (as lists) nested deeper than
    :data:`CLIP_DEPTH` are replaced by ``[]``; other values are kept as they are. Iterative.
    Raises :class:`RefusedError` when more than ``budget`` values would be copied."""
    top = _copy(value)
    stack: list[tuple[Any, int]] = [(top, 1)] if isinstance(top, dict | list) else []
    seen = 0
    while stack:
        container, depth = stack.pop()
        keys = list(container) if isinstance(container, dict) else range(len(container))
        seen += len(keys)
        if budget is not None and seen > budget:
            raise RefusedError("not storable as JSON: Recursion limit reached")
        for key in keys:
            child = container[key]
            if isinstance(child, dict | list | tuple):
                if depth >= CLIP_DEPTH:
                    container[key] = []
                else:
                    container[key] = copied = _copy(child)
                    stack.append((copied, depth + 1))
    return top


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list | tuple):
        return list(value)
    return value


def refuse_deep(definitions: Sequence[Definition], limits: Limits) -> None:
    """Check the definition fields of a file that was cut (nodes, edges, variables, config, one
    workflow after the other) and raise the first refusal, as :func:`in_workflow` gives it. A
    cut part that the field rules dropped (a source field, a tag list's items) refuses nothing."""
    for index, definition in enumerate(definitions):
        for name in _DEFINITION_FIELDS:
            try:
                json_bytes(getattr(definition, name), name, limits)
            except DBALError as exc:
                raise in_workflow(exc, index) from None


def in_workflow(exc: DBALError, index: int) -> DBALError:
    """A limit's refusal of workflow ``index`` of an import: the same code and details plus
    ``index``, the message prefixed with "workflow <index>: "."""
    return DBALError(exc.code, f"workflow {index}: {exc.message}", {**exc.details, "index": index})
