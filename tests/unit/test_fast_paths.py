"""The shortcuts of the bulk and transfer paths (issue 13) give what the long way gives.

- ``coerce_json`` returns JSON data as is instead of the JSON round trip: the same value, of the
  same types, with the same key order, for every value it accepts; the same error for every
  value it refuses (the round trip, written out here, is the reference).
- ``check_variable_refs`` skips the walk when the nodes' JSON holds no "$workflow": the same
  issues as the walk, on the corpus and on generated nodes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pydbal import DBALError
from pydbal.formats import parse_import
from pydbal.validation import coerce, validate_definition
from pydbal.validation import variables as var_checks

FIELDS = ("nodes", "edges", "variables", "config")


def _round_trip(value: Any, field: str) -> Any:
    """coerce_json as it was: every Python value through json.dumps/json.loads."""
    saved = coerce._plain
    coerce._plain = lambda value: False  # type: ignore[assignment]
    try:
        return coerce.coerce_json(value, field)
    finally:
        coerce._plain = saved  # type: ignore[assignment]


def _same(a: Any, b: Any) -> bool:
    """Equal, with the same types everywhere and the same key order (-0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return bool(a == b)


def _outcome(fn: Any, value: Any, field: str) -> tuple[str, Any]:
    try:
        return "ok", fn(value, field)
    except DBALError as exc:
        return "error", (exc.code, exc.message, exc.details)


def _check(value: Any) -> None:
    for field in FIELDS:
        fast = _outcome(coerce.coerce_json, value, field)
        slow = _outcome(_round_trip, value, field)
        assert fast[0] == slow[0], (field, value, fast, slow)
        if fast[0] == "ok":
            assert _same(fast[1], slow[1]), (field, value, fast[1], slow[1])
        else:
            assert fast[1] == slow[1]


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=8)
    | st.sampled_from(["\ud800", "a\udfffb", "$workflow.variables.x", "-0"])
)
_keys = st.text(max_size=5) | st.integers(-3, 3) | st.booleans() | st.none() | st.floats(-2, 2)
_json_like = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4)
        | st.dictionaries(_keys, inner, max_size=3)
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_json_like, max_size=4) | st.dictionaries(st.text(max_size=6), _json_like))
def test_coerce_json_as_the_round_trip(value: Any) -> None:
    _check(value)


class _Str(str):
    pass


class _Int(int):
    pass


class _Dict(dict):  # type: ignore[type-arg]
    pass


@pytest.mark.parametrize(
    "value",
    [
        [],
        {},
        [-0.0, 0.0, 1e16, 1e-7, 2**80, -(2**80), True, None, "\ud800"],
        {"b": 1, "a": [1, {"z": 2, "y": [3.5]}]},
        [float("nan")],
        {"x": float("inf")},
        [float("-inf")],
        [(1, 2), {"t": (3,)}],
        {1: "a", "1": "b"},
        {"k": {True: 1, None: 2, 1.5: 3}},
        [_Str("s"), _Int(3)],
        [_Dict(a=1)],
        {"x": [[[[[[[[[[1]]]]]]]]]]},
        [{"ok": [1, 2, {"deeper": "x"}]}, b"bytes"],
        [object()],
        {"when": __import__("datetime").date(2020, 1, 1)},
        [{"id": __import__("uuid").UUID(int=1)}],
    ],
)
def test_coerce_json_edge_values(value: Any) -> None:
    _check(value)


def test_coerce_json_deep_and_cyclic_values_take_the_round_trip() -> None:
    deep: Any = 1
    for _ in range(150):  # deeper than the walk goes: the round trip copies it
        deep = [deep]
    _check(deep)
    assert coerce.coerce_json(deep, "nodes") is not deep
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    _check(cyclic)  # the round trip's "Circular reference": the same error both ways
    shallow = [{"a": [1, 2]}]
    assert coerce.coerce_json(shallow, "nodes") is shallow  # JSON data is not copied


# --- variable references ---------------------------------------------------------------------


def _walked(nodes: Any, edges: Any, variables: Any, settings_: Any) -> Any:
    saved = var_checks._without_references
    var_checks._without_references = lambda nodes: False  # type: ignore[assignment]
    try:
        return validate_definition(nodes, edges, variables, settings_)
    finally:
        var_checks._without_references = saved  # type: ignore[assignment]


def _corpus() -> list[Path]:
    here = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
    return sorted(here.glob("**/*.json")) if here.is_dir() else []


@pytest.mark.skipif(not _corpus(), reason="no shared corpus beside the checkout")
def test_reports_on_the_corpus_equal_the_walk() -> None:
    compared = 0
    for path in _corpus():
        try:
            definitions = parse_import(path.read_bytes(), source_name=path.name)
        except DBALError:
            continue
        for d in definitions:
            found = d.config.get("settings")
            args = (d.nodes, d.edges, d.variables, found if isinstance(found, dict) else None)
            assert validate_definition(*args) == _walked(*args), path.name
            compared += 1
    assert compared > 100


_node_strings = st.sampled_from(
    [
        "plain",
        "{{ $workflow.variables.known }}",
        "{{ $workflow.variables.missing }}",
        "{{ $workflow.variables['quoted'] }}",
        '$workflow.variables["dq"]',
        "$workflowish",
        "$work flow",
    ]
)
_node_values = st.recursive(
    _node_strings | st.integers() | st.none(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_node_strings, inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(_node_strings | st.just("parameters"), _node_values), max_size=4))
def test_reference_check_equals_the_walk(nodes: list[Any]) -> None:
    variables = {"known": {"type": "string"}}
    nodes = json.loads(json.dumps(nodes))
    assert validate_definition(nodes, {}, variables, None) == _walked(nodes, {}, variables, None)


# --- the collector paused during bulk transfers ----------------------------------------------


def test_gc_paused_nests_and_restores() -> None:
    import gc

    from pydbal import gcpause

    assert gc.isenabled()
    with gcpause.paused():
        assert not gc.isenabled()
        with gcpause.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer transfer still runs
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gcpause.paused():
        raise RuntimeError("a failed transfer")
    assert gc.isenabled()
    gc.disable()  # an application that runs without the collector keeps it off
    try:
        with gcpause.paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
    saved = gcpause.PAUSE
    gcpause.PAUSE = False
    try:
        with gcpause.paused():
            assert gc.isenabled()
    finally:
        gcpause.PAUSE = saved
