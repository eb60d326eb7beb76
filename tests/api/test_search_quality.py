"""Search quality on the shared corpus is unchanged by the bounded search (issue 13).

The reference is the unbounded search of the first release, computed here in plain SQL as the
superuser: rank every full-text match, then fill up with every name of similarity >= 0.3. For a
fixed set of queries the entry point must return the same workflows in the same order.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

import pydbal
from pydbal import DBALError

from .conftest import TENANT_A
from .test_corpus import FILES

QUERIES = [
    "slack",
    "email",
    "http request",
    "google sheets",
    "webhook",
    "telegram bot",
    "openai",
    "schedule",
    "data",
    "workflow",
    '"google drive"',
    "slack -email",
    "notion OR airtable",
    "gmial",  # typos: the trigram fallback
    "tellegram",
    "discrod bot",
]

REFERENCE_FULLTEXT = """
SELECT w.id FROM dbal.workflows w
 WHERE w.tenant_id = $1 AND w.archived_at IS NULL
   AND w.search_document @@ websearch_to_tsquery('english'::regconfig, $2)
 ORDER BY (ts_rank(w.search_document, websearch_to_tsquery('english'::regconfig, $2)) + 1)::real
          DESC, w.name, w.id
 LIMIT $3
"""

REFERENCE_TRIGRAM = """
SELECT w.id FROM dbal.workflows w
 WHERE w.tenant_id = $1 AND w.archived_at IS NULL
   AND dbal_ext.similarity(w.name, $2) >= 0.3
   AND NOT (w.search_document @@ websearch_to_tsquery('english'::regconfig, $3))
   AND (numnode(websearch_to_tsquery('english'::regconfig, $4)) = 0
        OR NOT (w.search_document @@ websearch_to_tsquery('english'::regconfig, $4)))
 ORDER BY dbal_ext.similarity(w.name, $2) DESC, w.name, w.id
 LIMIT $5
"""


async def _reference(raw: Any, query: str, limit: int) -> list[uuid.UUID]:
    """The first release's search: full text ranked over every match, then trigram names."""
    found = [r["id"] for r in await raw.fetch(REFERENCE_FULLTEXT, TENANT_A, query, limit)]
    if len(found) >= limit or '"' in query:
        return found
    positive = re.sub(r"(^|\s)-\S+", " ", query).strip()
    excluded = " or ".join(m[1:] for m in re.findall(r"(?:^|\s)(-\S+)", query))
    if len(positive) < 3:
        return found
    rows = await raw.fetch(
        REFERENCE_TRIGRAM, TENANT_A, positive, query, excluded, limit - len(found)
    )
    return found + [r["id"] for r in rows]


@pytest.mark.skipif(not FILES, reason="no shared corpus")
async def test_search_returns_the_same_top_hits_on_the_corpus(db: Any, raw: Any) -> None:
    async with pydbal.connect(db.app_dsn, cache={"hot": False, "warm": False}) as app:
        acme = app.tenant(TENANT_A, user_id="importer", role="admin")
        stored = 0
        for path in FILES:
            try:
                stored += len(await acme.workflows.import_many(path))
            except DBALError:
                continue
        assert stored > 300, stored
        nonempty = by_name = 0
        for query in QUERIES:
            for limit in (5, 20):
                expected = await _reference(raw, query, limit)
                got = [w.id for w in await acme.workflows.search(query, limit=limit)]
                assert got == expected, (query, limit)
                nonempty += bool(expected)
                full_text = await raw.fetch(REFERENCE_FULLTEXT, TENANT_A, query, limit)
                by_name += len(expected) > len(full_text)
        assert nonempty >= 2 * len(QUERIES) - 2, "most queries must find something"
        assert by_name >= 2, "the trigram fallback must be exercised, else the test is vacuous"
