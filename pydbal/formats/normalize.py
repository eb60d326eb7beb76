"""One workflow object of any accepted shape reduced to a :class:`Definition`, by the field rules
of :mod:`pydbal.formats` (what is dropped, what goes to ``config``, how each field is read)."""

from __future__ import annotations

from typing import Any

from pydbal.formats.definition import (
    CATEGORIES,
    DEFINITION_FIELDS,
    MAX_NAME_LENGTH,
    Definition,
    RefusedError,
)
from pydbal.validation import json_kind, tag_list, variables_by_name

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

# Fields read by normalize itself; every other field (not a source field) goes to config.
_HANDLED_FIELDS = frozenset(DEFINITION_FIELDS) | {"connections", "version"}


def normalize(obj: dict[str, Any], *, outer: tuple[dict[str, Any], ...]) -> Definition:
    """The definition held by the workflow object ``obj``; ``outer`` are the wrapper levels
    around it (nearest first), whose name and description win over its own."""
    nodes = obj.get("nodes")
    if not isinstance(nodes, list):
        kind = json_kind(nodes)
        raise RefusedError("no 'nodes' list" if nodes is None else f"'nodes' is {kind}")

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
        raise RefusedError(f"'{edges_key}' is {json_kind(edges_value)}, expected an object")

    config_value = obj.get("config")
    if config_value is None:
        config: dict[str, Any] = {}
    elif isinstance(config_value, dict):
        config = dict(config_value)
    else:
        raise RefusedError(f"'config' is {json_kind(config_value)}, expected an object")

    variables = _variables(obj.get("variables"))

    name = text(obj.get("name"), MAX_NAME_LENGTH)
    description = text(obj.get("description"), None)
    # template wrapper: a name/description on an outer level (nearest first) wins
    outer_name = next(
        (n for n in (text(lv.get("name"), MAX_NAME_LENGTH) for lv in outer) if n), None
    )
    outer_description = next(
        (d for d in (text(lv.get("description"), None) for lv in outer) if d), None
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


def text(value: Any, limit: int | None) -> str | None:
    """A name or description: ``None`` unless ``value`` is a string with a non-blank character.
    With a ``limit``, the trimmed text cut to ``limit`` characters (and trimmed again); without,
    ``value`` as given."""
    if not isinstance(value, str):
        return None
    stripped = value.strip()
    if not stripped:
        return None
    return stripped[:limit].rstrip() if limit is not None else value


def _tags(value: Any) -> tuple[list[str], bool]:
    """Tag names, and whether the raw value was of an unusable kind (kept in config then).

    A string or a list: the strings and the string ``name`` of objects (n8n's ``{"id", "name"}``)
    among its items, read by :func:`pydbal.validation.tag_list`; other items are ignored."""
    if value is None or isinstance(value, str):
        return tag_list(value), False
    if not isinstance(value, list):
        return [], True
    names = [item.get("name") if isinstance(item, dict) else item for item in value]
    return tag_list([name for name in names if isinstance(name, str)]), False


def _variables(value: Any) -> dict[str, Any]:
    """Variables by name (:func:`pydbal.validation.variables_by_name`); refused otherwise."""
    try:
        return variables_by_name(value)
    except ValueError as exc:
        raise RefusedError(str(exc)) from None
