"""Every file of the shared corpus through import_workflow / import_many, then
export → import → export round trips, all in one database."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import pydbal
from pydbal import DBALError, ErrorCode

from .conftest import TENANT_A, TENANT_B


def _corpus_dir() -> Path:
    env = os.environ.get("PYDBAL_CORPUS")
    if env:
        return Path(env)
    # tests/api/test_corpus.py → the repository is parents[2]; the corpus sits beside it
    return Path(__file__).resolve().parents[2].parent / "shared" / "corpus"


CORPUS = _corpus_dir()
FILES = sorted(CORPUS.glob("**/*.json")) if CORPUS.is_dir() else []


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


@pytest.mark.skipif(not FILES, reason=f"no corpus at {CORPUS} (set PYDBAL_CORPUS)")
async def test_corpus_imports_and_round_trips(app: pydbal.Database) -> None:
    acme = app.tenant(TENANT_A, user_id="importer", role="admin")
    globex = app.tenant(TENANT_B, user_id="importer", role="admin")
    stored: list[tuple[Path, pydbal.Workflow]] = []
    refused: dict[str, str] = {}
    unexpected: dict[str, str] = {}
    for path in FILES:
        data = path.read_bytes()
        is_json = _is_json(data)
        try:
            parsed = json.loads(data) if is_json else None
            if isinstance(parsed, list):
                workflows = await acme.workflows.import_many(path)
            else:
                workflows = [await acme.workflows.import_workflow(path)]
        except DBALError as exc:
            if exc.code != ErrorCode.INVALID_EXPORT_FORMAT:
                unexpected[path.name] = repr(exc)
            elif not exc.message:
                unexpected[path.name] = "INVALID_EXPORT_FORMAT without a reason"
            else:
                refused[path.name] = exc.message
            continue
        except Exception as exc:
            unexpected[path.name] = repr(exc)
            continue
        if not is_json:
            unexpected[path.name] = "not JSON, yet imported"
            continue
        for wf in workflows:
            if wf.validation_status not in ("valid", "invalid"):
                unexpected[path.name] = f"validation_status {wf.validation_status}"
            if wf.tenant_id != TENANT_A or wf.created_by != "importer":
                unexpected[path.name] = "ownership taken over from the file"
            stored.append((path, wf))
    assert not unexpected, unexpected
    not_json = [p.name for p in FILES if not _is_json(p.read_bytes())]
    assert set(not_json) <= set(refused), "every non-JSON file is INVALID_EXPORT_FORMAT"
    assert not_json, "the corpus has non-JSON files (7 n8n templates): the check above is vacuous"
    # JSON files that were refused must be ones without a usable nodes array
    for name, reason in refused.items():
        if name in not_json:
            continue
        parsed = json.loads((next(p for p in FILES if p.name == name)).read_bytes())
        nodes = parsed.get("nodes") if isinstance(parsed, dict) else None
        assert not (isinstance(nodes, list) and nodes), f"{name} refused: {reason}"
    assert len(stored) >= len(FILES) - len(refused)
    n8n = [p for p in FILES if p.parent.name == "n8n-templates" and _is_json(p.read_bytes())]
    assert all(p.name not in refused for p in n8n), "every parseable n8n template imports"

    mismatched: dict[str, Any] = {}
    for path, wf in stored:
        first = (await acme.workflows.export(wf.id)).model_dump(mode="json", by_alias=True)
        again = await globex.workflows.import_workflow(first)
        second = (await globex.workflows.export(again.id)).model_dump(mode="json", by_alias=True)
        a, b = dict(first["workflow"]), dict(second["workflow"])
        if b["name"] != a["name"]:  # a name already imported into globex: "<name> (n)"
            assert b["name"].startswith(a["name"] + " ("), (a["name"], b["name"])
            a.pop("name")
            b.pop("name")
        if a != b:
            mismatched[path.name] = sorted(k for k in a if a.get(k) != b.get(k))
        assert again.validation_status == wf.validation_status, path.name
    assert not mismatched, mismatched
