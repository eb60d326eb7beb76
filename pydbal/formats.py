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
and ``"source"`` when a ``source_name`` was given); nothing else is ever raised.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from pydbal.errors import DBALError, ErrorCode
from pydbal.validation import json_kind

__all__ = [
    "CATEGORIES",
    "DEFAULT_NAME",
    "EXPORT_FORMAT",
    "MAX_NAME_LENGTH",
    "Definition",
    "build_bundle",
    "derive_name",
    "parse_import",
]

EXPORT_FORMAT = "pydbal.workflow/v1"
MAX_NAME_LENGTH = 255
DEFAULT_NAME = "Imported workflow"
CATEGORIES = frozenset({"system", "user", "package", "automation", "integration", "template"})

# The definition fields, in bundle order (all single words: camelCase == snake_case).
DEFINITION_FIELDS = (
    "name",
    "description",
    "nodes",
    "edges",
    "variables",
    "config",
    "tags",
    "category",
    "enabled",
)

# Fields of the source system (or of a pydbal row) that an import never takes over.
_SOURCE_FIELDS = frozenset(
    {
        "id",
        "tenantId",
        "tenant_id",
        "createdBy",
        "created_by",
        "updatedBy",
        "updated_by",
        "createdAt",
        "created_at",
        "updatedAt",
        "updated_at",
        "executionCount",
        "execution_count",
        "lastExecutedAt",
        "last_executed_at",
        "lastExecutionStatus",
        "last_execution_status",
        "averageExecutionTime",
        "average_execution_time",
        "isLocked",
        "is_locked",
        "lockedBy",
        "locked_by",
        "lockedAt",
        "locked_at",
        "lockToken",
        "lock_token",
        "lockExpiresAt",
        "lock_expires_at",
        "archivedAt",
        "archived_at",
        "archivedBy",
        "archived_by",
        "validationStatus",
        "validation_status",
        "validationErrors",
        "validation_errors",
        "validatedAt",
        "validated_at",
        "validUntil",
        "valid_until",
        "validatorVersion",
        "validator_version",
    }
)

_HANDLED_FIELDS = frozenset(DEFINITION_FIELDS) | {"connections", "version"}

_SEPARATORS = re.compile(r"[_\-\s]+")
_STICKY_NOTE = "stickynote"

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


@dataclass(frozen=True)
class Definition:
    """One importable workflow, snake_case, JSON values only."""

    name: str | None
    description: str | None
    nodes: list[Any]
    edges: dict[str, Any]
    variables: dict[str, Any]
    config: dict[str, Any]
    tags: list[str]
    category: str | None
    enabled: bool | None


