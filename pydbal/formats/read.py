"""Reading an import: bytes (any Unicode encoding marked by a BOM, else UTF-8), text, or
already-parsed Python data, as a JSON value that can be stored."""

from __future__ import annotations

import codecs
from typing import Any

import orjson

from pydbal.formats.definition import RefusedError

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def load(data: object) -> Any:
    """Parse bytes/text as JSON; copy an already-parsed object through JSON (so it is JSON)."""
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
        raise RefusedError(f"not storable as JSON: {exc}") from None


def _loads(text: bytes | str) -> Any:
    """Parse JSON text; refuse empty text, invalid JSON and values orjson cannot encode again."""
    if not text.strip():
        raise RefusedError("the file is empty")
    try:
        value = orjson.loads(text)
    except ValueError as exc:  # orjson.JSONDecodeError
        raise RefusedError(f"not valid JSON: {exc}") from None
    try:  # what cannot be encoded again (nesting beyond 255 levels) cannot be stored either
        orjson.dumps(value)
    except TypeError as exc:
        raise RefusedError(f"not storable as JSON: {exc}") from None
    return value
