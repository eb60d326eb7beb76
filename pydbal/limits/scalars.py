"""Coercion of the scalar arguments of the public API (text, whole and real numbers, booleans,
times, lists), each refused with ``VALIDATION_ERROR`` naming the field and the rule broken."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydbal.errors import DBALError, ErrorCode
from pydbal.limits.table import TIME_MAX, TIME_MIN

# -- errors -----------------------------------------------------------------------------------


def refuse(field: str, message: str, **details: Any) -> DBALError:
    """VALIDATION_ERROR naming the field and the rule broken: ``limit`` is a :class:`Limits`
    field's name for a bound, else a word for the rule ("type" unless given; "text", "time",
    "int64" here, "token", "lease_ms", "filter_value" from callers)."""
    details.setdefault("limit", "type")
    return DBALError(ErrorCode.VALIDATION_ERROR, message, {"field": field, **details})


def over(field: str, what: str, limit: str, maximum: int, actual: int | None = None) -> DBALError:
    """VALIDATION_ERROR for ``field`` holding more than ``maximum`` ``what`` (limit ``limit``;
    ``actual``, when known, says how many)."""
    extra = {} if actual is None else {"actual": actual}
    return refuse(
        field,
        f"{field}: at most {maximum:,} {what} (limit {limit})",
        limit=limit,
        max=maximum,
        **extra,
    )


# -- text ------------------------------------------------------------------------------------


def check_chars(value: str, field: str) -> str:
    """``value`` unless it holds a NUL or a lone surrogate (neither can be stored)."""
    if "\x00" in value:
        raise refuse(field, f"{field} must not contain NUL characters", limit="text")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise refuse(
                field, f"{field} is not valid Unicode (a lone surrogate)", limit="text"
            ) from None
    return value


def text(value: Any, field: str, max_length: int, limit: str, *, allow_empty: bool = False) -> str:
    """A string of at most ``max_length`` characters, storable as PostgreSQL text."""
    if not isinstance(value, str):
        raise refuse(field, f"{field} must be a string, not {type(value).__name__}")
    if len(value) > max_length:
        raise over(field, "characters", limit, max_length, len(value))
    if not allow_empty and not value:
        raise refuse(field, f"{field} must not be empty")
    return check_chars(value, field)


def optional_text(value: Any, field: str, max_length: int, limit: str) -> str | None:
    """:func:`text` (empty allowed), or ``None`` for ``None``."""
    return None if value is None else text(value, field, max_length, limit, allow_empty=True)


# -- numbers ---------------------------------------------------------------------------------

_INTEGRAL = re.compile(r"\s*[+-]?\d{1,30}\s*")


def integer(value: Any, field: str, lo: int, hi: int, limit: str | None = None) -> int:
    """A whole number in ``lo..hi``: an int, an integral float, or an integral string ("30")."""
    result: int | None = None
    if isinstance(value, bool):
        result = None
    elif isinstance(value, int):
        result = value
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise refuse(field, f"{field} must be a whole number, not {value!r}")
        result = int(value)
    elif isinstance(value, str) and _INTEGRAL.fullmatch(value):
        result = int(value)
    if result is None:
        raise refuse(field, f"{field} must be an integer, not {type(value).__name__}")
    if not lo <= result <= hi:
        details: dict[str, Any] = {"min": lo, "max": hi}
        if limit is not None:
            details["limit"] = limit
        raise refuse(field, f"{field} must be between {lo:,} and {hi:,}", **details)
    return result


def optional_integer(value: Any, field: str, lo: int, hi: int) -> int | None:
    """:func:`integer`, or ``None`` for ``None``."""
    return None if value is None else integer(value, field, lo, hi)


def number(value: Any, field: str, lo: float, hi: float, limit: str | None = None) -> float:
    """A finite number in ``lo..hi`` (an int, a float or numeric text)."""
    result: float | None = None
    if isinstance(value, bool):
        result = None
    elif isinstance(value, int | float):
        result = float(value) if not isinstance(value, int) or abs(value) < 2**63 else math.inf
    elif isinstance(value, str) and len(value) < 40:
        try:
            result = float(value)
        except ValueError:
            result = None
    if result is None:
        raise refuse(field, f"{field} must be a number, not {type(value).__name__}")
    if not (math.isfinite(result) and lo <= result <= hi):
        details: dict[str, Any] = {"min": lo, "max": hi}
        if limit is not None:
            details["limit"] = limit
        raise refuse(field, f"{field} must be a finite number from {lo:g} to {hi:g}", **details)
    return result


def boolean(value: Any, field: str) -> bool:
    """``value`` if it is a bool; nothing else is taken for one."""
    if not isinstance(value, bool):
        raise refuse(field, f"{field} must be true or false, not {type(value).__name__}")
    return value


# -- times -----------------------------------------------------------------------------------

_EPOCH_MS_MIN = 0
_EPOCH_MS_MAX = int(TIME_MAX.timestamp() * 1000)


def timestamp(value: Any, field: str) -> datetime:
    """An aware datetime from an aware datetime, ISO-8601 text with an offset, or epoch
    milliseconds (a number or integral text). Naive values are refused, never guessed."""
    result: datetime | None = None
    if isinstance(value, datetime):
        result = value
    elif isinstance(value, int | float | str) and not isinstance(value, bool):
        if isinstance(value, str) and not _INTEGRAL.fullmatch(value):
            if len(value) > 64:
                raise refuse(field, f"{field} is not an ISO-8601 time")
            try:
                result = datetime.fromisoformat(value.strip())
            except ValueError:
                raise refuse(
                    field, f"{field} must be ISO-8601 text with an offset (…Z or …+00:00)"
                ) from None
        else:
            ms = number(value, field, _EPOCH_MS_MIN, _EPOCH_MS_MAX, "time")
            result = datetime.fromtimestamp(ms / 1000, UTC)
    if result is None:
        raise refuse(
            field,
            f"{field} must be a datetime, ISO-8601 text or epoch milliseconds, "
            f"not {type(value).__name__}",
        )
    if result.tzinfo is None or result.utcoffset() is None:
        raise refuse(field, f"{field} must carry a timezone (naive times are not guessed)")
    if not TIME_MIN <= result <= TIME_MAX:
        raise refuse(
            field,
            f"{field} must be between {TIME_MIN:%Y-%m-%d} and {TIME_MAX:%Y-%m-%d}",
            limit="time",
        )
    return result


def optional_timestamp(value: Any, field: str) -> datetime | None:
    """:func:`timestamp`, or ``None`` for ``None``."""
    return None if value is None else timestamp(value, field)


# -- lists ----------------------------------------------------------------------------------


def items(value: Any, field: str) -> list[Any]:
    """A list from any iterable (not a string or a mapping)."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise refuse(field, f"{field} must be a list, not {type(value).__name__}")
    return list(value)