class _RefusedError(Exception):
    """Internal: a reason to refuse, turned into a DBALError with context by parse_import."""

    def __init__(self, reason: str, **extra: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.extra = extra


# --------------------------------------------------------------------------------------------
# parse_import


def parse_import(data: bytes | str | object, *, source_name: str | None = None) -> list[Definition]:
    """Turn an import file (bytes, text, or already-parsed JSON) into workflow definitions.

    Returns one :class:`Definition` per workflow (an array gives one per element, in order).
    Raises only :class:`DBALError` (``INVALID_EXPORT_FORMAT``).
    """
    try:
        value = _load(data)
        return _definitions(value)
    except _RefusedError as refused:
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


def _load(data: object) -> Any:
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
                    raise _RefusedError(f"not valid {encoding} text: {exc.reason}") from None
                break
        return _loads(text)
    if isinstance(data, str):
        return _loads(data.removeprefix("\ufeff"))
    try:
        return orjson.loads(orjson.dumps(data))
    except (TypeError, ValueError) as exc:  # JSONEncodeError is a TypeError
        raise _RefusedError(f"not storable as JSON: {exc}") from None


def _loads(text: bytes | str) -> Any:
    if not text.strip():
        raise _RefusedError("the file is empty")
    try:
        value = orjson.loads(text)
    except ValueError as exc:  # orjson.JSONDecodeError
        raise _RefusedError(f"not valid JSON: {exc}") from None
    try:  # what cannot be encoded again (nesting beyond 255 levels) cannot be stored either
        orjson.dumps(value)
    except TypeError as exc:
        raise _RefusedError(f"not storable as JSON: {exc}") from None
    return value


def _definitions(value: Any) -> list[Definition]:
    if isinstance(value, list):
        if not value:
            raise _RefusedError("the array holds no workflow")
        result = []
        for index, element in enumerate(value):
            try:
                result.append(_one(element))
            except _RefusedError as refused:
                raise _RefusedError(refused.reason, **refused.extra, index=index) from None
        return result
    return [_one(value)]


def _one(value: Any) -> Definition:
    """One workflow object of any accepted shape."""
    if not isinstance(value, dict):
        raise _RefusedError(f"expected a workflow object, got {json_kind(value)}")
    fmt = value.get("format")
    if fmt == EXPORT_FORMAT:
        inner = value.get("workflow")
        if not isinstance(inner, dict):
            raise _RefusedError("the bundle has no 'workflow' object")
        return _normalize(inner, outer=())
    if isinstance(fmt, str) and fmt.startswith("pydbal.") and "nodes" not in value:
        raise _RefusedError(f"unsupported export format {fmt!r} (expected {EXPORT_FORMAT!r})")
    if "nodes" in value:
        return _normalize(value, outer=())
    level1 = value.get("workflow")
    if isinstance(level1, dict):
        level2 = level1.get("workflow")
        if isinstance(level2, dict):  # n8n template API: {"workflow": {..., "workflow": {...}}}
            return _normalize(level2, outer=(level1, value))
        if "nodes" in level1:  # {"workflow": {nodes, connections}}
            return _normalize(level1, outer=(value,))
    raise _RefusedError("no 'nodes' list")


def _normalize(obj: dict[str, Any], *, outer: tuple[dict[str, Any], ...]) -> Definition:
    nodes = obj.get("nodes")
    if not isinstance(nodes, list):
        kind = json_kind(nodes)
        raise _RefusedError("no 'nodes' list" if nodes is None else f"'nodes' is {kind}")

    edges_value = obj.get("edges")
    if edges_value is None:
        edges_value = obj.get("connections")
        edges_key = "connections"
    else:
        edges_key = "edges"
    if edges_value is None:
        edges: dict[str, Any] = {}
    elif isinstance(edges_value, dict):
        edges = edges_value
    else:
        raise _RefusedError(f"'{edges_key}' is {json_kind(edges_value)}, expected an object")

    config_value = obj.get("config")
    if config_value is None:
        config: dict[str, Any] = {}
    elif isinstance(config_value, dict):
        config = dict(config_value)
    else:
        raise _RefusedError(f"'config' is {json_kind(config_value)}, expected an object")

    variables = _variables(obj.get("variables"))

    name = _text(obj.get("name"), MAX_NAME_LENGTH)
    description = _text(obj.get("description"), None)
    # template wrapper: a name/description on an outer level (nearest first) wins
    outer_name = next(
        (n for n in (_text(lv.get("name"), MAX_NAME_LENGTH) for lv in outer) if n), None
    )
    outer_description = next(
        (d for d in (_text(lv.get("description"), None) for lv in outer) if d), None
    )
    if outer_name is not None:
        name = outer_name
    if outer_description is not None:
        description = outer_description

    misfits: dict[str, Any] = {}  # definition fields with a value of the wrong kind
    for key in ("name", "description"):
        raw = obj.get(key)
        if raw is not None and not isinstance(raw, str):
            misfits[key] = raw

    tags, raw_tags_misfit = _tags(obj.get("tags"))
    if raw_tags_misfit:
        misfits["tags"] = obj["tags"]

    category: str | None = None
    raw_category = obj.get("category")
    if isinstance(raw_category, str) and raw_category.strip().lower() in CATEGORIES:
        category = raw_category.strip().lower()
    elif raw_category is not None:
        misfits["category"] = raw_category

    enabled: bool | None = None
    raw_enabled = obj.get("enabled")
    if isinstance(raw_enabled, bool):
        enabled = raw_enabled
    elif raw_enabled is not None:
        misfits["enabled"] = raw_enabled

    version = obj.get("version")
    if version is not None and not (isinstance(version, int) and not isinstance(version, bool)):
        config.setdefault("version", version)  # e.g. MetaBuilder's semantic version "3.0.0"
    for key, raw in misfits.items():
        config.setdefault(key, raw)
    for key, raw in obj.items():
        if key not in _HANDLED_FIELDS and key not in _SOURCE_FIELDS:
            config.setdefault(key, raw)

    return Definition(
        name=name,
        description=description,
        nodes=nodes,
        edges=edges,
        variables=variables,
        config=config,
        tags=tags,
        category=category,
        enabled=enabled,
    )


def _text(value: Any, limit: int | None) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    return text[:limit].rstrip() if limit is not None else value


def _tags(value: Any) -> tuple[list[str], bool]:
    """Tag names, and whether the raw value was of an unusable kind (kept in config then)."""
    if value is None:
        return [], False
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, list):
        items = value
    else:
        return [], True
    names: list[str] = []
    for item in items:
        raw = item.get("name") if isinstance(item, dict) else item
        if isinstance(raw, str):
            tag = raw.strip()
            if tag and tag not in names:
                names.append(tag)
    return names, False


