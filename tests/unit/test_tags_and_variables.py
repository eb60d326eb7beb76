"""Tags and variables are read by one set of rules (pydbal.validation.coerce) whichever way a
workflow comes in: create/update inputs (pydbal.models) or an import (pydbal.formats). No
database."""

from __future__ import annotations

from typing import Any

import pytest

from pydbal.errors import DBALError, ErrorCode
from pydbal.formats import parse_import
from pydbal.models import CreateWorkflowInput, UpdateWorkflowInput, WorkflowFilter
from pydbal.validation import coerce_json, tag_list, variables_by_name

TAGS: list[tuple[Any, list[str]]] = [
    (None, []),
    ("", []),
    ("a", ["a"]),
    (" x, y ,z ", ["x", "y", "z"]),
    ("a, b,,c ", ["a", "b", "c"]),
    ("a,a, b ,b", ["a", "b"]),
    ([], []),
    (["a", "b"], ["a", "b"]),
    ([" a ", "a", "", "b"], ["a", "b"]),
]


@pytest.mark.parametrize(("value", "names"), TAGS)
def test_tag_list(value: Any, names: list[str]) -> None:
    assert tag_list(value) == names


@pytest.mark.parametrize("value", [5, {"a": 1}, ["a", 1], [{"name": "a"}]])
def test_tag_list_leaves_what_is_not_tags_to_the_caller(value: Any) -> None:
    assert tag_list(value) is value


@pytest.mark.parametrize(("value", "names"), TAGS)
def test_import_reads_tags_by_the_rule(value: Any, names: list[str]) -> None:
    assert parse_import({"nodes": [], "tags": value})[0].tags == names


def _read_by_the_inputs(value: Any) -> list[Any]:
    """The tags as create, update and the list filter read them, which must agree."""
    created = CreateWorkflowInput(name="w", tags=value).tags
    if value is not None:
        assert UpdateWorkflowInput(tags=value).tags == created
        assert WorkflowFilter(tags=value).tags == created
    return created


# the inputs on which the models' own reading already agreed with the import's
AGREED = [case for case in TAGS if case[0] not in ("a,a, b ,b", [" a ", "a", "", "b"])]


@pytest.mark.parametrize(("value", "names"), AGREED)
def test_inputs_read_tags_as_import_does(value: Any, names: list[str]) -> None:
    assert _read_by_the_inputs(value) == parse_import({"nodes": [], "tags": value})[0].tags


@pytest.mark.parametrize(("value", "names"), [case for case in TAGS if case not in AGREED])
def test_inputs_drop_repeats_and_blanks_as_import_does(value: Any, names: list[str]) -> None:
    assert _read_by_the_inputs(value) == parse_import({"nodes": [], "tags": value})[0].tags


VARIABLES: list[Any] = [
    None,
    {},
    {"a": {"type": "string"}, "b": 3},
    [{"name": "a", "type": "string", "default": "x"}, {"name": "b", "type": "number"}],
]


@pytest.mark.parametrize("value", VARIABLES)
def test_variables_read_alike(value: Any) -> None:
    expected = variables_by_name(value)
    assert coerce_json(value, "variables") == expected
    assert CreateWorkflowInput(name="w", variables=value or {}).variables == expected
    assert parse_import({"nodes": [], "variables": value})[0].variables == expected


@pytest.mark.parametrize(
    "value", [[{"type": "string"}], [{"name": "a"}, {"name": "a"}], [{"name": ""}], ["a"], 3]
)
def test_variables_refused_alike(value: Any) -> None:
    with pytest.raises(ValueError, match="variable") as by_rule:
        variables_by_name(value)
    with pytest.raises(DBALError) as coerced:  # create/update inputs, validate_definition
        coerce_json(value, "variables")
    assert coerced.value.code == ErrorCode.VALIDATION_ERROR
    assert coerced.value.details["issues"] == ["INVALID_VARIABLES"]
    assert coerced.value.message == str(by_rule.value)
    with pytest.raises(DBALError) as imported:
        parse_import({"nodes": [], "variables": value})
    assert imported.value.code == ErrorCode.INVALID_EXPORT_FORMAT
    assert imported.value.details["reason"] == str(by_rule.value)
