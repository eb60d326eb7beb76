"""Opaque list cursors: where the next keyset page starts.

A cursor names the sort (field and direction), the filter it was made for (a digest), and the
sort key and id of the last row of its page. It is base64url text with a short keyed digest of
the tenant and the content: an edited or truncated cursor, another tenant's, or one made for
another sort or filter is VALIDATION_ERROR (422) with ``{"field": "after"}``. Not a secret:
every value in it reaches the database as a typed bind parameter, so a forged cursor could only
move the start of a page within the caller's own rows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

from pydbal.errors import DBALError, ErrorCode

_VERSION = 1
_MAC_KEY = b"pydbal.list-cursor.v1"


@dataclass(frozen=True)
class Cursor:
    """The decoded position: after the row with sort key ``key`` (as text, None for a missing
    last_executed_at) and id ``id``."""

    key: str | None
    id: UUID


def _b64(data: bytes) -> str:
    """``data`` as unpadded base64url text."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """The bytes of unpadded base64url ``text`` (binascii.Error when it is not)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(tenant: str, body: bytes) -> str:
    """The keyed digest binding ``body`` to ``tenant`` (not a secret: see the module doc)."""
    h = hashlib.blake2b(body, digest_size=9, key=_MAC_KEY, person=b"pydbal-cur")
    h.update(tenant.encode())
    return _b64(h.digest())


def filter_digest(filter_json: str) -> str:
    """A short digest of the canonical filter JSON (pydbal dumps the filter model in a fixed
    field order, so one filter always gives one text)."""
    return _b64(hashlib.blake2b(filter_json.encode(), digest_size=6).digest())


def key_text(value: Any) -> str | None:
    """A sort key as the text ``dbal.api_list`` casts back to the column's type."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def encode(tenant: str, field: str, direction: str, digest: str, key: Any, id: UUID) -> str:
    """The cursor of the position after the row (``key``, ``id``) for this sort and filter."""
    body = orjson.dumps([_VERSION, field, direction, digest, key_text(key), str(id)])
    return f"{_b64(body)}.{_mac(tenant, body)}"


def _refuse(message: str) -> DBALError:
    """VALIDATION_ERROR for a bad ``after`` cursor."""
    return DBALError(ErrorCode.VALIDATION_ERROR, message, {"field": "after", "limit": "cursor"})


def decode(tenant: str, cursor: Any, field: str, direction: str, digest: str) -> Cursor:
    """The position a cursor names, checked against the sort and filter of the request."""
    if not isinstance(cursor, str) or len(cursor) > 2000 or cursor.count(".") != 1:
        raise _refuse("after: not a cursor returned by list()")
    text, mac = cursor.split(".")
    try:
        body = _unb64(text)
    except (binascii.Error, ValueError):
        raise _refuse("after: not a cursor returned by list()") from None
    if _mac(tenant, body) != mac:
        raise _refuse("after: not a cursor returned by list() for this tenant")
    try:
        version, c_field, c_dir, c_digest, key, raw_id = orjson.loads(body)
        wid = UUID(raw_id)
    except (orjson.JSONDecodeError, ValueError, TypeError):
        raise _refuse("after: not a cursor returned by list()") from None
    if version != _VERSION:
        raise _refuse("after: a cursor of another pydbal version")
    if (c_field, c_dir) != (field, direction):
        raise _refuse(f"after: the cursor is for sort {c_field} {c_dir}, not {field} {direction}")
    if c_digest != digest:
        raise _refuse("after: the cursor is for another filter")
    if key is not None and not isinstance(key, str):
        raise _refuse("after: not a cursor returned by list()")
    return Cursor(key, wid)
