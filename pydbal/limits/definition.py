"""Checks of what a workflow write carries: the definition fields as JSON (size, nesting,
storable values), measured before parsing when given as text; name, description and tags; and
the search text and filter values of reads."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from pydbal.limits.scalars import check_chars, over, refuse, text
from pydbal.limits.table import Limits

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


_CONTAINERS = (dict, list, tuple)


def _fast_json_bytes(value: Any, limits: Limits) -> int | None:
    """The common case, cheaply: orjson encodes it (so no lone surrogates, no integers beyond
    64 bits, no other types), no NUL, within the size, and a walk over containers only finds
    no nesting past the limit. None when any of that fails: the full walk then says why."""
    if isinstance(value, list) and len(value) > limits.nodes:
        return None
    try:
        data = orjson.dumps(value)
    except TypeError:
        return None
    if len(data) > limits.definition_bytes or b"\\u0000" in data:
        return None
    level = [value] if isinstance(value, _CONTAINERS) else []
    depth = 0
    while level:
        depth += 1
        if depth > limits.json_depth:
            return None
        nxt: list[Any] = []
        for item in level:
            children = item.values() if isinstance(item, dict) else item
            nxt.extend([c for c in children if isinstance(c, _CONTAINERS)])
        level = nxt
    return len(data)


def json_bytes(value: Any, field: str, limits: Limits) -> int:
    """Check one definition field (already plain data); returns its compact JSON size.

    Refuses nesting deeper than ``json_depth`` (counting containers), strings or keys with NUL
    or lone surrogates, integers beyond 64 bits, non-finite numbers and anything JSON cannot
    hold. Bounded work: the walk stops at the first refusal, sizes are checked before it."""
    if not (isinstance(value, list) and field == "nodes") or len(value) <= limits.nodes:
        fast = _fast_json_bytes(value, limits)
        if fast is not None:
            return fast
    if isinstance(value, list) and field == "nodes" and len(value) > limits.nodes:
        raise over(field, "nodes", "nodes", limits.nodes, len(value))
    depth_limit = limits.json_depth
    stack: list[tuple[Any, int]] = [(value, 1)]
    seen = 0
    budget = limits.definition_bytes  # every value costs at least one byte of JSON
    while stack:
        item, depth = stack.pop()
        seen += 1
        if seen > budget:
            raise over(field, "bytes of JSON", "definition_bytes", limits.definition_bytes)
        if isinstance(item, dict):
            if depth > depth_limit:
                raise over(field, "levels of nesting", "json_depth", depth_limit)
            for key, sub in item.items():
                if isinstance(key, str):
                    check_chars(key, field)
                elif not isinstance(key, int | float | bool) and key is not None:
                    raise refuse(field, f"{field}: object keys must be strings")
                if isinstance(sub, dict | list | tuple):
                    stack.append((sub, depth + 1))
                else:
                    stack.append((sub, depth))
        elif isinstance(item, list | tuple):
            if depth > depth_limit:
                raise over(field, "levels of nesting", "json_depth", depth_limit)
            for sub in item:
                stack.append((sub, depth + 1 if isinstance(sub, dict | list | tuple) else depth))
        elif isinstance(item, str):
            check_chars(item, field)
        elif isinstance(item, bool) or item is None:
            pass
        elif isinstance(item, int):
            if not _INT_MIN <= item <= _INT_MAX:
                raise refuse(field, f"{field}: integers must fit in 64 bits", limit="int64")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise refuse(field, f"{field}: numbers must be finite")
        else:
            raise refuse(field, f"{field}: {type(item).__name__} is not a JSON value")
    try:
        size = len(orjson.dumps(value))
    except TypeError as exc:  # pragma: no cover - the walk refuses what orjson cannot encode
        raise refuse(field, f"{field} is not storable as JSON: {exc}") from None
    return size


def check_definition(values: Mapping[str, Any], limits: Limits, skip: Iterable[str] = ()) -> None:
    """Check the definition fields present in ``values`` (nodes, edges, variables, config),
    except those in ``skip`` (checked before parsing)."""
    total = 0
    for name in ("nodes", "edges", "variables", "config"):
        if values.get(name) is not None and name not in skip:
            total += json_bytes(values[name], name, limits)
            if total > limits.definition_bytes:
                raise over(name, "bytes of JSON", "definition_bytes", limits.definition_bytes)


def precheck_raw(value: Any, limits: Limits) -> set[str]:
    """Before parsing: a definition field given as JSON text or bytes is measured, one given as
    Python data is walked (bounded). Returns the fields given as data, checked in full here."""
    checked: set[str] = set()
    if not isinstance(value, Mapping):
        return checked
    total = 0
    for name in ("nodes", "edges", "variables", "config"):
        raw = value.get(name)
        if raw is None:
            continue
        if isinstance(raw, str | bytes | bytearray | memoryview):
            total += len(raw)
        else:
            total += json_bytes(raw, name, limits)
            checked.add(name)
        if total > limits.definition_bytes:
            raise over(name, "bytes of JSON", "definition_bytes", limits.definition_bytes, total)
    return checked


def raw_size(value: Any, field: str, maximum: int, limit: str) -> None:
    """Refuse text or bytes longer than ``maximum`` (before parsing); other values pass."""
    if isinstance(value, str | bytes | bytearray | memoryview) and len(value) > maximum:
        raise over(field, "bytes", limit, maximum, len(value))


# -- records of the API ----------------------------------------------------------------------


def check_workflow_text(values: Mapping[str, Any], limits: Limits) -> None:
    """Name, description and tags of a create/update input (already typed by pydantic)."""
    if values.get("name") is not None:
        text(values["name"], "name", limits.name_length, "name_length")
    if values.get("description") is not None:
        text(
            values["description"],
            "description",
            limits.description_length,
            "description_length",
            allow_empty=True,
        )
    tags = values.get("tags")
    if tags is not None:
        if len(tags) > limits.tags:
            raise over("tags", "tags", "tags", limits.tags, len(tags))
        for tag in tags:
            text(tag, "tags", limits.tag_length, "tag_length", allow_empty=True)


def check_search(value: Any, field: str, limits: Limits) -> str:
    """A search text within ``search_length`` characters and ``search_terms`` words."""
    result = text(value, field, limits.search_length, "search_length", allow_empty=True)
    terms = len(result.split())
    if terms > limits.search_terms:
        raise over(field, "words", "search_terms", limits.search_terms, terms)
    return result


def check_filter(values: Mapping[str, Any], limits: Limits) -> None:
    """A WorkflowFilter's values (as its JSON dump: lists of texts, texts, booleans)."""
    for key, value in values.items():
        field = f"filter.{key}"
        if key == "search":
            check_search(value, field, limits)
            continue
        items = value if isinstance(value, list) else [value]
        if len(items) > limits.filter_values:
            raise over(field, "values", "filter_values", limits.filter_values, len(items))
        for item in items:
            if isinstance(item, str):
                bound = limits.tag_length if key == "tags" else limits.name_length
                text(
                    item, field, max(bound, limits.user_id_length), "filter_value", allow_empty=True
                )
