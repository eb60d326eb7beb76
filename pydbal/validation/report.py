"""The validation report model: :class:`ValidationIssue`, :class:`ValidationReport`, the
collector the checks write findings into, and the small helpers they share (path quoting,
number tests)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

VALIDATOR_VERSION: int = 1
"""Version of the rules (see :mod:`pydbal.validation`); stored with every result. Bump it
whenever a rule changes."""


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class ValidationIssue(_Model):
    """One finding: a stable ``code``, a ``path`` into the definition, a readable ``message``."""

    code: str
    path: str
    message: str
    severity: Literal["error", "warning"]


class ValidationReport(_Model):
    """The verdict on a definition. ``valid`` is true when there is no error (warnings allowed)."""

    valid: bool
    errors: list[ValidationIssue]
    warnings: list[ValidationIssue]
    validator_version: int


class Collector:
    """The findings of one validation run, errors and warnings in the order they were found."""

    def __init__(self) -> None:
        self.errors: list[ValidationIssue] = []
        self.warnings: list[ValidationIssue] = []

    def error(self, code: str, path: str, message: str) -> None:
        self.errors.append(ValidationIssue(code=code, path=path, message=message, severity="error"))

    def warning(self, code: str, path: str, message: str) -> None:
        self.warnings.append(
            ValidationIssue(code=code, path=path, message=message, severity="warning")
        )


def quote_key(key: str) -> str:
    """A key as it appears in a path: JSON-quoted."""
    return json.dumps(key, ensure_ascii=False)


def is_index(value: Any) -> bool:
    """A non-negative int (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def is_number(value: Any) -> bool:
    """An int or a float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
