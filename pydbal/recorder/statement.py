"""One batch of the recorder as one statement: ``dbal.record_executions``
(sql/43_record_batch.sql), its items encoded as parallel arrays, retried with exponential backoff
while the database is unreachable, and its rows decoded into ``Stored`` or ``Refused``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import asyncpg

from pydbal import queries as q
from pydbal.errors import DBALError, ErrorCode, from_postgres
from pydbal.recorder.results import Item, Refused, Stored

if TYPE_CHECKING:
    from pydbal.database import Database

log = logging.getLogger("pydbal.recorder")

Key = tuple[str, str, str, int]  # tenant, user, role, lane

# SQLSTATE classes and codes worth retrying: connection exceptions, operator intervention
# (shutdown, crash recovery), too many connections, serialization failure, deadlock.
_TRANSIENT_PREFIXES = ("08", "57P", "53300", "40001", "40P01")


def transient(exc: BaseException) -> bool:
    """``exc`` is worth retrying: the connection, not the statement, failed."""
    if isinstance(
        exc,
        OSError
        | ConnectionError
        | TimeoutError
        | asyncpg.InterfaceError
        | asyncpg.PostgresConnectionError,
    ):
        return True
    state = getattr(exc, "sqlstate", None) or ""
    return bool(state) and state.startswith(_TRANSIENT_PREFIXES)


def refusal(item: Item, exc: BaseException) -> Refused:
    """``item`` refused by ``exc``: the database's refusal (an ErrorCode), or ``failed`` when
    the error is not one (the batch could not be written)."""
    mapped = exc if isinstance(exc, DBALError) else from_postgres(exc)
    if isinstance(mapped, DBALError):
        return Refused(item, mapped.code, mapped.message, mapped.details)
    return Refused(item, None, f"{type(exc).__name__}: {exc}", {}, failed=True)


async def send(
    db: Database, key: Key, items: Sequence[Item], retry_for: float
) -> list[Stored | Refused]:
    """Record ``items`` of the scope ``key`` in one statement; a transient failure is retried
    for up to ``retry_for`` seconds, then raised (as is any other failure)."""
    args = (
        *key[:3],
        [i.workflow_id for i in items],
        [i.status for i in items],
        [i.execution_time_ms for i in items],
        [i.execution_id for i in items],
        [i.token for i in items],
        [i.started_at for i in items],
        [i.error for i in items],
    )
    deadline = time.monotonic() + retry_for
    delay = 0.05
    attempt = 0
    while True:
        attempt += 1
        try:
            rows = await db._run(lambda c: c.fetch(q.RECORD_EXECUTIONS, *args))
            break
        except BaseException as exc:
            cause = exc.__cause__ if isinstance(exc, DBALError) else exc
            if isinstance(exc, asyncio.CancelledError) or not transient(cause or exc):
                raise
            if time.monotonic() + delay > deadline:
                log.error(
                    "recorder: giving up on %d execution(s) after %d attempt(s): %s",
                    len(items),
                    attempt,
                    exc,
                )
                raise
            if attempt == 1:
                log.warning("recorder: database unavailable (%s); retrying", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
    out: list[Stored | Refused] = []
    for row in rows:
        item = items[row["ord"] - 1]
        if row["outcome"] == "refused":
            code = row["code"]
            with contextlib.suppress(ValueError):
                code = ErrorCode(code)
            out.append(Refused(item, code, row["message"], row["details"] or {}))
        else:
            out.append(Stored(item, row["outcome"]))
    return out
