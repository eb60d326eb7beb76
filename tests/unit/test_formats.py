"""pydbal.formats: import shapes, normalization, export bundles. No database."""

from __future__ import annotations

import codecs
import json
import os
from dataclasses import asdict
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pydbal.errors import DBALError, ErrorCode
from pydbal.formats import (
    EXPORT_FORMAT,
    Definition,
    build_bundle,
    derive_name,
    parse_import,
)
from pydbal.formats.depth import PARSE_DEPTH_MAX

# --------------------------------------------------------------------------------------------
# corpus


def _corpus_dir() -> Path:
    env = os.environ.get("PYDBAL_CORPUS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "corpus"


CORPUS = _corpus_dir()
CORPUS_FILES = sorted(CORPUS.glob("**/*.json")) if CORPUS.is_dir() else []
NO_CORPUS = pytest.mark.skipif(
    not CORPUS_FILES, reason=f"no workflow corpus at {CORPUS} (set PYDBAL_CORPUS)"
)

SOURCE_FIELDS = {
    "id",
    "tenantId",
    "tenant_id",
    "createdBy",
    "created_by",
    "updatedBy",
    "createdAt",
    "updatedAt",
    "executionCount",
    "lastExecutedAt",
    "lastExecutionStatus",
    "averageExecutionTime",
    "isLocked",
    "lockedBy",
    "lockedAt",
    "lockToken",
    "lockExpiresAt",
    "validationStatus",
    "validationErrors",
    "validatedAt",
    "validUntil",
    "validatorVersion",
}
T1 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
T2 = datetime(2025, 6, 7, 8, 9, 10, tzinfo=UTC)
REPORT = {"valid": True, "errors": [], "warnings": [{"code": "ORPHANED_NODE", "node": "x"}]}


def _oracle(raw: bytes) -> Any:
    """What the stdlib makes of a file: the parsed value, or None when it is not JSON."""
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except ValueError:
        return None


def _importable(value: Any) -> bool:
    def one(obj: Any) -> bool:
        if not isinstance(obj, dict):
            return False
        if isinstance(obj.get("nodes"), list):
            return True
        wrapped = obj.get("workflow")
        return isinstance(wrapped, dict) and (
            isinstance(wrapped.get("nodes"), list)
            or (
                isinstance(wrapped.get("workflow"), dict)
                and isinstance(wrapped["workflow"].get("nodes"), list)
            )
        )

    if isinstance(value, list):
        return bool(value) and all(one(v) for v in value)
    return one(value)


def _strip_time(bundle: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in bundle.items() if k != "exportedAt"}


def _assert_round_trip(defn: Definition) -> None:
    first = build_bundle(asdict(defn), REPORT, T1)
    again = parse_import(first)
    assert again == [defn]
    # through bytes too, as a file would travel
    assert parse_import(orjson.dumps(first)) == [defn]
    second = build_bundle(asdict(again[0]), REPORT, T2)
    assert _strip_time(second) == _strip_time(first)
    assert second["exportedAt"] != first["exportedAt"]


@NO_CORPUS
@pytest.mark.parametrize(
    "path", CORPUS_FILES, ids=[str(p.relative_to(CORPUS)) for p in CORPUS_FILES]
)
def test_corpus_file(path: Path) -> None:
    raw = path.read_bytes()
    value = _oracle(raw)
    if value is None or not _importable(value):
        with pytest.raises(DBALError) as info:
            parse_import(raw, source_name=path.name)
        assert info.value.code == ErrorCode.INVALID_EXPORT_FORMAT
        assert info.value.details["reason"]
        assert info.value.details["source"] == path.name
        return

    defns = parse_import(raw, source_name=path.name)
    assert len(defns) >= 1
    assert all(isinstance(d, Definition) for d in defns)
    tops = value if isinstance(value, list) else [value]
    for defn, top in zip(defns, tops, strict=True):
        assert isinstance(defn.nodes, list) and isinstance(defn.edges, dict)
        assert not SOURCE_FIELDS & set(defn.config), "source fields leaked into config"
        for field_value in (*asdict(defn).values(), *defn.config.values()):
            assert field_value != "${TENANT_ID}"
        if "nodes" in top:
            assert defn.nodes == top["nodes"]
            if "edges" not in top:
                assert defn.edges == (top.get("connections") or {})
            if "settings" in top:
                assert defn.config["settings"] == top["settings"]
            if isinstance(top.get("version"), str):
                assert defn.config["version"] == top["version"]
            if "active" in top:
                assert defn.config["active"] == top["active"]
                assert defn.enabled is None
            if isinstance(top.get("name"), str) and top["name"].strip():
                assert defn.name == top["name"].strip()[:255].rstrip()
            else:
                assert defn.name is None
        _assert_round_trip(defn)
        assert derive_name(defn.nodes, path.name)
        assert derive_name(defn.nodes, None)


@NO_CORPUS
def test_corpus_counts() -> None:
    """The corpus README's numbers: 7 n8n templates do not parse; every MetaBuilder file does."""
    refused: dict[str, list[str]] = {}
    parsed: dict[str, int] = {}
    for path in CORPUS_FILES:
        folder = path.relative_to(CORPUS).parts[0]
        try:
            parse_import(path.read_bytes())
        except DBALError:
            refused.setdefault(folder, []).append(path.name)
        else:
            parsed[folder] = parsed.get(folder, 0) + 1
    if (CORPUS / "n8n-templates").is_dir():
        assert len(refused.get("n8n-templates", [])) == 7, refused
    if (CORPUS / "metabuilder").is_dir():
        # every MetaBuilder file in the corpus has a nodes list
        assert "metabuilder" not in refused, refused["metabuilder"]


# --------------------------------------------------------------------------------------------
# shapes

NODES = [
    {"id": "a", "name": "On webhook", "type": "n8n-nodes-base.webhook", "parameters": {}},
    {"id": "b", "name": "Set", "type": "n8n-nodes-base.set", "parameters": {}},
]
CONNECTIONS = {"On webhook": {"main": [[{"node": "Set", "type": "main", "index": 0}]]}}


def n8n_workflow(**extra: Any) -> dict[str, Any]:
    wf: dict[str, Any] = {
        "id": "AbC123",
        "name": "My flow",
        "nodes": NODES,
        "connections": CONNECTIONS,
        "settings": {"executionOrder": "v1", "executionTimeout": 3600},
        "meta": {"instanceId": "abc"},
        "pinData": {},
        "tags": [{"id": "1", "name": "crm"}, {"id": "2", "name": "sales"}],
        "active": True,
        "versionId": "v-1",
    }
    wf.update(extra)
    return wf


def only(data: Any, **kw: Any) -> Definition:
    defns = parse_import(data, **kw)
    assert len(defns) == 1
    return defns[0]


def refused(data: Any, **kw: Any) -> DBALError:
    with pytest.raises(DBALError) as info:
        parse_import(data, **kw)
    assert info.value.code == ErrorCode.INVALID_EXPORT_FORMAT
    assert isinstance(info.value.details.get("reason"), str) and info.value.details["reason"]
    return info.value


def test_n8n_editor_download() -> None:
    wf = n8n_workflow(createdAt="2024-01-01T00:00:00Z", updatedAt="2024-01-02", triggerCount=1)
    d = only(orjson.dumps(wf))
    assert d.name == "My flow"
    assert d.nodes == NODES
    assert d.edges == CONNECTIONS
    assert d.tags == ["crm", "sales"]
    assert d.enabled is None  # the importer decides; n8n's `active` stays in config
    assert d.category is None
    assert d.variables == {}
    assert d.config == {
        "settings": wf["settings"],
        "meta": wf["meta"],
        "pinData": {},
        "active": True,
        "versionId": "v-1",
        "triggerCount": 1,
    }


def test_input_kinds_agree() -> None:
    wf = n8n_workflow()
    text = json.dumps(wf)
    expected = only(wf)
    assert only(text) == expected
    assert only(text.encode()) == expected
    assert only(bytearray(text.encode())) == expected
    assert only(codecs.BOM_UTF8 + text.encode()) == expected
    assert only("\ufeff" + text) == expected
    assert only(codecs.BOM_UTF16_LE + text.encode("utf-16-le")) == expected
    assert only(codecs.BOM_UTF16_BE + text.encode("utf-16-be")) == expected


def test_parsed_input_is_copied() -> None:
    wf = n8n_workflow()
    d = only(wf)
    wf["nodes"][0]["name"] = "changed"
    try:
        assert d.nodes[0]["name"] == "On webhook"
    finally:
        wf["nodes"][0]["name"] = "On webhook"


def test_metabuilder_file() -> None:
    wf = {
        "id": "workflow_fetch_packages",
        "name": "Fetch Packages",
        "version": "3.0.0",
        "tenantId": "${TENANT_ID}",
        "createdBy": "user-123",
        "created_by": "user-123",
        "active": False,
        "locked": False,
        "nodes": NODES,
        "connections": {"a": {"main": {"0": [{"node": "b", "type": "main", "index": 0}]}}},
        "staticData": {},
        "inputs": {"search": {"type": "string", "default": ""}},
    }
    d = only(wf)
    assert d.name == "Fetch Packages"
    assert d.edges == wf["connections"]
    assert d.config == {
        "version": "3.0.0",
        "active": False,
        "locked": False,
        "staticData": {},
        "inputs": wf["inputs"],
    }


def test_version_integer_is_a_revision_and_dropped() -> None:
    assert "version" not in only(n8n_workflow(version=7)).config
    assert only(n8n_workflow(version="3.0.0")).config["version"] == "3.0.0"
    assert only(n8n_workflow(version="v2")).config["version"] == "v2"


def test_source_system_fields_are_dropped() -> None:
    wf = n8n_workflow(**{f: "x" for f in SOURCE_FIELDS})
    d = only(wf)
    assert not SOURCE_FIELDS & set(d.config)


def test_no_connections_gives_empty_edges() -> None:
    # MetaBuilder's email_client files chain nodes with onSuccess/nextNode and have no connections
    d = only({"name": "x", "nodes": NODES, "startNode": "a"})
    assert d.edges == {}
    assert d.config == {"startNode": "a"}
    assert only({"nodes": NODES, "connections": None}).edges == {}


def test_edges_win_over_connections() -> None:
    edges: dict[str, Any] = {"a": {"main": [[]]}}
    d = only({"nodes": NODES, "edges": edges, "connections": CONNECTIONS})
    assert d.edges == edges
    assert "connections" not in d.config


def test_explicit_config_wins_over_top_level_fields() -> None:
    d = only({"nodes": [], "config": {"settings": {"a": 1}, "x": 2}, "settings": {"a": 9}, "y": 3})
    assert d.config == {"settings": {"a": 1}, "x": 2, "y": 3}


def test_array_export() -> None:
    rows = [n8n_workflow(id=1, name="one"), n8n_workflow(id=2, name="two", tags=[])]
    defns = parse_import(orjson.dumps(rows))
    assert [d.name for d in defns] == ["one", "two"]
    assert defns[1].tags == []
    assert all("id" not in d.config for d in defns)


@pytest.mark.parametrize(
    "bad", [42, "text", [], {"name": "no nodes"}, {"nodes": "many"}, None], ids=repr
)
def test_array_element_not_a_workflow(bad: Any) -> None:
    err = refused([n8n_workflow(), bad], source_name="export.json")
    assert err.details["index"] == 1
    assert err.details["source"] == "export.json"
    assert "element 1" in err.message


def test_empty_array_refused() -> None:
    refused([])


def test_template_wrapper_api_shape() -> None:
    data = {
        "workflow": {
            "id": 1234,
            "name": "Template title",
            "description": "What it does",
            "totalViews": 99,
            "user": {"username": "someone"},
            "nodes": [{"id": 7, "name": "n8n-nodes-base.set"}],  # node type catalogue, not nodes
            "workflow": {
                "nodes": NODES,
                "connections": CONNECTIONS,
                "pinData": {},
                "name": "inner",
            },
        }
    }
    d = only(data)
    assert d.name == "Template title"
    assert d.description == "What it does"
    assert d.nodes == NODES
    assert d.edges == CONNECTIONS
    assert d.config == {"pinData": {}}  # template-site fields of the outer levels are not taken


def test_template_wrapper_without_outer_name() -> None:
    d = only({"workflow": {"workflow": {"nodes": NODES, "connections": {}, "name": "inner"}}})
    assert d.name == "inner"
    assert d.description is None


def test_template_wrapper_one_level() -> None:
    d = only({"name": "outer", "workflow": {"nodes": NODES, "connections": CONNECTIONS}})
    assert d.name == "outer"
    assert d.edges == CONNECTIONS
    d = only({"workflow": {"name": "inside", "nodes": NODES, "connections": CONNECTIONS}})
    assert d.name == "inside"


def test_wrapper_without_nodes_refused() -> None:
    refused({"workflow": {"workflow": {"connections": {}}}})
    refused({"workflow": {"name": "x"}})


# --------------------------------------------------------------------------------------------
# bundles


ROW = {
    "id": "3f1c…",
    "tenant_id": "acme",
    "name": "Exported",
    "description": "desc",
    "nodes": NODES,
    "edges": CONNECTIONS,
    "variables": {"limit": {"name": "limit", "type": "number", "default": 10}},
    "config": {"settings": {"executionTimeout": 60}},
    "tags": ["a", "b"],
    "category": "automation",
    "enabled": True,
    "version": 4,
    "created_by": "u1",
    "created_at": datetime(2024, 1, 1, tzinfo=UTC),
    "execution_count": 12,
    "is_locked": True,
    "locked_by": "u2",
    "lock_token": "t",
    "validation_status": "valid",
    "validation_errors": [],
}


def test_build_bundle_exports_definition_fields_only() -> None:
    bundle = build_bundle(ROW, REPORT, T1)
    assert list(bundle) == ["format", "exportedAt", "workflow", "validationReport"]
    assert bundle["format"] == EXPORT_FORMAT
    assert bundle["validationReport"] == REPORT
    assert datetime.fromisoformat(bundle["exportedAt"]) == T1
    assert datetime.fromisoformat(bundle["exportedAt"]).tzinfo is not None
    assert set(bundle["workflow"]) == {
        "name",
        "description",
        "nodes",
        "edges",
        "variables",
        "config",
        "tags",
        "category",
        "enabled",
    }
    orjson.dumps(bundle)  # JSON-serializable as is
    d = only(bundle)
    assert d == Definition(
        name="Exported",
        description="desc",
        nodes=NODES,
        edges=CONNECTIONS,
        variables=ROW["variables"],  # type: ignore[arg-type]
        config={"settings": {"executionTimeout": 60}},
        tags=["a", "b"],
        category="automation",
        enabled=True,
    )
    _assert_round_trip(d)


def test_build_bundle_times() -> None:
    naive = build_bundle(ROW, None, datetime(2025, 1, 1, 12, 0))
    assert naive["exportedAt"] == "2025-01-01T12:00:00+00:00"
    assert naive["validationReport"] is None
    cet = timezone(timedelta(hours=1))
    local = build_bundle(ROW, None, datetime(2025, 1, 1, 12, 0, tzinfo=cet))
    assert local["exportedAt"] == "2025-01-01T12:00:00+01:00"


def test_build_bundle_accepts_definition_and_fills_defaults() -> None:
    d = only(n8n_workflow())
    assert build_bundle(d, None, T1) == build_bundle(asdict(d), None, T1)
    sparse = build_bundle({"nodes": NODES}, None, T1)["workflow"]
    assert sparse == {
        "name": None,
        "description": None,
        "nodes": NODES,
        "edges": {},
        "variables": {},
        "config": {},
        "tags": [],
        "category": None,
        "enabled": None,
    }


def test_bundle_of_other_version_refused() -> None:
    bundle = build_bundle(ROW, None, T1)
    bundle["format"] = "pydbal.workflow/v9"
    err = refused(bundle)
    assert "pydbal.workflow/v9" in err.details["reason"]
    refused({"format": EXPORT_FORMAT, "workflow": None})
    refused({"format": EXPORT_FORMAT, "workflow": {"name": "no nodes"}})


def test_bundle_with_stray_source_fields() -> None:
    bundle = build_bundle(ROW, None, T1)
    bundle["workflow"].update(id="x", tenantId="acme", version=3, lockToken="t")
    assert only(bundle) == only(build_bundle(ROW, None, T1))


# --------------------------------------------------------------------------------------------
# field rules


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["a", "b"], ["a", "b"]),
        ([{"id": "1", "name": "crm"}, {"name": "ops"}], ["crm", "ops"]),
        (
            [{"createdAt": "2024", "updatedAt": "2024", "id": "7", "name": "AI"}, "x"],
            ["AI", "x"],
        ),
        ("a, b,,c ", ["a", "b", "c"]),
        ("", []),
        ([" a ", "a", "", {"id": "9"}, 5, None], ["a"]),
        (None, []),
        ([], []),
    ],
)
def test_tags(tags: Any, expected: list[str]) -> None:
    d = only({"nodes": [], "tags": tags})
    assert d.tags == expected
    assert "tags" not in d.config


