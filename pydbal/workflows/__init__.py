"""The workflow operations of one tenant: ``db.tenant(...).workflows``.

Every method is one (or, for bulk and definition changes, a few) statements calling the
``dbal.api_*`` entry points (``sql/71_api_writes.sql``, ``sql/74_api_reads.sql``) and the
lock/execution functions of ``sql/40_locks.sql`` and ``sql/41_record_execution.sql``. Access
rules are checked here for clear errors and enforced by the database regardless (row-level
security, role checks in SQL).

One module per concern, each holding one class that builds on the classes it uses (all on
``_base._Base``, which declares the shared attributes); :class:`Workflows` joins them:

- ``_base.py``: the scope, argument coercion, building models from rows, shared helpers
- ``reads.py``: get, list, find, search, statistics, executions, audit, history
- ``writes.py``: create, update, delete/unarchive, upsert, restore, validate
- ``bulk.py``: create_many, update_many, delete_many
- ``locks.py``: acquire, renew, release
- ``executions.py``: record_execution, executing (and its ``Run``)
- ``transfer.py``: clone, export, import
- ``invalidation.py``: what each write makes stale in the cache (one table)
"""

from __future__ import annotations

from pydbal.instrument import operations
from pydbal.workflows.bulk import Bulk
from pydbal.workflows.executions import Executions, Run
from pydbal.workflows.transfer import Transfer

__all__ = ["Run", "Workflows"]


@operations  # each part is wrapped already; this wraps any public method added here
class Workflows(Transfer, Executions, Bulk):
    """Workflow operations of one tenant (tenant, user and role fixed by the scope)."""
