"""The batched execution recorder: ``async with db.recorder(...) as rec: rec.record(...)``.

Failure behaviour first:

- ``record()`` is a synchronous call: it checks its arguments, gives the item an execution id
  (a UUID unless one is given) and queues it. No round trip. When ``max_queue`` items are
  waiting it still keeps the item (nothing is ever dropped) and returns an awaitable that
  completes once there is room again: producers write ``await rec.record(...)``, which costs
  nothing while there is room.
- A background writer sends, per scope (tenant, user, role) and lane, up to ``batch_size``
  items as ONE statement (``dbal.record_executions``, sql/43_record_batch.sql) as soon as a
  batch is full or its oldest item waited ``max_delay`` seconds. Every item has the guarantees
  of ``record_execution`` (the batch's result is that of recording its items one by one):
  idempotent per execution id, a ``pending`` run completed once, fencing per item, counters and
  roll-ups in the same transaction.
- Lanes: a scope's items are split by workflow into ``concurrency`` lanes, one batch in flight
  per lane, so concurrent batches of one tenant never lock the same workflow and run in
  parallel instead of waiting for each other. Items of one workflow keep their order (one
  lane); items of different workflows are independent, except an execution id reused for
  another workflow, whose refusal (409) then depends on which lane commits first, as with
  concurrent ``record_execution`` calls.
- A refused item (stale lock token, locked by another user, unknown workflow, conflicting
  status, bad input) refuses only itself; it is reported by ``flush()`` and to ``on_error``.
- A lost connection, a server restart or an overload is retried with exponential backoff for
  up to ``retry_for`` seconds; since execution ids were fixed when the items were queued, a
  retried batch that had in fact committed counts nothing twice (its items come back as
  ``duplicate``). After ``retry_for`` the items are reported as failed (``flush()`` and
  ``on_error``) with the last error, and are not retried further.
- ``flush()`` returns once every item queued before the call is resolved: what it reports as
  stored is committed. ``close()`` (and leaving the ``async with`` block, also by an exception
  or by cancellation of the owning task) flushes before it returns.
- **The loss window**: items in memory that no ``flush()``/``close()`` acknowledged are lost if
  the process dies (SIGKILL, power loss, ``os._exit``). At most ``max_queue`` items plus the
  batches in flight; usually no more than ``max_delay`` seconds of executions.

The package: ``results.py`` (what a caller gets back: items, reports, admissions),
``statement.py`` (one batch as one ``dbal.record_executions`` statement, retried while the
database is unreachable), ``batcher.py`` (the :class:`Recorder`: queue, lanes, the writer task).
"""

from __future__ import annotations

from pydbal.recorder.batcher import Recorder
from pydbal.recorder.results import Admission, ErrorHook, FlushReport, Item, Refused, Stored

__all__ = ["Admission", "ErrorHook", "FlushReport", "Item", "Recorder", "Refused", "Stored"]
