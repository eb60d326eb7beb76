"""Tests of pydbal.validation: hand-written fixtures per rule, the shared corpus, a fuzz test."""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pydbal.errors import DBALError, ErrorCode
from pydbal.validation import (
    VALIDATOR_VERSION,
    ValidationIssue,
    ValidationReport,
    coerce_json,
    validate_definition,
)

SET = "n8n-nodes-base.set"
IF = "n8n-nodes-base.if"
STICKY = "n8n-nodes-base.stickyNote"


def node(name: str, type_: str = SET, id_: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": id_ or f"id-{name}", "name": name, "type": type_, "parameters": {}, **extra}


def to(*targets: str, type_: str = "main") -> list[dict[str, Any]]:
    return [{"node": t, "type": type_, "index": 0} for t in targets]


def main(*outputs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"main": list(outputs)}


def codes(report: ValidationReport) -> list[str]:
    return [i.code for i in report.errors]


def wcodes(report: ValidationReport) -> list[str]:
    return [i.code for i in report.warnings]


def issues(report: ValidationReport, code: str) -> list[ValidationIssue]:
    return [i for i in report.errors + report.warnings if i.code == code]


CHAIN_NODES = [node("Start", "n8n-nodes-base.manualTrigger"), node("Set"), node("End")]
CHAIN_EDGES = {"Start": main(to("Set")), "Set": main(to("End"))}


# ------------------------------------------------------------------------------------------------
# Shapes and the report model


def test_valid_chain_keyed_by_name_list_form() -> None:
    report = validate_definition(CHAIN_NODES, CHAIN_EDGES)
    assert report.valid
    assert report.errors == [] and report.warnings == []
    assert report.validator_version == VALIDATOR_VERSION == 1


def test_keyed_by_id_dict_form() -> None:
    nodes = [node("Start", id_="a"), node("Check", "logic.if", id_="b"), node("End", id_="c")]
    edges = {
        "a": {"main": {"0": to("b")}},
        "b": {"main": {"0": to("c")}, "error": {"0": to("c")}},
    }
    report = validate_definition(nodes, edges)
    assert report.valid, report.errors
    assert report.warnings == []


def test_key_by_id_and_target_by_name_mixed() -> None:
    nodes = [node("Start", id_="a"), node("End", id_="b")]
    assert validate_definition(nodes, {"a": main(to("End"))}).valid
    assert validate_definition(nodes, {"Start": main(to("b"))}).valid


def test_resolution_prefers_id_over_name() -> None:
    # Node "A" has id "x"; node "B" is *named* "x". The key "x" must resolve to A (by id).
    nodes = [node("A", id_="x"), node("x", id_="y"), node("C", id_="z")]
    report = validate_definition(nodes, {"x": main(to("C"))})
    orphans = issues(report, "ORPHANED_NODE")
    assert [i.path for i in orphans] == ["nodes[1]"]


def test_any_output_type_counts_as_a_connection() -> None:
    nodes = [
        node("Agent", "@n8n/n8n-nodes-langchain.agent"),
        node("Model", "@n8n/n8n-nodes-langchain.lmChatOpenAi"),
        node("Tool", "@n8n/n8n-nodes-langchain.toolCalculator"),
    ]
    edges = {
        "Model": {"ai_languageModel": [to("Agent", type_="ai_languageModel")]},
        "Tool": {"ai_tool": [to("Agent", type_="ai_tool")]},
    }
    report = validate_definition(nodes, edges)
    assert report.valid and report.warnings == []


def test_null_and_empty_output_lists_are_accepted() -> None:
    edges = {"Start": {"main": [None, [], to("Set")]}, "Set": main(to("End"))}
    assert validate_definition(CHAIN_NODES, edges).valid


def test_report_serialises_camel_case() -> None:
    report = validate_definition(CHAIN_NODES, {})
    dumped = report.model_dump(by_alias=True)
    assert dumped["validatorVersion"] == VALIDATOR_VERSION
    assert set(dumped) == {"valid", "errors", "warnings", "validatorVersion"}
    assert ValidationReport.model_validate(dumped) == report
    assert ValidationReport.model_validate(report.model_dump()) == report
    issue = report.warnings[0].model_dump(by_alias=True)
    assert set(issue) == {"code", "path", "message", "severity"}


# ------------------------------------------------------------------------------------------------
# Input coercion


def test_json_string_inputs_give_the_same_report() -> None:
    nodes = [*CHAIN_NODES, node("Lonely", timeout=10)]
    variables = {"x": {"type": "number", "default": 1}}
    config = {"executionTimeout": 7200}
    as_objects = validate_definition(nodes, CHAIN_EDGES, variables, config)
    as_text = validate_definition(
        json.dumps(nodes), json.dumps(CHAIN_EDGES), json.dumps(variables), json.dumps(config)
    )
    as_bytes = validate_definition(json.dumps(nodes).encode(), json.dumps(CHAIN_EDGES).encode())
    assert as_text == as_objects
    assert wcodes(as_objects) == ["ORPHANED_NODE", "NODE_TIMEOUT_RANGE", "EXECUTION_TIMEOUT_RANGE"]
    assert wcodes(as_bytes) == ["ORPHANED_NODE", "NODE_TIMEOUT_RANGE"]


@pytest.mark.parametrize(
    ("nodes", "edges", "variables", "config", "issue"),
    [
        ("not json", {}, None, None, "INVALID_NODES"),
        ('{"a": 1}', {}, None, None, "INVALID_NODES"),
        ({"a": 1}, {}, None, None, "INVALID_NODES"),
        (None, {}, None, None, "INVALID_NODES"),
        ("[NaN]", {}, None, None, "INVALID_NODES"),
        ("[1e999]", {}, None, None, "INVALID_NODES"),
        ([math.inf], {}, None, None, "INVALID_NODES"),
        ([object()], {}, None, None, "INVALID_NODES"),
        (b"\xff\xfe", {}, None, None, "INVALID_NODES"),
        ([], "[1, 2]", None, None, "INVALID_EDGES"),
        ([], "{", None, None, "INVALID_EDGES"),
        ([], [], None, None, "INVALID_EDGES"),
        ([], '"text"', None, None, "INVALID_EDGES"),
        ([], {}, 5, None, "INVALID_VARIABLES"),
        ([], {}, [{"type": "string"}], None, "INVALID_VARIABLES"),
        ([], {}, [{"name": "a"}, {"name": "a"}], None, "INVALID_VARIABLES"),
        ([], {}, None, "[]", "INVALID_CONFIG"),
    ],
)
def test_structurally_broken_input_raises(
    nodes: Any, edges: Any, variables: Any, config: Any, issue: str
) -> None:
    with pytest.raises(DBALError) as info:
        validate_definition(nodes, edges, variables, config)
    assert info.value.code is ErrorCode.VALIDATION_ERROR
    assert info.value.details["issues"] == [issue]


def test_recursive_python_object_raises_dbal_error() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(DBALError):
        validate_definition(loop, {})


def test_coerce_json_defaults_and_normalisation() -> None:
    assert coerce_json(None, "edges") == {}
    assert coerce_json("null", "edges") == {}
    assert coerce_json(None, "variables") == {}
    assert coerce_json(None, "config") == {}
    assert coerce_json("[]", "nodes") == []
    assert coerce_json(({"a": (1, 2)},), "nodes") == [{"a": [1, 2]}]
    assert coerce_json({1: "x"}, "edges") == {"1": "x"}
    listed = [{"name": "a", "type": "string", "default": "x"}, {"name": "b"}]
    assert coerce_json(listed, "variables") == {"a": listed[0], "b": listed[1]}
    with pytest.raises(ValueError):
        coerce_json([], "bogus")


# ------------------------------------------------------------------------------------------------
# Node rules


@pytest.mark.parametrize("attr", ["id", "name", "type"])
def test_missing_node_attribute_is_an_error(attr: str) -> None:
    nodes = [node("Start"), node("End")]
    del nodes[1][attr]
    target = "id-End" if attr == "name" else "End"
    report = validate_definition(nodes, {"Start": main(to(target))})
    assert codes(report) == ["INVALID_NODES"]
    assert report.errors[0].path == f"nodes[1].{attr}"


def test_empty_or_non_string_node_attributes_are_errors() -> None:
    report = validate_definition([{"id": "", "name": 3, "type": None}, "node"], {})
    assert [(i.code, i.path) for i in report.errors] == [
        ("INVALID_NODES", "nodes[0].id"),
        ("INVALID_NODES", "nodes[0].name"),
        ("INVALID_NODES", "nodes[0].type"),
        ("INVALID_NODES", "nodes[1]"),
    ]


def test_duplicate_node_id_and_name() -> None:
    assert validate_definition([node("A", id_="1"), node("B", id_="2")], {"A": main(to("B"))}).valid
    dup_id = validate_definition([node("A", id_="1"), node("B", id_="1")], {"A": main(to("B"))})
    assert [(i.code, i.path) for i in dup_id.errors] == [("DUPLICATE_NODE_ID", "nodes[1].id")]
    dup_name = validate_definition([node("A", id_="1"), node("A", id_="2")], {"1": main(to("2"))})
    assert [(i.code, i.path) for i in dup_name.errors] == [("DUPLICATE_NODE_NAME", "nodes[1].name")]


# ------------------------------------------------------------------------------------------------
# Edge rules


def test_unknown_source_and_target() -> None:
    edges = {"Ghost": main(to("Set")), "Start": main(to("Set", "Nobody")), "Set": main(to("End"))}
    report = validate_definition(CHAIN_NODES, edges)
    assert [(i.code, i.path) for i in report.errors] == [
        ("UNKNOWN_NODE", 'edges["Ghost"]'),
        ("UNKNOWN_NODE", 'edges["Start"].main[0][1].node'),
    ]
    assert "Nobody" in report.errors[1].message


@pytest.mark.parametrize(
    ("start_edges", "path"),
    [
        ([to("Set")], 'edges["Start"]'),
        ({"main": "Set"}, 'edges["Start"].main'),
        ({"main": [{"node": "Set"}]}, 'edges["Start"].main[0]'),
        ({"main": [["Set"]]}, 'edges["Start"].main[0][0]'),
        ({"main": [[{"type": "main", "index": 0}]]}, 'edges["Start"].main[0][0].node'),
        ({"main": [[{"node": 7}]]}, 'edges["Start"].main[0][0].node'),
        ({"main": {"-1": to("Set")}}, 'edges["Start"].main["-1"]'),
        ({"main": {"first": to("Set")}}, 'edges["Start"].main["first"]'),
        ({"main": {"1.5": to("Set")}}, 'edges["Start"].main["1.5"]'),
        ({"main": [[{"node": "Set", "index": -1}]]}, 'edges["Start"].main[0][0].index'),
        ({"main": [[{"node": "Set", "index": "0"}]]}, 'edges["Start"].main[0][0].index'),
        ({"main": [[{"node": "Set", "index": True}]]}, 'edges["Start"].main[0][0].index'),
        ({"main": [[{"node": "Set", "index": 1.5}]]}, 'edges["Start"].main[0][0].index'),
        ({"main": [[{"node": "Set", "type": 3}]]}, 'edges["Start"].main[0][0].type'),
        ({"ai tool": [["x"]]}, 'edges["Start"]["ai tool"][0][0]'),
    ],
)
def test_malformed_connection_entries(start_edges: Any, path: str) -> None:
    edges = {"Start": start_edges, "Set": main(to("End"))}
    report = validate_definition(CHAIN_NODES, edges)
    assert [(i.code, i.path) for i in report.errors] == [("INVALID_EDGES", path)]


def test_well_formed_indexes_are_accepted() -> None:
    nodes = [node("Start"), node("Route", "n8n-nodes-base.switch"), node("A"), node("B")]
    edges = {
        "Start": {"main": [[{"node": "Route", "type": "main", "index": 0}]]},
        "Route": {"main": {"0": to("A"), "2": to("B")}},
        "A": {"main": [[{"node": "B", "type": "main", "index": 1}]]},
    }
    assert validate_definition(nodes, edges).valid


# ------------------------------------------------------------------------------------------------
# Cycles


def test_cycle_without_branching_is_circular_dependency() -> None:
    nodes = [node("Start"), node("A"), node("B")]
    edges = {"Start": main(to("A")), "A": main(to("B")), "B": main(to("A"))}
    report = validate_definition(nodes, edges)
    assert codes(report) == ["CIRCULAR_DEPENDENCY"]
    issue = report.errors[0]
    assert issue.path == 'cycle["A","B"]'
    assert "'A'" in issue.message and "'B'" in issue.message


def test_self_loop_counts() -> None:
    nodes = [node("Start"), node("A")]
    report = validate_definition(nodes, {"Start": main(to("A")), "A": main(to("A"))})
    assert [(i.code, i.path) for i in report.errors] == [("CIRCULAR_DEPENDENCY", 'cycle["A"]')]
    nodes[1]["type"] = "n8n-nodes-base.filter"
    report = validate_definition(nodes, {"Start": main(to("A")), "A": main(to("A"))})
    assert report.valid and wcodes(report) == ["LOOP"]


def test_cycle_over_non_main_output_counts() -> None:
    nodes = [node("A"), node("B")]
    edges = {"A": {"ai_tool": [to("B")]}, "B": {"ai_memory": [to("A")]}}
    assert codes(validate_definition(nodes, edges)) == ["CIRCULAR_DEPENDENCY"]


@pytest.mark.parametrize(
    ("type_", "name"),
    [
        (IF, "Check"),
        ("n8n-nodes-base.switch", "Route"),
        ("n8n-nodes-base.filter", "Keep"),
        ("n8n-nodes-base.splitInBatches", "Batches"),
        (SET, "Loop Over Items"),
        ("metabuilder.condition", "Cond"),
        ("control.loop", "Loop"),
        ("utils.branch_condition", "Branch"),
    ],
)
def test_cycle_through_a_branching_node_is_a_loop_warning(type_: str, name: str) -> None:
    nodes = [node("Start"), node(name, type_), node("Work")]
    edges = {"Start": main(to(name)), name: main(to("Work")), "Work": main(to(name))}
    report = validate_definition(nodes, edges)
    assert report.valid, report.errors
    loop = issues(report, "LOOP")
    assert len(loop) == 1 and loop[0].severity == "warning"
    assert name in loop[0].message and name in loop[0].path


def test_similar_looking_types_do_not_branch() -> None:
    for type_ in ("n8n-nodes-base.spotify", "n8n-nodes-base.shopify", "n8n-nodes-base.notify"):
        nodes = [node("A", type_), node("B")]
        report = validate_definition(nodes, {"A": main(to("B")), "B": main(to("A"))})
        assert codes(report) == ["CIRCULAR_DEPENDENCY"], type_


def test_node_using_two_outputs_makes_a_cycle_a_loop() -> None:
    nodes = [node("Start"), node("Poll"), node("Wait"), node("Done")]
    edges = {
        "Start": main(to("Poll")),
        "Poll": main(to("Wait"), to("Done")),
        "Wait": main(to("Poll")),
    }
    assert wcodes(validate_definition(nodes, edges)) == ["LOOP"]
    # Two targets on the *same* output do not branch: both always receive the items.
    edges["Poll"] = main(to("Wait", "Done"))
    assert codes(validate_definition(nodes, edges)) == ["CIRCULAR_DEPENDENCY"]


def test_acyclic_diamond_has_no_cycle_issue() -> None:
    nodes = [node("A", IF), node("B"), node("C"), node("D", "n8n-nodes-base.merge")]
    edges = {"A": main(to("B"), to("C")), "B": main(to("D")), "C": main(to("D"))}
    report = validate_definition(nodes, edges)
    assert report.valid and report.warnings == []


# ------------------------------------------------------------------------------------------------
# Orphans


def test_orphaned_node_warning() -> None:
    report = validate_definition([*CHAIN_NODES, node("Alone")], CHAIN_EDGES)
    assert report.valid
    assert [(i.code, i.path) for i in report.warnings] == [("ORPHANED_NODE", "nodes[3]")]


def test_sticky_notes_and_single_nodes_are_not_orphans() -> None:
    assert validate_definition([*CHAIN_NODES, node("Note", STICKY)], CHAIN_EDGES).warnings == []
    assert validate_definition([node("Only")], {}).warnings == []
    assert validate_definition([node("Only"), node("Note", STICKY)], None).warnings == []
    assert validate_definition([], {}).valid


# ------------------------------------------------------------------------------------------------
# Timeouts


@pytest.mark.parametrize(
    ("where", "value", "warned"),
    [
        ("node", 500, True),
        ("node", 1000, False),
        ("node", 3_600_000, False),
        ("node", 3_600_001, True),
        ("parameters", 4_000_000, True),
        ("parameters", 30_000, False),
        ("node", "{{ $json.timeout }}", False),
        ("node", True, False),
    ],
)
def test_node_timeout_range(where: str, value: Any, warned: bool) -> None:
    single = node("Only")
    if where == "node":
        single["timeout"] = value
    else:
        single["parameters"]["timeout"] = value
    report = validate_definition([single], {})
    expected = (
        [
            (
                "NODE_TIMEOUT_RANGE",
                "nodes[0].timeout" if where == "node" else "nodes[0].parameters.timeout",
            )
        ]
        if warned
        else []
    )
    assert [(i.code, i.path) for i in report.warnings] == expected
    assert report.valid


@pytest.mark.parametrize(
    ("value", "warned"),
    [
        (3600, False),
        (-1, False),
        (300, False),
        (3601, True),
        (7200, True),
        (0, True),
        (-5, True),
        ("3600", True),
    ],
)
def test_execution_timeout(value: Any, warned: bool) -> None:
    report = validate_definition([node("Only")], {}, None, {"executionTimeout": value})
    assert wcodes(report) == (["EXECUTION_TIMEOUT_RANGE"] if warned else [])
    assert report.valid


# ------------------------------------------------------------------------------------------------
# Variables


def test_missing_variable_reference_found_recursively() -> None:
    single = node("Only")
    single["parameters"] = {
        "options": {"headers": [{"value": "Bearer {{ $workflow.variables.token }}"}]}
    }
    report = validate_definition([single], {})
    assert [(i.code, i.path) for i in report.errors] == [
        ("MISSING_VARIABLE", "nodes[0].parameters.options.headers[0].value")
    ]
    assert "token" in report.errors[0].message
    declared = validate_definition([single], {}, {"token": {"type": "string"}})
    assert declared.valid


def test_variable_reference_forms() -> None:
    single = node("Only", timeout="{{ $workflow.variables.apiTimeout }}")
    single["parameters"] = {
        "a": "$workflow.variables['quoted name']",
        "b": '={{ $workflow.variables["other"] + $workflow.variables.apiTimeout }}',
        "c": "$workflow.variablesX and $workflow.other",
    }
    report = validate_definition([single], {})
    assert sorted((i.path, i.message.split("'")[1]) for i in report.errors) == [
        ("nodes[0].parameters.a", "quoted name"),
        ("nodes[0].parameters.b", "apiTimeout"),
        ("nodes[0].parameters.b", "other"),
        ("nodes[0].timeout", "apiTimeout"),
    ]
    variables = [
        {"name": "apiTimeout", "type": "number", "default": 5000},
        {"name": "quoted name", "type": "any"},
        {"name": "other", "type": "string"},
    ]
    assert validate_definition([single], {}, variables).valid


@pytest.mark.parametrize(
    ("decl", "path"),
    [
        ({"type": "integer"}, 'variables["v"].type'),
        ({"type": 3}, 'variables["v"].type'),
        ({"type": "number", "default": "5"}, 'variables["v"].default'),
        ({"type": "number", "defaultValue": True}, 'variables["v"].defaultValue'),
        ({"type": "boolean", "default": 0}, 'variables["v"].default'),
        ({"type": "string", "default": 1}, 'variables["v"].default'),
        ({"type": "array", "default": {}}, 'variables["v"].default'),
        ({"type": "object", "default": []}, 'variables["v"].default'),
        ({"type": "date", "default": "tomorrow"}, 'variables["v"].default'),
    ],
)
def test_invalid_variable_type(decl: dict[str, Any], path: str) -> None:
    report = validate_definition([node("Only")], {}, {"v": decl})
    assert [(i.code, i.path) for i in report.errors] == [("INVALID_VARIABLE_TYPE", path)]


@pytest.mark.parametrize(
    "decl",
    [
        {"type": "string", "default": "x"},
        {"type": "number", "defaultValue": 0.8},
        {"type": "boolean", "default": False},
        {"type": "array", "default": [1]},
        {"type": "object", "default": {"a": 1}},
        {"type": "date", "default": "2024-05-01T10:00:00Z"},
        {"type": "any", "default": None},
        {"type": "number"},
        {"description": "no type means any", "default": [1]},
        42,
    ],
)
def test_valid_variable_declarations(decl: Any) -> None:
    assert validate_definition([node("Only")], {}, {"v": decl}).valid


# ------------------------------------------------------------------------------------------------
# Speed


def test_hundred_node_graph_is_fast() -> None:
    nodes = [node(f"N{i}", IF if i % 10 == 0 else SET) for i in range(100)]
    edges: dict[str, Any] = {}
    for i in range(99):
        targets = [to(f"N{i + 1}")]
        if i % 10 == 9:
            targets.append(to(f"N{i - 9}"))  # back edge: loops through the If at i - 9
        edges[f"N{i}"] = {"main": targets, "ai_tool": [to(f"N{(i * 7) % 100}")]}
    start = time.perf_counter()
    for _ in range(10):
        report = validate_definition(nodes, edges)
    elapsed = (time.perf_counter() - start) / 10
    assert report.valid
    assert elapsed < 0.05, f"{elapsed * 1000:.1f} ms per validation"


# ------------------------------------------------------------------------------------------------
# Fuzz: random JSON-ish input returns a report or raises DBALError, nothing else.

_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
_json = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)
_names = st.sampled_from(["A", "B", "C", "id-A", "Loop Over Items", "", "x"])
_node = st.fixed_dictionaries(
    {},
    optional={
        "id": _names | _json,
        "name": _names | _json,
        "type": st.sampled_from([SET, IF, STICKY, "control.loop"]) | _json,
        "timeout": _json,
        "parameters": st.dictionaries(
            st.text(max_size=4),
            st.sampled_from(["{{ $workflow.variables.v }}", "$workflow.variables['w']"]) | _json,
            max_size=3,
        ),
    },
)
_target = st.fixed_dictionaries(
    {}, optional={"node": _names | _json, "type": _json, "index": st.integers(-2, 3) | _json}
)
_targets = st.lists(_target | _json, max_size=3) | _json
_outputs = st.lists(_targets, max_size=3) | st.dictionaries(
    st.sampled_from(["0", "1", "-1", "x", " 2"]), _targets, max_size=3
)
_edges = st.dictionaries(
    _names,
    st.dictionaries(st.sampled_from(["main", "error", "ai_tool"]), _outputs) | _json,
    max_size=4,
)


