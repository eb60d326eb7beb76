"""``pydbal demo``: a walk through the API with two tenants, printing what it does.

Without a DSN (and without ``$PYDBAL_DSN``) ``pydbal.connect()`` starts the embedded PostgreSQL
under ``$PYDBAL_HOME`` and migrates it, so this runs on a fresh machine. The demo's workflows
carry the tag ``pydbal-demo`` and are replaced on every run.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import pydbal
from pydbal import DBALError, Workflow

DEMO_TAG = "pydbal-demo"
TENANTS = ("acme", "globex")

Printer = Callable[[str], None]


def _nodes(*names: str) -> list[dict[str, Any]]:
    """n8n nodes with these names: a manual trigger first, then ``set`` nodes."""
    types = ["n8n-nodes-base.manualTrigger"] + ["n8n-nodes-base.set"] * (len(names) - 1)
    return [
        {"id": f"n{i}", "name": name, "type": node_type}
        for i, (name, node_type) in enumerate(zip(names, types, strict=True))
    ]


def _chain(*names: str) -> dict[str, Any]:
    """n8n connections linking the named nodes one after the other."""
    return {
        a: {"main": [[{"node": b, "type": "main", "index": 0}]]}
        for a, b in itertools.pairwise(names)
    }


def _definition(name: str, description: str, *steps: str) -> dict[str, Any]:
    """A demo workflow definition: a chain of ``steps``, tagged :data:`DEMO_TAG`."""
    return {
        "name": name,
        "description": description,
        "nodes": _nodes(*steps),
        "edges": _chain(*steps),
        "tags": [DEMO_TAG],
    }


def _names(items: list[Workflow]) -> str:
    """The workflows' names, quoted and comma-separated, or ``(none)``."""
    return ", ".join(repr(w.name) for w in items) or "(none)"


async def run_demo(dsn: str | None = None, out: Printer = print) -> int:
    """Run the walk-through; 0 when every step behaved as shown."""
    out(f"pydbal {pydbal.__version__} demo")
    out(f"connecting to {'the given DSN' if dsn else '$PYDBAL_DSN or the embedded PostgreSQL'} …")
    async with pydbal.connect(dsn) as db:
        out(
            f"  connected ({'embedded server, migrated on first use' if db.embedded else 'server'})"
        )
        acme = db.tenant("acme", user_id="alice", role="admin")
        globex = db.tenant("globex", user_id="gina", role="admin")
        for scope in (acme, globex):
            removed = await scope.workflows.delete_many({"tags": [DEMO_TAG]})
            if removed:
                out(f"  removed {removed} workflow(s) of an earlier demo run in {scope.tenant_id}")

        out("\n1. create: tenant acme creates three workflows, tenant globex one")
        report = await acme.workflows.create(
            _definition("Daily Sales Report", "emails the sales numbers", "Start", "Query", "Mail")
        )
        await acme.workflows.create(
            _definition("Invoice Sync", "copies invoices to the ledger", "Start", "Copy")
        )
        broken = await acme.workflows.create(
            {
                "name": "Broken Loop",
                "nodes": [
                    {"id": "a", "name": "A", "type": "n8n-nodes-base.set"},
                    {"id": "b", "name": "B", "type": "n8n-nodes-base.set"},
                ],
                "edges": {**_chain("A", "B"), **_chain("B", "A")},
                "tags": [DEMO_TAG],
            }
        )
        await globex.workflows.create(
            _definition("Globex Payroll", "pays everyone", "Start", "Pay")
        )
        out(f"  acme: {report.name!r} version {report.version}, {report.validation_status}")
        out(f"  acme: {broken.name!r} is {broken.validation_status} (a cycle nothing can leave)")

        out("\n2. list and search (acme sees only its own workflows)")
        page = await acme.workflows.list(
            {"tags": [DEMO_TAG]}, {"field": "name", "direction": "asc"}, limit=10
        )
        out(f"  list: {page.total} workflow(s): {_names(page.items)}")
        out(f"  search 'sales': {_names(await acme.workflows.search('sales'))}")
        out(f"  search 'Invoce Sync' (typo): {_names(await acme.workflows.search('Invoce Sync'))}")

        out("\n3. lock and record executions")
        lock = await acme.workflows.acquire_lock(report.id, timeout_ms=10_000)
        if lock is None:
            out("  could not lock the workflow")
            return 1
        out(f"  locked with fencing token {lock.token} until {lock.expires_at:%H:%M:%S}")
        bob = db.tenant("acme", user_id="bob", role="user")
        out(f"  bob tries to lock it too: {await bob.workflows.acquire_lock(report.id)}")
        recorded = await acme.workflows.record_execution(report.id, "success", 120.0, lock=lock)
        out(f"  recorded execution {recorded.execution_id}: {recorded.outcome}")
        out(f"  released: {await acme.workflows.release_lock(report.id, lock)}")
        async with acme.workflows.executing(report.id) as run:
            await asyncio.sleep(0.01)
        out(f"  executing() block: {run.recorded.outcome if run.recorded else 'not recorded'}")
        try:
            async with acme.workflows.executing(report.id):
                raise RuntimeError("the mail server is down")
        except RuntimeError as exc:
            out(f"  a failing block is recorded as a failure and re-raised: {exc}")
        try:
            async with acme.workflows.executing(broken.id):
                pass
        except DBALError as exc:
            out(f"  the invalid workflow cannot run: {exc.code.name} ({int(exc.code)})")

        out("\n4. statistics")
        stats = await acme.workflows.get_execution_stats(report.id)
        out(
            f"  {stats.total} runs: {stats.success} success, {stats.failure} failure; "
            f"average {stats.average_ms or 0:.1f} ms"
        )

        out("\n5. export from acme, import into globex")
        bundle = await acme.workflows.export(report.id)
        out(f"  bundle format {bundle.format}, {len(bundle.workflow['nodes'])} nodes")
        copy = await globex.workflows.import_workflow(bundle.model_dump(mode="json", by_alias=True))
        out(
            f"  globex imported {copy.name!r} "
            f"(enabled={copy.enabled}, created by {copy.created_by})"
        )

        out("\n6. tenant isolation")
        seen = await globex.workflows.get(report.id)
        out(f"  globex reads acme's workflow by id: {seen}")
        globex_names = _names(
            (await globex.workflows.list({"tags": [DEMO_TAG]}, {"field": "name"})).items
        )
        out(f"  globex's list: {globex_names}")
        if seen is not None:
            out("  ERROR: a tenant read another tenant's workflow")
            return 1
    out("\ndone.")
    return 0