def test_tags_of_unknown_kind_kept_in_config() -> None:
    d = only({"nodes": [], "tags": {"a": 1}})
    assert d.tags == []
    assert d.config == {"tags": {"a": 1}}


@pytest.mark.parametrize(
    ("value", "category", "config"),
    [
        ("automation", "automation", {}),
        ("Integration", "integration", {}),
        ("approval", None, {"category": "approval"}),
        (3, None, {"category": 3}),
        (None, None, {}),
    ],
)
def test_category(value: Any, category: str | None, config: dict[str, Any]) -> None:
    d = only({"nodes": [], "category": value})
    assert d.category == category
    assert d.config == config


def test_enabled() -> None:
    assert only({"nodes": [], "enabled": False}).enabled is False
    d = only({"nodes": [], "enabled": "yes"})
    assert d.enabled is None
    assert d.config == {"enabled": "yes"}


def test_variables() -> None:
    as_dict = {"apiTimeout": {"name": "apiTimeout", "type": "number", "defaultValue": 5000}}
    assert only({"nodes": [], "variables": as_dict}).variables == as_dict
    as_list = [
        {"name": "a", "type": "string", "default": "x"},
        {"name": "b", "type": "number"},
    ]
    assert only({"nodes": [], "variables": as_list}).variables == {
        "a": {"name": "a", "type": "string", "default": "x"},
        "b": {"name": "b", "type": "number"},
    }
    assert only({"nodes": [], "variables": None}).variables == {}
    refused({"nodes": [], "variables": [{"type": "string"}]})
    refused({"nodes": [], "variables": [{"name": "a"}, {"name": "a"}]})
    refused({"nodes": [], "variables": "a,b"})


