"""list (filters, sorts, paging), find_first, find_by_field, search."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from dbhelpers import expire_leases

import pydbal
from pydbal import ErrorCode, Page, Tenant

from .conftest import TENANT_A, cyclic_definition, raises_code, valid_definition


async def _seed(app: pydbal.Database, acme: Tenant) -> dict[str, uuid.UUID]:
    """Five workflows with distinct attributes (and one of another tenant)."""
    bob = app.tenant(TENANT_A, user_id="bob", role="admin")
    ids = {}
    ids["alpha"] = (
        await acme.workflows.create(
            valid_definition("alpha", tags=["sales", "daily"], category="automation")
        )
    ).id
    ids["beta"] = (
        await acme.workflows.create(valid_definition("beta", tags=["ops"], enabled=False))
    ).id
    ids["gamma"] = (
        await bob.workflows.create(valid_definition("gamma", tags=["sales"], category="template"))
    ).id
    ids["delta"] = (await bob.workflows.create(cyclic_definition("delta", tags=["misc"]))).id
    ids["epsilon"] = (await acme.workflows.create(valid_definition("epsilon"))).id
    await app.tenant("globex", user_id="g", role="admin").workflows.create(
        valid_definition("alpha", tags=["sales"])
    )
    return ids


def _names(page: Page[Any] | list[Any]) -> list[str]:
    items = page.items if isinstance(page, Page) else page
    return [w.name for w in items]


async def test_list_filters(app: pydbal.Database, acme: Tenant) -> None:
    ids = await _seed(app, acme)
    by_name = {"field": "name", "direction": "asc"}
    lst = acme.workflows.list
    page = await lst(sort=by_name)
    assert _names(page) == ["alpha", "beta", "delta", "epsilon", "gamma"]
    assert page.total == 5 and page.has_more is False
    assert all(w.tenant_id == TENANT_A for w in page.items)

    assert _names(await lst({"enabled": False}, by_name)) == ["beta"]
    assert "beta" not in _names(await lst({"enabled": True}, by_name))
    assert _names(await lst({"category": "automation"}, by_name)) == ["alpha"]
    assert _names(await lst({"created_by": "bob"}, by_name)) == ["delta", "gamma"]
    assert _names(await lst({"tags": ["sales"]}, by_name)) == ["alpha", "gamma"]
    assert _names(await lst({"tags": ["ops", "misc"]}, by_name)) == ["beta", "delta"]  # any of
    assert _names(await lst({"tags": "ops,daily"}, by_name)) == ["alpha", "beta"]
    assert _names(await lst({"validation_status": "invalid"}, by_name)) == ["delta"]
    assert "delta" not in _names(await lst({"validation_status": "valid"}, by_name))
    assert _names(await lst({"search": "gamma"}, by_name)) == ["gamma"]
    combined = await lst({"tags": ["sales"], "created_by": "alice"}, by_name)
    assert _names(combined) == ["alpha"] and combined.total == 1
    # camelCase keys and model instances work as well
    assert _names(await lst({"createdBy": "bob"}, by_name)) == ["delta", "gamma"]
    flt = pydbal.WorkflowFilter(category="template")
    assert _names(await lst(flt, pydbal.Sort(field="name", direction="asc"))) == ["gamma"]

    await acme.workflows.record_execution(ids["alpha"], "failure", 5.0)
    await acme.workflows.record_execution(ids["epsilon"], "success", 5.0)
    assert _names(await lst({"last_execution_status": "failure"}, by_name)) == ["alpha"]
    assert _names(await lst({"last_execution_status": "success"}, by_name)) == ["epsilon"]


async def test_list_unknown_filter_or_sort_field_is_validation_error(acme: Tenant) -> None:
    for bad in (
        {"colour": "red"},
        {"tenant_id": "globex"},
    ):
        with raises_code(ErrorCode.VALIDATION_ERROR):
            await acme.workflows.list(bad)
    for sort in ({"field": "colour"}, {"field": "name", "direction": "up"}, {"field": "id"}):
        with raises_code(ErrorCode.VALIDATION_ERROR):
            await acme.workflows.list(sort=sort)
    with raises_code(ErrorCode.VALIDATION_ERROR):
        await acme.workflows.find_first({"nope": 1})
    with raises_code(ErrorCode.VALIDATION_ERROR):
        await acme.workflows.list({"enabled": "maybe"})


@pytest.mark.parametrize("limit", [0, 101, -1])
async def test_list_limit_bounds(acme: Tenant, limit: int) -> None:
    with raises_code(ErrorCode.VALIDATION_ERROR):
        await acme.workflows.list(limit=limit)


async def test_list_limit_bounds_accepted_and_page_zero(acme: Tenant) -> None:
    assert (await acme.workflows.list(limit=1)).total == 0
    assert (await acme.workflows.list(limit=100)).items == []
    with raises_code(ErrorCode.VALIDATION_ERROR):
        await acme.workflows.list(page=0)


async def test_paging_with_stable_tie_break(acme: Tenant) -> None:
    # 23 rows with the same execution_count (0) and the same category: only the tie-break orders
    n = await acme.workflows.create_many([valid_definition(f"wf {i:02d}") for i in range(23)])
    assert n == 23
    for direction in ("asc", "desc"):
        sort = {"field": "execution_count", "direction": direction}
        seen: list[uuid.UUID] = []
        for page_no in (1, 2, 3):
            page = await acme.workflows.list(sort=sort, page=page_no, limit=10)
            assert page.total == 23
            assert page.has_more is (page_no < 3)
            assert len(page.items) == (10 if page_no < 3 else 3)
            seen += [w.id for w in page.items]
        assert len(set(seen)) == 23  # no row twice, none missing
        # the tie-break is stable: the same query gives the same order again
        again = [
            w.id
            for p in (1, 2, 3)
            for w in (await acme.workflows.list(sort=sort, page=p, limit=10)).items
        ]
        assert again == seen
        tie = sorted(seen) if direction == "asc" else sorted(seen, reverse=True)
        assert seen == tie, "ties are broken by id in the sort direction"
    past = await acme.workflows.list(page=4, limit=10)
    assert past.items == [] and past.total == 23 and past.has_more is False
    far = await acme.workflows.list(page=1000, limit=100)
    assert far.items == [] and far.total == 23 and far.has_more is False


async def test_sort_fields(app: pydbal.Database, acme: Tenant) -> None:
    ids = await _seed(app, acme)
    lst = acme.workflows.list
    assert _names(await lst(sort={"field": "name", "direction": "desc"})) == [
        "gamma",
        "epsilon",
        "delta",
        "beta",
        "alpha",
    ]
    created = _names(await lst(sort={"field": "created_at", "direction": "asc"}))
    assert created == ["alpha", "beta", "gamma", "delta", "epsilon"]
    assert _names(await lst()) == list(reversed(created))  # default: created_at desc

    await acme.workflows.update(ids["beta"], {"description": "touched"})
    updated = _names(await lst(sort={"field": "updated_at", "direction": "desc"}))
    assert updated[0] == "beta"

    for _ in range(3):
        await acme.workflows.record_execution(ids["gamma"], "success", 1.0)
    await acme.workflows.record_execution(ids["epsilon"], "success", 1.0)
    by_count = _names(await lst(sort={"field": "execution_count", "direction": "desc"}))
    assert by_count[:2] == ["gamma", "epsilon"]
    by_count_asc = _names(await lst(sort={"field": "execution_count", "direction": "asc"}))
    assert by_count_asc[-2:] == ["epsilon", "gamma"]

    last = _names(await lst(sort={"field": "last_executed_at", "direction": "desc"}))
    assert last[:2] == ["epsilon", "gamma"]  # never-executed ones after (NULLS LAST)
    last_asc = _names(await lst(sort={"field": "last_executed_at", "direction": "asc"}))
    assert last_asc[:2] == ["gamma", "epsilon"]


async def test_find_first(app: pydbal.Database, acme: Tenant) -> None:
    await _seed(app, acme)
    first = await acme.workflows.find_first(
        {"tags": ["sales"]}, {"field": "name", "direction": "desc"}
    )
    assert first is not None and first.name == "gamma"
    assert await acme.workflows.find_first({"category": "system"}) is None
    newest = await acme.workflows.find_first()
    assert newest is not None and newest.name == "epsilon"


async def test_find_by_field(app: pydbal.Database, acme: Tenant) -> None:
    await _seed(app, acme)
    fb = acme.workflows.find_by_field
    assert _names(await fb("name", "alpha")) == ["alpha"]
    assert (await fb("name", "alpha"))[0].tenant_id == TENANT_A
    assert _names(await fb("created_by", "bob")) == ["delta", "gamma"]
    assert _names(await fb("category", "template")) == ["gamma"]
    assert _names(await fb("tags", "sales")) == ["alpha", "gamma"]
    assert _names(await fb("tags", ["ops"])) == ["beta"]
    assert _names(await fb("created_by", "bob", limit=1)) == ["delta"]
    assert await fb("name", "nothing") == []
    with raises_code(ErrorCode.VALIDATION_ERROR):
        await fb("description", "x")
    with raises_code(ErrorCode.VALIDATION_ERROR):
        await fb("name", "x", limit=0)


async def _seed_search(wf: Any) -> None:
    await wf.create(valid_definition("Daily Sales Report", description="emails the numbers"))
    await wf.create(valid_definition("Weekly Sales Digest", description="summary for managers"))
    await wf.create(valid_definition("Invoice Sync", description="daily sync of invoices"))
    await wf.create(valid_definition("Slack Alert", tags=["sales"]))


async def test_search(app: pydbal.Database, acme: Tenant) -> None:
    wf = acme.workflows
    await _seed_search(wf)
    await app.tenant("globex", user_id="g", role="admin").workflows.create(
        valid_definition("Daily Sales Report")
    )
    sales = await wf.search("sales")
    assert set(_names(sales)) == {"Daily Sales Report", "Weekly Sales Digest", "Slack Alert"}
    assert all(w.tenant_id == TENANT_A for w in sales)
    assert _names(await wf.search('"sales report"')) == ["Daily Sales Report"]
    # best match first: name, description and tags all match "daily sales"
    best = await wf.search("daily sales report")
    assert best[0].name == "Daily Sales Report"
    # a typo in a name still finds it
    assert "Invoice Sync" in _names(await wf.search("Invoce Sync"))
    assert _names(await wf.search("Daily Sales Reprot"))[0] == "Daily Sales Report"
    assert len(await wf.search("sales", limit=1)) == 1
    assert await wf.search("zzzzqqq") == []
    with raises_code(ErrorCode.VALIDATION_ERROR):
        await wf.search("x", limit=0)
    with raises_code(ErrorCode.VALIDATION_ERROR):
        await wf.search(None)  # type: ignore[arg-type]


async def test_search_exclusion_is_honoured(acme: Tenant) -> None:
    wf = acme.workflows
    await _seed_search(wf)
    assert set(_names(await wf.search("sales -weekly"))) == {"Daily Sales Report", "Slack Alert"}
    assert "Daily Sales Report" not in _names(await wf.search('"report sales" -daily'))


async def test_search_exclusion_by_full_text(acme: Tenant) -> None:
    """The full-text part honours '-term' (checked with a query the name fallback cannot match)."""
    wf = acme.workflows
    await _seed_search(wf)
    found = _names(await wf.search("numbers OR managers -weekly"))
    assert found == ["Daily Sales Report"]


async def test_list_filter_is_locked_reads_live_leases_only(
    app: pydbal.Database, acme: Tenant, raw: Any
) -> None:
    ids = await _seed(app, acme)
    by_name = {"field": "name", "direction": "asc"}
    held = await acme.workflows.acquire_lock(ids["alpha"], timeout_ms=60_000)
    short = await acme.workflows.acquire_lock(ids["gamma"], timeout_ms=60_000)
    assert held is not None and short is not None
    await expire_leases(raw, ids["gamma"])  # gamma's lease has expired: it reads as unlocked
    assert _names(await acme.workflows.list({"is_locked": True}, by_name)) == ["alpha"]
    unlocked = _names(await acme.workflows.list({"is_locked": False}, by_name))
    assert "alpha" not in unlocked and "gamma" in unlocked


async def test_read_models_equal_validated_models(acme: Tenant) -> None:
    """Reads build Workflow without validation: the result must equal a validated model."""
    wf = await acme.workflows.create(valid_definition("checked", tags=["x"]))
    got = await acme.workflows.get(wf.id)
    assert got is not None
    validated = pydbal.Workflow.model_validate(got.model_dump())
    assert got == validated
    assert got.model_dump(by_alias=True) == validated.model_dump(by_alias=True)
    assert got.model_fields_set == validated.model_fields_set
    assert got.model_copy(update={"name": "n"}).name == "n"
