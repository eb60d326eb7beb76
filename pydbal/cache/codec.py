"""The values the cache keeps: their byte encoding for the warm store, the snapshots from which
every caller gets its own copy, and what the cache reads from them (the tenant they belong to,
when the clock alone changes them).

Kept types: ``Workflow``, ``Page[Workflow]``, ``list[Workflow]``, ``ExecutionStats``,
``ValidationReport`` and ``None``. Anything else is not cached (``encode`` returns None).
"""

from __future__ import annotations

import marshal
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter

from pydbal.models import ExecutionStats, Page, Workflow
from pydbal.validation import ValidationReport

T = TypeVar("T")

_ADAPTERS: dict[bytes, TypeAdapter[Any]] = {
    b"W": TypeAdapter(Workflow),
    b"P": TypeAdapter(Page[Workflow]),
    b"L": TypeAdapter(list[Workflow]),
    b"S": TypeAdapter(ExecutionStats),
    b"V": TypeAdapter(ValidationReport),
}


def _tag(value: Any) -> bytes | None:
    """The one-byte type tag of a value the cache keeps, or None for any other value."""
    if value is None:
        return b"N"
    if isinstance(value, Workflow):
        return b"W"
    if isinstance(value, Page) and all(isinstance(i, Workflow) for i in value.items):
        return b"P"
    if isinstance(value, list) and all(isinstance(i, Workflow) for i in value):
        return b"L"
    if isinstance(value, ExecutionStats):
        return b"S"
    if isinstance(value, ValidationReport):
        return b"V"
    return None


def encode(value: Any) -> bytes | None:
    """Bytes for the warm store (type tag + JSON), or None for a value of a type the cache does
    not keep."""
    tag = _tag(value)
    if tag is None:
        return None
    if tag == b"N":
        return tag
    return tag + _ADAPTERS[tag].dump_json(value, warnings=False)


def decode(data: bytes) -> Any:
    """The value ``encode`` turned into ``data``, rebuilt as its type (raises on bad data)."""
    tag = data[:1]
    if tag == b"N":
        return None
    return _ADAPTERS[tag].validate_json(data[1:])


# -- the caller's copy ------------------------------------------------------------------------

#: A kept value: each call returns a new copy of the value as it was when kept.
Kept = Callable[[], T]

_IMMUTABLE = frozenset({str, int, float, bool, type(None), bytes})


def keep(value: T) -> Kept[T]:
    """A snapshot of ``value`` from which every call makes a new copy sharing nothing mutable
    with the value, the snapshot or another copy (lists, dicts and pydantic models are new at
    every depth; str, numbers, datetimes, UUIDs… are immutable and shared). Later changes to
    ``value`` do not reach the snapshot, so ``value`` itself may be handed to a caller.

    A list or dict of plain data (what JSON decodes to) is kept as ``marshal`` bytes, decoded on
    each call: the fastest full copy measured (bench/bench_cache_copy.py; numbers in
    :mod:`pydbal.cache.hot`). A model is kept as its immutable fields plus one marshal record of
    its list and dict fields (:func:`_keep_model`). A list or dict holding anything marshal
    refuses (models, datetimes, subclasses) is kept element by element."""
    return _keep(value)


def share(value: T) -> Kept[T]:
    """The value itself at every call: what ``cache={"copies": False}`` keeps (no copy, no
    protection: a caller that changes a returned value changes what later hits return)."""
    return lambda: value


def lazily(data: bytes, snapshot: Callable[[Any], Kept[Any]]) -> Kept[Any]:
    """A snapshot of the value encoded in ``data``, taken at the first call (``decode`` then
    ``snapshot``), so a value decoded for one caller costs nothing more until it is hit again.
    ``data`` is immutable: no caller can reach what the snapshot is taken from."""
    made: list[Kept[Any]] = []

    def get() -> Any:
        if not made:
            made.append(snapshot(decode(data)))
        return made[0]()

    return get


def _keep_model(value: BaseModel) -> Kept[Any]:
    """A model's snapshot: its immutable fields shared, its list/dict fields as one ``marshal``
    record (all of them decoded in one call), nested models kept by :func:`_keep`; each call
    builds a new instance the way pydantic's ``model_copy`` does (a new ``__dict__``, a copy of
    the fields-set; extra and private copied when present), without its per-call overhead."""
    cls = type(value)
    fields = dict(value.__dict__)
    plain = {k: v for k, v in fields.items() if type(v) is list or type(v) is dict}
    data: bytes | None = None
    if plain:
        try:
            data = marshal.dumps(tuple(plain.values()))
        except ValueError:  # holds something marshal does not write: keep each one
            data = None
    names = tuple(plain) if data is not None else ()
    parts = {
        k: _keep(v)
        for k, v in fields.items()
        if (k not in names) and (type(v) in (list, dict) or isinstance(v, BaseModel))
    }
    fields_set = frozenset(value.__pydantic_fields_set__)
    extra = value.__pydantic_extra__
    private = value.__pydantic_private__
    new, put = object.__new__, object.__setattr__

    def copy() -> Any:
        d = dict(fields)
        if data is not None:
            d.update(zip(names, marshal.loads(data), strict=True))
        for k, part in parts.items():
            d[k] = part()
        obj = new(cls)
        put(obj, "__dict__", d)
        put(obj, "__pydantic_fields_set__", set(fields_set))
        put(obj, "__pydantic_extra__", None if extra is None else dict(extra))
        put(obj, "__pydantic_private__", None if private is None else dict(private))
        return obj

    return copy


def _keep(value: Any) -> Kept[Any]:
    kind = type(value)
    if kind in _IMMUTABLE:
        return lambda: value
    if isinstance(value, BaseModel):
        return _keep_model(value)
    if kind is list or kind is dict:
        try:
            data = marshal.dumps(value)
        except ValueError:  # holds something marshal does not write: keep each element
            if kind is list:
                items = [_keep(v) for v in value]
                return lambda: [item() for item in items]
            entries = {k: _keep(v) for k, v in value.items()}
            return lambda: {k: entry() for k, entry in entries.items()}
        return lambda: marshal.loads(data)
    return lambda: value  # anything else is shared as it is (datetimes, UUIDs: immutable)


# -- what the cache reads from a value --------------------------------------------------------


def workflows_in(value: Any) -> list[Workflow]:
    """The workflows a kept value holds (one, a page's items, a list's elements, or none)."""
    if isinstance(value, Workflow):
        return [value]
    if isinstance(value, Page):
        return [w for w in value.items if isinstance(w, Workflow)]
    if isinstance(value, list):
        return [w for w in value if isinstance(w, Workflow)]
    return []


def tenant_ok(value: Any, tenant: str) -> bool:
    """Every workflow in ``value`` belongs to ``tenant`` (true for values holding none)."""
    return all(w.tenant_id == tenant for w in workflows_in(value))


def clock_limit(value: Any) -> float | None:
    """Seconds until a workflow in ``value`` changes by the clock alone (a 'valid' result
    reaching valid_until reads as 'stale'; a lock reaching its expiry reads as unlocked), or
    None when nothing in it does."""
    soonest: datetime | None = None
    for w in workflows_in(value):
        for at in (
            w.valid_until if w.validation_status == "valid" else None,
            w.lock_expires_at if w.is_locked else None,
        ):
            if at is not None and (soonest is None or at < soonest):
                soonest = at
    if soonest is None:
        return None
    return (soonest - datetime.now(UTC)).total_seconds()