def test_names() -> None:
    assert only({"nodes": [], "name": "  padded  "}).name == "padded"
    assert only({"nodes": [], "name": "   "}).name is None
    assert only({"nodes": [], "name": ""}).name is None
    assert only({"nodes": []}).name is None
    long = only({"nodes": [], "name": "x" * 300}).name
    assert long == "x" * 255
    d = only({"nodes": [], "name": 12})
    assert d.name is None
    assert d.config == {"name": 12}
    assert only({"nodes": [], "description": "  "}).description is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"   ",
        b"not json",
        b'{"nodes": []} trailing',
        b"\xff\xfe\x00",
        codecs.BOM_UTF16_LE + b"\x00\xd8",  # lone surrogate
        "{'nodes': []}",
        b"[1, 2",
        b"NaN",
        b"12",
        b'"a string"',
        b"null",
        b"true",
        {"nodes": "no"},
        {"nodes": None},
        {"nodes": [], "connections": []},
        {"nodes": [], "edges": "x"},
        {"nodes": [], "config": [1]},
        {"nodes": [], "x": 2**70},  # not representable in JSON storage
        {"nodes": [], 1: "non-string key"},
        {"nodes": [], "x": {1, 2}},
        object(),
    ],
    ids=repr,
)
def test_refused(data: Any) -> None:
    refused(data)


