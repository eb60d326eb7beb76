"""What each write makes stale in the cache: one table (``INVALIDATES``), one function
(``after_write``).

Every write of :class:`pydbal.workflows.Workflows` (and the batched recorder) calls
``after_write(cache, tenant, op, ids)`` once it wrote something; the table says what that
operation invalidates, in the terms of :meth:`pydbal.cache.Cache.invalidate`. When a write
invalidates (always, or only when it changed a row) is said next to each entry and decided by its
call site, which skips the call when nothing was written.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from pydbal.cache import Cache


class Stale(enum.Flag):
    """What a write makes stale."""

    #: The named workflows: their hot entries dropped and their warm generation bumped
    #: (``get``, ``get_execution_stats`` of those workflows).
    WORKFLOWS = enum.auto()
    #: The tenant's list generation: every ``list``, ``find_first``, ``find_by_field`` and
    #: ``search`` result of the tenant.
    LISTS = enum.auto()
    #: Everything cached of the tenant: every workflow's entries and generations, and its lists.
    TENANT = enum.auto()


_ROWS: Final = Stale.WORKFLOWS | Stale.LISTS  # list pages show every field of a row
_ALL: Final = Stale.TENANT | Stale.LISTS

#: operation -> what it makes stale (the ids it passes are the workflows it wrote).
INVALIDATES: Final[Mapping[str, Stale]] = {
    "create": _ROWS,  # the new workflow
    "create_many": Stale.LISTS,  # rows nobody has read yet: only the lists
    "update": _ROWS,  # update, set_enabled, restore, upsert's update (all through _apply)
    "delete": _ROWS,  # only when a live workflow was archived
    "unarchive": _ROWS,  # only when an archived workflow came back
    "update_many": _ALL,  # always (the matching rows are not known here)
    "delete_many": _ALL,  # always
    "store_validation": _ROWS,  # validate, and acquire_lock's one re-validation
    "acquire_lock": _ROWS,  # only when acquired (lock state is part of the row)
    "renew_lock": _ROWS,  # only when renewed (lock_expires_at changed)
    "release_lock": _ROWS,  # always, released or not
    "release_expired_locks": _ALL,  # only when at least one lock was released
    "record_execution": _ROWS,  # always (counters, last execution, statistics)
    "record_batch": _ROWS,  # the recorder: a batch's workflows, when it stored an item
    "clone": _ROWS,  # the copy
    "import": _ROWS,  # the imported workflows (import_many, import_workflow)
}


async def after_write(cache: Cache, tenant: str, op: str, ids: Iterable[Any] = ()) -> None:
    """Invalidate what ``INVALIDATES[op]`` names for ``tenant`` (``ids``: the workflows written;
    not used by an operation that invalidates no single workflow). Never raises for a cache
    failure (``Cache.invalidate`` does not)."""
    stale = INVALIDATES[op]
    await cache.invalidate(
        tenant,
        [str(i) for i in ids] if Stale.WORKFLOWS in stale else (),
        lists=Stale.LISTS in stale,
        all_workflows=Stale.TENANT in stale,
    )
