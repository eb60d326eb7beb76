"""The limits themselves: the :class:`Limits` fields, their database (:data:`HARD`) and default
(:data:`DEFAULTS`) values, the range a configured value may take, and the README's table
generated from them (:func:`limits_table`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Bounds on what a caller may pass (see the module docstring and the README table)."""

    definition_bytes: int = 8 * MiB
    nodes: int = 10_000
    json_depth: int = 64
    name_length: int = 255
    description_length: int = 10_000
    tags: int = 64
    tag_length: int = 100
    tenant_id_length: int = 255
    user_id_length: int = 255
    search_length: int = 500
    search_terms: int = 32
    filter_values: int = 1000
    list_window: int = 100_000
    page_size: int = 100
    lease_min_ms: int = 1000
    lease_max_ms: int = 3_600_000
    duration_max_ms: int = 2_592_000_000
    error_length: int = 65_536
    execution_id_length: int = 255
    import_bytes: int = 64 * MiB

    def configured(self, overrides: Mapping[str, Any] | None) -> Limits:
        """These limits with ``overrides`` applied, each checked against :data:`HARD`."""
        if not overrides:
            return self
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(
                f"unknown limit(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}"
            )
        new = replace(self, **dict(overrides))
        for name, value in asdict(new).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"limit {name} must be a positive integer, not {value!r}")
            lo, hi = CONFIGURABLE[name]
            if not lo <= value <= hi:
                raise ValueError(f"limit {name} must be between {lo} and {hi} (the database's)")
        if new.lease_min_ms > new.lease_max_ms:
            raise ValueError("lease_min_ms must not exceed lease_max_ms")
        return new


DEFAULTS = Limits()
"""What ``connect()`` enforces by default."""

HARD = Limits(
    definition_bytes=16 * MiB, page_size=1000, lease_min_ms=1, lease_max_ms=86_400_000
)
"""The database's limits (``dbal.limit_value``); ``import_bytes`` is a client-side limit only."""

SQL_LIMITS: tuple[str, ...] = tuple(f.name for f in fields(Limits) if f.name != "import_bytes")
"""The limits the database enforces too, by the same names."""

# The range a configured value may take: within the hard limit (a minimum may only rise).
CONFIGURABLE: dict[str, tuple[int, int]] = {
    name: (1, value) for name, value in asdict(HARD).items()
}
CONFIGURABLE["definition_bytes"] = (1, HARD.definition_bytes * 2 // 3 - 1)
CONFIGURABLE["lease_min_ms"] = (HARD.lease_min_ms, HARD.lease_max_ms)

# name -> (what it bounds, unit)
DESCRIPTIONS: dict[str, tuple[str, str]] = {
    "definition_bytes": ("nodes + edges + variables + config, as compact JSON", "bytes"),
    "nodes": ("nodes in one definition", "items"),
    "json_depth": ("nesting of arrays/objects in nodes, edges, variables, config", "levels"),
    "name_length": ("workflow name", "characters"),
    "description_length": ("workflow description", "characters"),
    "tags": ("tags of one workflow", "items"),
    "tag_length": ("one tag", "characters"),
    "tenant_id_length": ("tenant id", "characters"),
    "user_id_length": ("user id", "characters"),
    "search_length": ("search text (`search()`, filter `search`)", "characters"),
    "search_terms": ("words in a search text", "items"),
    "filter_values": ("values of one filter field (`ids`, `tags`, `name`, …)", "items"),
    "list_window": ("page * limit of `list` (rows skipped + returned)", "rows"),
    "page_size": ("`limit` of one `list` or `search` (`find_by_field`: the hard one)", "rows"),
    "lease_min_ms": ("shortest lock lease (`timeout_ms`)", "ms"),
    "lease_max_ms": ("longest lock lease (`timeout_ms`)", "ms"),
    "duration_max_ms": ("`execution_time_ms` of one execution (30 days)", "ms"),
    "error_length": ("error text of one execution", "characters"),
    "execution_id_length": ("execution id", "characters"),
    "import_bytes": ("one import file or text (checked before parsing)", "bytes"),
}

TIME_MIN = datetime(1970, 1, 1, tzinfo=UTC)
"""Times (started_at, windows) are accepted from the Unix epoch …"""
TIME_MAX = datetime(9999, 12, 31, tzinfo=UTC)
"""… to the end of year 9999."""


def limits_table() -> str:
    """The README's table of limits (Markdown), generated from the constants."""
    lines = [
        "| limit | bounds | default | database (hard) |",
        "|---|---|---|---|",
    ]
    for f in fields(Limits):
        what, unit = DESCRIPTIONS[f.name]
        default = getattr(DEFAULTS, f.name)
        hard = f"{getattr(HARD, f.name):,}" if f.name in SQL_LIMITS else "— (client only)"
        lines.append(f"| `{f.name}` | {what} | {default:,} {unit} | {hard} |")
    lines.append(
        f"| times | `started_at`, `start`, `end` | {TIME_MIN:%Y-%m-%d} … {TIME_MAX:%Y-%m-%d} UTC"
        " | — |"
    )
    return "\n".join(lines)