def test_not_json_reason_and_source() -> None:
    err = refused(b"{nope", source_name="broken.json")
    assert err.details["reason"].startswith("not valid JSON")
    assert err.details["source"] == "broken.json"


@pytest.mark.parametrize("depth", [256, 1000, 5000, 30_000])
def test_deeply_nested_refused(depth: int) -> None:
    # beyond what orjson handles: the VALIDATION_ERROR create gives (issue 11), not 4251
    deep = b"[" * depth + b"]" * depth
    with pytest.raises(DBALError) as info:
        parse_import(b'{"nodes": [' + deep + b"]}")
    assert info.value.code == ErrorCode.VALIDATION_ERROR
    field = "nodes" if depth <= PARSE_DEPTH_MAX else "data"  # too deep to parse: the argument
    assert info.value.details == {"field": field, "limit": "json_depth", "max": 64} | (
        {"index": 0} if field == "nodes" else {}
    )
    if field == "data":
        return
    # cut parts that the field rules drop refuse nothing
    assert parse_import(b'{"nodes": [], "tags": [' + deep + b"]}")[0].tags == []
    assert parse_import(b'{"nodes": [], "id": ' + deep + b"}")[0].config == {}
    # a deep value in an element of an array names the element
    with pytest.raises(DBALError) as info:
        parse_import(b'[{"nodes": []}, {"nodes": [], "meta": ' + deep + b"}]")
    assert info.value.details["index"] == 1 and info.value.details["field"] == "config"


