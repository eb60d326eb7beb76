"""Coercion of the definition fields every entry point takes, and the one home of the rules for
reading variables and tags.

- :func:`coerce_json`: a field given as JSON text or Python data, as plain JSON data (what
  ``create``/``update`` inputs and :func:`~pydbal.validation.validate_definition` take).
- :func:`variables_by_name`: variable declarations (an object, or a list of ``{"name", ...}``
  objects) as an object keyed by name; :func:`coerce_json` and the import formats use it.
- :func:`tag_list`: tags (a list, or a comma-separated string) as trimmed, distinct names; the
  input models and the import formats use it.
- :func:`json_kind`: how a JSON value is named in error messages.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pydbal.errors import DBALError, ErrorCode
from pydbal.limits import DEFAULTS
from pydbal.limits.scalars import over

_FIELD_ISSUES: dict[str, str] = {
    "nodes": "INVALID_NODES",
    "edges": "INVALID_EDGES",
    "variables": "INVALID_VARIABLES",
    "config": "INVALID_CONFIG",
}


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


def variables_by_name(value: Any) -> dict[str, Any]:
    """Variable declarations as an object keyed by name.

    ``None`` gives ``{}``; an object is returned as is; a list of objects each with a non-empty
    string ``name`` becomes an object keyed by those names whose values are the list items
    unchanged. Raises :class:`ValueError` (its message says why) for a list item without such a
    name, a name declared twice, or a value that is neither an object nor a list.
    """
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    if not isinstance(value, list):
        raise ValueError(f"variables must be an object or a list, not {json_kind(value)}")
    result: dict[str, Any] = {}
    for i, item in enumerate(value):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name:
            raise ValueError(f"variables[{i}] must be an object with a string name")
        if name in result:
            raise ValueError(f"variable {name!r} is declared twice")
        result[name] = item
    return result


def tag_list(value: Any) -> Any:
    """Tags as names: ``None`` gives ``[]``; a string is split on commas; the names are trimmed,
    and empty ones and repeats (after the first) dropped.

    A list holding anything but strings, or a value that is neither a list nor a string, is
    returned unchanged, for the caller to refuse (the input models) or set aside (the import
    formats, which first take the names out of n8n's ``{"id", "name"}`` tag objects).
    """
    if value is None:
        return []
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        items = value
    else:
        return value
    names: list[str] = []
    for item in items:
        tag = item.strip()
        if tag and tag not in names:
            names.append(tag)
    return names


_PLAIN_SCALARS = frozenset({str, int, bool, type(None)})
_PLAIN_DEPTH = 100  # deeper values take the JSON round trip (which refuses past ~1000 levels)


def _plain(value: Any) -> bool:
    """Whether ``value`` is JSON data already: dicts with string keys, lists, strings, integers,
    booleans, None and finite floats, of exactly these types (no subclasses, no tuples), nested
    at most ``_PLAIN_DEPTH`` levels (so a cycle is never walked forever).

    For such a value the JSON round trip of :func:`coerce_json` returns an equal value of the
    same types with the same key order (lone surrogates, integers of any size and every finite
    float survive it), so it is returned as is: a walk of the containers instead of encoding
    and decoding everything (about 4x cheaper on the corpus). Anything else takes the round
    trip, which converts or refuses it as before."""
    level = [value]
    depth = 0
    scalars = _PLAIN_SCALARS
    while level:
        depth += 1
        if depth > _PLAIN_DEPTH:
            return False
        nxt: list[Any] = []
        for item in level:
            if type(item) is dict:
                for key in item:
                    if type(key) is not str:
                        return False
                children = item.values()
            else:
                children = item
            for child in children:
                kind = type(child)
                if kind is dict or kind is list:
                    nxt.append(child)
                elif kind is float:
                    if child - child != 0.0:  # NaN and infinities give NaN
                        return False
                elif kind not in scalars:
                    return False
        level = nxt
    return True


def coerce_json(value: Any, field: str) -> Any:
    """Return ``value`` as plain JSON data, parsing it first when it is a JSON text.

    ``field`` is one of ``nodes`` (must be a list), ``edges`` (an object; ``None`` gives ``{}``),
    ``variables`` (see :func:`variables_by_name`; ``None`` gives ``{}``) or ``config`` (an
    object; ``None`` gives ``{}``). Python objects are round-tripped through JSON so the result
    is exactly what would be stored (tuples become lists, non-string keys strings); NaN and
    infinities are refused. A value that is JSON data already is returned as is, not copied
    (the round trip would give an equal value; see :func:`_plain`).

    Raises ``DBALError(VALIDATION_ERROR, …, {"issues": [INVALID_NODES|INVALID_EDGES|
    INVALID_VARIABLES|INVALID_CONFIG], "field": field})`` when the value cannot be that field,
    and the ``json_depth`` refusal of :mod:`pydbal.limits` (``field``, ``limit``, ``max``, the
    default limit) for a value nested too deeply to parse or copy (Python's recursion limit,
    about 1000 levels).
    """
    if field not in _FIELD_ISSUES:
        raise ValueError(f"unknown field {field!r}; expected one of {sorted(_FIELD_ISSUES)}")
    try:
        if isinstance(value, (bytes, bytearray, memoryview)):
            value = bytes(value).decode("utf-8")
        if isinstance(value, str):
            data = json.loads(value, parse_constant=_reject_constant, parse_float=_finite_float)
        elif (type(value) is list or type(value) is dict) and _plain(value):
            data = value  # what the round trip below would return (see _plain)
        else:
            data = json.loads(json.dumps(value, allow_nan=False))
    except RecursionError:  # nested past Python's recursion limit: far over json_depth
        raise over(field, "levels of nesting", "json_depth", DEFAULTS.json_depth) from None
    except (ValueError, TypeError, OverflowError) as exc:
        raise _structural(field, f"{field} is not valid JSON: {str(exc)[:200]}") from None

    if field == "nodes":
        if not isinstance(data, list):
            raise _structural(field, f"nodes must be a list, not {json_kind(data)}")
        return data
    if data is None:
        return {}
    if field == "variables":
        try:
            return variables_by_name(data)
        except ValueError as exc:
            raise _structural(field, str(exc)) from None
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
