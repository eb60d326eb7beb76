"""The columns of every workflow read start with Workflow's fields in order: pydbal builds the
model by position (pydbal/workflows/_base.py ``_workflow``), so a reordered column would be a wrong
value in a right-looking field."""

from __future__ import annotations

import re
from pathlib import Path

from pydbal import queries
from pydbal.models import Workflow

FIELDS = list(Workflow.model_fields)


def _names(columns: str) -> list[str]:
    # top-level comma split, then the alias or the last name of each expression
    parts, depth, cur = [], 0, ""
    for ch in columns:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    out = []
    for p in parts:
        m = re.search(r"\bAS (\w+)\s*$", p.strip()) or re.search(r"(\w+)\)?\s*$", p.strip())
        assert m, p
        out.append(m.group(1))
    return out


def test_workflow_columns_follow_the_model() -> None:
    assert _names(queries.workflow_columns("w."))[: len(FIELDS)] == FIELDS
    for name in ("GET", "INSERT", "UPDATE", "UNARCHIVE", "SEARCH"):
        assert queries.workflow_columns("w.") in getattr(queries, name) or queries.workflow_columns(
            "(r.wf)."
        ) in getattr(queries, name), name
    assert queries.SEARCH.index("r.rank") > queries.SEARCH.index("archived_at")


def test_api_list_returns_the_model_fields_first() -> None:
    sql = (Path(__file__).resolve().parents[2] / "sql" / "70_api.sql").read_text()
    start = sql.index("CREATE FUNCTION dbal.api_list(")
    table = sql[
        sql.index("RETURNS TABLE (", start) + len("RETURNS TABLE (") : sql.index(
            "LANGUAGE plpgsql", start
        )
    ]
    names = [c.split()[0] for c in " ".join(table.split()).rstrip(") ").split(", ")]
    assert names[: len(FIELDS)] == FIELDS
    assert names[len(FIELDS) :] == ["total", "total_exact", "has_more"]