def test_deeply_nested_data_refused() -> None:
    value: Any = (1, 2)
    for _ in range(1000):
        value = [value]
    with pytest.raises(DBALError) as info:
        parse_import({"nodes": [{"id": "a", "name": "A", "type": "x", "v": value}]})
    assert info.value.code == ErrorCode.VALIDATION_ERROR
    assert info.value.details["field"] == "nodes" and info.value.details["limit"] == "json_depth"
    shared: list[Any] = [1]
    for _ in range(300):  # 2**300 values once unrolled: refused as before, not copied
        shared = [shared, shared]
    assert (
        refused({"nodes": [], "config": {"x": shared}})
        .details["reason"]
        .startswith("not storable as JSON")
    )


# --------------------------------------------------------------------------------------------
# derive_name


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("packages__examples__workflows__complex-approval-flow.workflow.json", None),
        ("/tmp/in/my_flow.json", "my flow"),
        ("C:\\exports\\Sales-pipeline__v2.json", "Sales pipeline v2"),
        ("plain", "plain"),
        ("a.b.json", "a.b"),
        ("  spaced_  name .json", "spaced name"),
        ("x" * 300 + ".json", "x" * 255),
    ],
)
def test_derive_name_from_file(source: str, expected: str | None) -> None:
    expected = expected or "packages examples workflows complex approval flow"
    assert derive_name(NODES, source) == expected


