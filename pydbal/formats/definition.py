"""What an import produces and what every step of it shares: :class:`Definition`, the definition
fields, and :class:`RefusedError` (a reason to refuse the file)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydbal.limits import HARD
from pydbal.models import CATEGORIES as _CATEGORY_NAMES

EXPORT_FORMAT = "pydbal.workflow/v1"
"""The ``format`` of a pydbal export bundle."""
MAX_NAME_LENGTH = HARD.name_length
"""An imported name is cut to this many characters (the longest name the database stores)."""
DEFAULT_NAME = "Imported workflow"
"""The name of an imported workflow when nothing else gives one (see ``derive_name``)."""
CATEGORIES = frozenset(_CATEGORY_NAMES)
"""The categories a workflow may have (``pydbal.models.CATEGORIES``)."""

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


class RefusedError(Exception):
    """Internal: a reason to refuse, turned into a DBALError with context by parse_import."""

    def __init__(self, reason: str, **extra: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.extra = extra