def _maybe_text(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return strategy | strategy.map(lambda v: json.dumps(v)) | st.text(max_size=10)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    nodes=_maybe_text(st.lists(_node | _json, max_size=5) | _json),
    edges=_maybe_text(_edges | _json),
    variables=_maybe_text(st.dictionaries(_names, _json, max_size=3) | _json),
    config=_maybe_text(st.fixed_dictionaries({}, optional={"executionTimeout": _json}) | _json),
)
def test_fuzz_only_dbal_errors(nodes: Any, edges: Any, variables: Any, config: Any) -> None:
    try:
        report = validate_definition(nodes, edges, variables, config)
    except DBALError as exc:
        assert exc.code is ErrorCode.VALIDATION_ERROR
        assert exc.details["issues"]
        return
    assert report.valid == (not report.errors)
    json.dumps(report.model_dump(by_alias=True))


def _reference_cyclic_components(n: int, arcs: set[tuple[int, int]]) -> set[frozenset[int]]:
    """Cyclic strongly connected components by brute-force reachability (small graphs only)."""
    reach = [[(i, j) in arcs for j in range(n)] for i in range(n)]
    for k in range(n):
        for i in range(n):
            for j in range(n):
                reach[i][j] = reach[i][j] or (reach[i][k] and reach[k][j])
    return {
        frozenset(j for j in range(n) if reach[i][j] and reach[j][i])
        for i in range(n)
        if reach[i][i]
    }


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(1, 7),
    arcs=st.sets(
        st.tuples(st.integers(0, 6), st.integers(0, 6), st.sampled_from(["main", "ai_tool"]))
    ),
    branching=st.sets(st.integers(0, 6)),
    by_id=st.booleans(),
)
def test_fuzz_cycles_match_reference(
    n: int, arcs: set[tuple[int, int, str]], branching: set[int], by_id: bool
) -> None:
    nodes = [node(f"N{i}", IF if i in branching else SET, id_=f"i{i}") for i in range(n)]
    arcs = {(a, b, t) for a, b, t in arcs if a < n and b < n}
    edges: dict[str, Any] = {}
    for a, b, t in sorted(arcs):
        key = f"i{a}" if by_id else f"N{a}"
        edges.setdefault(key, {}).setdefault(t, [[]])[0].append({"node": f"N{b}", "index": 0})
    # A node that uses two outputs (here: main and ai_tool) can branch as well.
    multi_output = {a for a in range(n) if len({t for x, _, t in arcs if x == a}) > 1}
    report = validate_definition(nodes, edges)
    expected = _reference_cyclic_components(n, {(a, b) for a, b, _ in arcs})
    found = {
        frozenset(int(name[1:]) for name in json.loads(i.path[len("cycle") :]))
        for i in issues(report, "CIRCULAR_DEPENDENCY") + issues(report, "LOOP")
    }
    assert found == expected
    for issue in report.errors + report.warnings:
        if issue.code in ("LOOP", "CIRCULAR_DEPENDENCY"):
            members = {int(name[1:]) for name in json.loads(issue.path[len("cycle") :])}
            assert (issue.code == "LOOP") == bool(members & (branching | multi_output))
    assert {i.code for i in report.errors} <= {"CIRCULAR_DEPENDENCY"}