def test_derive_name_from_nodes() -> None:
    trigger_second = [
        {"name": "Sticky Note", "type": "n8n-nodes-base.stickyNote"},
        {"name": "Set", "type": "n8n-nodes-base.set"},
        {"name": "Every morning", "type": "n8n-nodes-base.scheduleTrigger"},
        {"name": "Hook", "type": "n8n-nodes-base.webhook"},
    ]
    assert derive_name(trigger_second, None) == "Every morning"
    assert derive_name(trigger_second, "") == "Every morning"
    assert derive_name(trigger_second, "___.json") == "Every morning"
    assert derive_name([{"name": "H", "type": "WEBHOOK"}], None) == "H"
    assert derive_name([{"name": "T", "type": "trigger"}], None) == "T"
    # no trigger: first node's name, sticky notes only as a last resort
    assert derive_name(trigger_second[:2], None) == "Set"
    assert derive_name(trigger_second[:1], None) == "Sticky Note"
    assert derive_name([{"type": "x.webhook"}, "junk", {"name": "  "}, {"name": "B"}], None) == "B"
    assert derive_name([], None) == "Imported workflow"
    assert derive_name([{"id": 1}], None) == "Imported workflow"
    assert derive_name([{"name": "n" * 400}], None) == "n" * 255


# --------------------------------------------------------------------------------------------
# fuzz

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=30,
)
FIELD_NAMES = [
    "name",
    "description",
    "nodes",
    "edges",
    "connections",
    "variables",
    "config",
    "tags",
    "category",
    "enabled",
    "version",
    "active",
    "settings",
    "id",
    "tenantId",
    "workflow",
    "format",
]
workflow_like = st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=8).map(
    lambda d: {"nodes": d.pop("nodes", []), **d} if not isinstance(d.get("nodes"), list) else d
)
tag_values = st.lists(
    st.text(max_size=8) | st.fixed_dictionaries({"id": st.text(), "name": st.text(max_size=8)}),
    max_size=4,
)
structured = st.fixed_dictionaries(
    {"nodes": st.lists(json_values, max_size=3)},
    optional={
        "tags": tag_values | st.text(max_size=12),
        "variables": st.lists(
            st.fixed_dictionaries({"name": st.text(min_size=1, max_size=5)}), max_size=3
        ),
        "category": st.sampled_from(["user", "system", "other", "TEMPLATE"]),
        "version": st.integers(0, 99) | st.text(max_size=6),
        "name": st.text(max_size=300),
        "connections": st.dictionaries(st.text(max_size=5), json_values, max_size=3),
    },
)
shapes = (
    json_values
    | workflow_like
    | structured
    | st.lists(workflow_like | structured, max_size=3)
    | structured.map(lambda w: {"workflow": {"name": "t", "workflow": w}})
    | structured.map(lambda w: build_bundle(w, None, T1))
)