def _variables(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        result: dict[str, Any] = {}
        for position, item in enumerate(value):
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str) or not name:
                raise _RefusedError(f"variable {position} has no name")
            if name in result:
                raise _RefusedError(f"variable {name!r} is declared twice")
            result[name] = item
        return result
    raise _RefusedError(f"'variables' is {json_kind(value)}, expected an object or a list")


# --------------------------------------------------------------------------------------------
# derive_name


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
            node_name = _text(node.get("name"), MAX_NAME_LENGTH)
            if node_name:
                return node_name
    for skip_notes in (True, False):
        for node in nodes:
            kind = node.get("type")
            if skip_notes and isinstance(kind, str) and _STICKY_NOTE in kind.lower():
                continue
            node_name = _text(node.get("name"), MAX_NAME_LENGTH)
            if node_name:
                return node_name
    return DEFAULT_NAME


# --------------------------------------------------------------------------------------------
# build_bundle


def build_bundle(
    workflow: Mapping[str, Any] | Definition,
    validation_report: dict[str, Any] | None,
    exported_at: datetime,
) -> dict[str, Any]:
    """An export bundle: ``{"format", "exportedAt", "workflow", "validationReport"}``.

    ``workflow`` holds snake_case definition fields (a row dict or a :class:`Definition`); only
    those fields are exported, so ids, tenant, counters, lock and validation fields never leave.
    A naive ``exported_at`` is taken as UTC; it is written in ISO 8601 with its offset.
    """
    fields = asdict(workflow) if isinstance(workflow, Definition) else workflow
    if exported_at.tzinfo is None or exported_at.utcoffset() is None:
        exported_at = exported_at.replace(tzinfo=UTC)
    defaults: dict[str, Any] = {
        "name": None,
        "description": None,
        "nodes": [],
        "edges": {},
        "variables": {},
        "config": {},
        "tags": [],
        "category": None,
        "enabled": None,
    }
    body: dict[str, Any] = {}
    for key in DEFINITION_FIELDS:
        value = fields.get(key)
        body[key] = defaults[key] if value is None else value
    return {
        "format": EXPORT_FORMAT,
        "exportedAt": exported_at.isoformat(),
        "workflow": body,
        "validationReport": validation_report,
    }
