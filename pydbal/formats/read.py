"""Reading an import: bytes (any Unicode encoding marked by a BOM, else UTF-8), text, or
already-parsed Python data, as a JSON value that can be stored. Nesting orjson cannot handle
raises :class:`~pydbal.formats.depth.TooDeepError` (see :mod:`pydbal.formats.depth`)."""

from __future__ import annotations

import codecs
from typing import Any

import orjson

from pydbal.formats.definition import RefusedError
from pydbal.formats.depth import CLIP_BUDGET, TooDeepError, check_text_depth, clip, is_recursion

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def load(data: object) -> Any:
    """Parse bytes/text as JSON; copy an already-parsed object through JSON (so it is JSON).

    Raises :class:`RefusedError` for what is not JSON or cannot be stored, and
    :class:`TooDeepError` (with the value cut at ``CLIP_DEPTH`` when it could be read) for
    nesting beyond what orjson encodes (255 levels)."""
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if isinstance(data, bytes):
        text: bytes | str = data
        for bom, encoding in _BOMS:
            if data.startswith(bom):
                try:
                    text = data[len(bom) :].decode(encoding)
                except UnicodeDecodeError as exc:
                    raise RefusedError(f"not valid {encoding} text: {exc.reason}") from None
                break
        return _loads(text)
    if isinstance(data, str):
        return _loads(data.removeprefix("\ufeff"))
    try:
        return orjson.loads(orjson.dumps(data))
    except (TypeError, ValueError) as exc:  # JSONEncodeError is a TypeError
        if not is_recursion(exc):
            raise RefusedError(f"not storable as JSON: {exc}") from None
    try:
        clipped = orjson.loads(orjson.dumps(clip(data, CLIP_BUDGET)))
    except (TypeError, ValueError) as exc:
        raise RefusedError(f"not storable as JSON: {exc}") from None
    raise TooDeepError(clipped)


def _loads(text: bytes | str) -> Any:
    """Parse JSON text; refuse empty text, invalid JSON and values orjson cannot encode again
    (:class:`TooDeepError` when that is for their nesting)."""
    if not text.strip():
        raise RefusedError("the file is empty")
    check_text_depth(text)
    try:
        value = orjson.loads(text)
    except ValueError as exc:  # orjson.JSONDecodeError
        if is_recursion(exc):  # orjson >= 3.9.15 parses at most 1024 levels
            raise TooDeepError(None) from None
        raise RefusedError(f"not valid JSON: {exc}") from None
    try:  # what cannot be encoded again cannot be stored either
        orjson.dumps(value)
    except TypeError as exc:
        if is_recursion(exc):
            raise TooDeepError(clip(value, None)) from None
        raise RefusedError(f"not storable as JSON: {exc}") from None
    return value
