"""Import and export formats: any accepted workflow file in, normalized definitions out.

Pure functions, no database. :func:`parse_import` accepts

1. a pydbal bundle ``{"format": "pydbal.workflow/v1", "exportedAt", "workflow": {...},
   "validationReport"}`` (see :func:`build_bundle`);
2. a MetaBuilder workflow file (top-level ``nodes``/``connections``, often
   ``"tenantId": "${TENANT_ID}"`` and a semantic-version ``version``);
3. an n8n workflow as downloaded from its editor (``name, nodes, connections, settings, meta,
   pinData, tags, active, id, versionId``);
4. an n8n database export: a JSON array of such objects (or one object);
5. n8n's template wrapper ``{"workflow": {"name", "description", "workflow": {nodes,
   connections}}}``, also ``{"workflow": {nodes, connections}}``; name and description are taken
   from the outer levels (nearest first) before the inner workflow's own.

Every shape is reduced to :class:`Definition` by one set of rules:

* ``edges`` is the pydbal field; n8n/MetaBuilder ``connections`` is used when there is no
  ``edges`` (kept as is, whatever it is keyed by). A file without either gets ``{}``.
* What belongs to the source system is dropped: ids, tenant, authorship and timestamps, counters,
  lock and validation fields (camelCase and snake_case spellings), and ``version`` when it is an
  integer (pydbal's revision). Any other ``version`` (e.g. the semantic version ``"3.0.0"``) goes
  to ``config["version"]``.
* Every other top-level field that is not a definition field (``settings``, ``meta``,
  ``pinData``, ``active``, ``versionId``, ``staticData``, ``triggers``, ``$schema``, …) is kept in
  ``config`` under its own key. An explicit ``config`` object wins over such a field on a clash.
  n8n's ``active`` is not mapped to ``enabled``: it stays in ``config["active"]``.
* A definition field holding a value of the wrong kind (a non-string ``name``, an unknown
  ``category``, a non-boolean ``enabled``, ``tags`` that are neither a list nor a string) is not
  dropped either: it goes to ``config`` under its key and the field gets its empty value.
* ``tags``: a list of strings and/or ``{"name": ...}`` objects (n8n's ``{id, name}``) gives the
  names; a string is split on commas; names are trimmed, empty ones and duplicates dropped, other
  list items ignored.
* ``variables``: an object is kept as is; a list of ``{"name": ..., "type", "default", …}`` objects
  becomes an object keyed by ``name`` whose values are the list items unchanged (the MetaBuilder
  dict form, which repeats ``name`` inside each entry). A list item without a string name, a
  duplicate name, or any other non-null value is refused.
* ``name``: the file's ``name`` if a non-blank string, trimmed to 255 characters, else ``None``
  (the caller then uses :func:`derive_name`). ``description``: a non-blank string or ``None``.

Anything that cannot be read raises :class:`~pydbal.errors.DBALError` with code
``INVALID_EXPORT_FORMAT`` and ``details["reason"]`` (plus ``"index"`` for an element of an array
and ``"source"`` when a ``source_name`` was given). A definition nested deeper than orjson
handles (256 levels and more) raises the ``VALIDATION_ERROR`` that ``create`` gives for it
(``field``, ``limit`` ``json_depth``, ``max``, ``index``; see :mod:`.depth`). Nothing else is
ever raised.

The package: :mod:`.read` (bytes, text or data as JSON), :mod:`.shapes` (which shape, which
workflow objects), :mod:`.normalize` (the field rules), :mod:`.naming` (:func:`derive_name`),
:mod:`.bundle` (:func:`build_bundle`), :mod:`.depth` (nesting beyond orjson's),
:mod:`.definition` (what they share).
"""

from __future__ import annotations

from typing import Any

from pydbal.errors import DBALError, ErrorCode
from pydbal.formats.bundle import build_bundle
from pydbal.formats.definition import (
    CATEGORIES,
    DEFAULT_NAME,
    DEFINITION_FIELDS,
    EXPORT_FORMAT,
    MAX_NAME_LENGTH,
    Definition,
    RefusedError,
)
from pydbal.formats.depth import TooDeepError, in_workflow, refuse_deep
from pydbal.formats.naming import derive_name
from pydbal.formats.read import load
from pydbal.formats.shapes import definitions
from pydbal.limits import DEFAULTS, Limits
from pydbal.limits.scalars import over

__all__ = [
    "CATEGORIES",
    "DEFAULT_NAME",
    "DEFINITION_FIELDS",
    "EXPORT_FORMAT",
    "MAX_NAME_LENGTH",
    "Definition",
    "build_bundle",
    "derive_name",
    "in_workflow",
    "parse_import",
]


def parse_import(
    data: bytes | str | object, *, source_name: str | None = None, limits: Limits = DEFAULTS
) -> list[Definition]:
    """Turn an import file (bytes, text, or already-parsed JSON) into workflow definitions.

    Returns one :class:`Definition` per workflow (an array gives one per element, in order).
    Raises only :class:`DBALError`: ``INVALID_EXPORT_FORMAT`` for what cannot be read, and
    ``VALIDATION_ERROR`` (field, ``json_depth``, ``index``; checked with ``limits``) for nesting
    deeper than orjson handles (see :mod:`pydbal.formats.depth`).
    """
    try:
        try:
            value, cut = load(data), False
        except TooDeepError as deep:
            if deep.clipped is None:
                raise over("data", "levels of nesting", "json_depth", limits.json_depth) from None
            value, cut = deep.clipped, True
        found = definitions(value)
        if cut:
            refuse_deep(found, limits)
        return found
    except RefusedError as refused:
        details: dict[str, Any] = {"reason": refused.reason, **refused.extra}
        if source_name is not None:
            details["source"] = source_name
        where = f" (element {refused.extra['index']})" if "index" in refused.extra else ""
        raise DBALError(
            ErrorCode.INVALID_EXPORT_FORMAT,
            f"not an importable workflow file{where}: {refused.reason}",
            details,
        ) from None
    except RecursionError:
        raise DBALError(
            ErrorCode.INVALID_EXPORT_FORMAT,
            "not an importable workflow file: nested too deeply",
            {
                "reason": "nested too deeply",
                **({"source": source_name} if source_name is not None else {}),
            },
        ) from None