# ------------------------------------------------------------------------------------------------
# Corpus


def _corpus_dir() -> Path:
    env = os.environ.get("PYDBAL_CORPUS")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "corpus"


CORPUS = _corpus_dir()
needs_corpus = pytest.mark.skipif(
    not CORPUS.is_dir(), reason=f"workflow corpus not found at {CORPUS} (set PYDBAL_CORPUS)"
)


def _validate_file(path: Path) -> ValidationReport | None:
    """The report for one corpus file, or None when it is not a workflow definition."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        return None
    edges = data.get("connections") or data.get("edges") or {}
    return validate_definition(data["nodes"], edges, data.get("variables"), data.get("settings"))


@pytest.fixture(scope="module")
def corpus_reports() -> dict[str, ValidationReport]:
    reports: dict[str, ValidationReport] = {}
    for path in sorted(CORPUS.glob("**/*.json")):
        try:
            report = _validate_file(path)
        except DBALError:
            continue
        if report is not None:
            reports[path.relative_to(CORPUS).as_posix()] = report
    return reports


@needs_corpus
def test_corpus_validates_without_unexpected_exceptions(
    corpus_reports: dict[str, ValidationReport],
) -> None:
    folders = Counter(name.split("/")[0] for name in corpus_reports)
    assert folders["metabuilder"] >= 80
    assert folders["n8n-templates"] >= 300


@needs_corpus
def test_corpus_loops_are_common_in_n8n_templates(
    corpus_reports: dict[str, ValidationReport],
) -> None:
    n8n = {k: r for k, r in corpus_reports.items() if k.startswith("n8n-templates/")}
    with_loop = [k for k, r in n8n.items() if "LOOP" in wcodes(r)]
    ratio = len(with_loop) / len(n8n)
    assert 1 / 12 < ratio < 1 / 5, ratio  # "about one in eight"
    circular = [k for k, r in n8n.items() if "CIRCULAR_DEPENDENCY" in codes(r)]
    assert len(circular) <= 3  # loops in n8n are nearly always through a branching node


@needs_corpus
def test_corpus_sticky_notes_never_orphaned(corpus_reports: dict[str, ValidationReport]) -> None:
    checked = 0
    for name, report in corpus_reports.items():
        data = json.loads((CORPUS / name).read_text(encoding="utf-8"))
        sticky = {
            f"nodes[{i}]"
            for i, n in enumerate(data["nodes"])
            if isinstance(n, dict) and n.get("type") == STICKY
        }
        checked += len(sticky)
        assert not sticky & {i.path for i in issues(report, "ORPHANED_NODE")}, name
    assert checked > 500


@needs_corpus
def test_corpus_hand_checked_verdicts(corpus_reports: dict[str, ValidationReport]) -> None:
    # A polling loop "Wait 5 second" -> "Try to download the result" -> Switch -> back: a LOOP
    # warning (the Switch's outputs 1 and 2 leave it); sticky notes present, nothing orphaned.
    adobe = corpus_reports[
        "n8n-templates/PDF_and_Document_Processing_Manipulate_PDF_with_Adobe_developer_API.json"
    ]
    assert adobe.valid
    assert [(i.code, i.path) for i in adobe.warnings] == [
        ("LOOP", 'cycle["Wait 5 second","Try to download the result","Switch"]')
    ]

    # A NoOp node "Table: Tools" wired to itself on main: an endless loop, the only error.
    logo = corpus_reports[
        "n8n-templates/Google_Drive_and_Google_Sheets_Extract_Information_from_a_Logo_Sheet_using"
        "_forms_AI_Google_Sheet_and_Airtable.json"
    ]
    assert [(i.code, i.path) for i in logo.errors] == [
        ("CIRCULAR_DEPENDENCY", 'cycle["Table: Tools"]')
    ]
    assert "LOOP" in wcodes(logo)  # its "Loop Over Attributes" loop is fine

    # MetaBuilder, keyed by id, dict form with an "error" output type; node timeout 30 (ms).
    approval = corpus_reports[
        "metabuilder/packages__examples__workflows__complex-approval-flow.workflow.json"
    ]
    assert approval.valid
    assert ("NODE_TIMEOUT_RANGE", "nodes[5].timeout") in [
        (i.code, i.path) for i in approval.warnings
    ]

    # Declares its variables and references them with {{ $workflow.variables.x }}: clean.
    variables = corpus_reports["metabuilder/docs__N8N_VARIABLES_EXAMPLE.json"]
    assert variables.valid and variables.warnings == []

    # Broken on purpose: targets serialised as "[object Object]", keys that match no node.
    demo = corpus_reports[
        "metabuilder/workflow__examples__python__data_processing_demo__workflow.json"
    ]
    assert not demo.valid
    assert set(codes(demo)) == {"UNKNOWN_NODE"}

    # An old n8n export without node ids: invalid only because of the missing ids.
    old = corpus_reports["n8n-templates/Telegram_Detect_toxic_language_in_Telegram_messages.json"]
    assert old.errors and {(i.code, i.path.split(".")[-1]) for i in old.errors} == {
        ("INVALID_NODES", "id")
    }


@needs_corpus
def test_corpus_id_and_name_keyed_metabuilder_files_are_valid(
    corpus_reports: dict[str, ValidationReport],
) -> None:
    by_id = [k for k in corpus_reports if k.startswith("metabuilder/packages__")]
    by_name = [k for k in corpus_reports if k.startswith("metabuilder/gameengine__")]
    assert by_id and by_name
    email = {k for k in by_id if "email_client" in k}  # nodes without names, nextNode chains
    assert all(corpus_reports[k].valid for k in by_name)
    assert all(corpus_reports[k].valid for k in set(by_id) - email)
    assert not any(corpus_reports[k].valid for k in email)