def _check(data: Any) -> None:
    try:
        defns = parse_import(data)
    except DBALError as err:
        assert err.code == ErrorCode.INVALID_EXPORT_FORMAT
        assert isinstance(err.details["reason"], str)
        return
    assert isinstance(defns, list) and defns
    for d in defns:
        assert isinstance(d, Definition)
        assert d.name is None or (isinstance(d.name, str) and 0 < len(d.name) <= 255)
        assert d.description is None or isinstance(d.description, str)
        assert isinstance(d.nodes, list)
        assert isinstance(d.edges, dict)
        assert isinstance(d.variables, dict)
        assert isinstance(d.config, dict)
        assert all(isinstance(t, str) and t for t in d.tags)
        assert d.category is None or isinstance(d.category, str)
        assert d.enabled is None or isinstance(d.enabled, bool)
        assert not {"id", "tenantId"} & set(d.config)
        _assert_round_trip(d)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(shapes)
def test_fuzz_parsed_values(data: Any) -> None:
    _check(data)


@FUZZ
@given(shapes)
def test_fuzz_json_text(data: Any) -> None:
    try:
        encoded = json.dumps(data)
    except ValueError:
        return
    _check(encoded)
    _check(encoded.encode())


@FUZZ
@given(st.binary(max_size=64) | st.text(max_size=64))
def test_fuzz_bytes_and_text(data: bytes | str) -> None:
    _check(data)
