"""What the batched recorder hands back: the queued ``Item``, its result (``Stored`` or
``Refused``), the ``FlushReport`` of a flush and the ``Admission`` ``record()`` returns."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from pydbal.errors import ErrorCode
from pydbal.models import EXECUTION_STATUSES

STATUSES = frozenset(EXECUTION_STATUSES)
MAX_BATCH = 10000  # dbal.record_executions accepts at most this many items per call


@dataclass(frozen=True)
class Item:
    """One execution as queued: the arguments of ``record()`` with its execution id fixed."""

    tenant_id: str
    user_id: str
    role: str
    workflow_id: UUID
    status: str
    execution_time_ms: float | None
    execution_id: str
    token: int | None
    started_at: datetime | None
    error: str | None


@dataclass(frozen=True)
class Stored:
    """An item in the database: ``outcome`` is ``recorded``, ``completed`` or ``duplicate``."""

    item: Item
    outcome: str


@dataclass(frozen=True)
class Refused:
    """An item not recorded: refused by the database (``code`` is an :class:`ErrorCode`) or,
    with ``failed=True``, not written because the database stayed unreachable for
    ``retry_for`` seconds (``code`` is None, ``message`` the last error)."""

    item: Item
    code: ErrorCode | int | None
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    failed: bool = False


@dataclass
class FlushReport:
    """What happened to the items resolved since the previous ``flush()``."""

    stored: list[Stored] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    stored_count: int = 0  # also counts stored items not kept (``keep_results=False``)

    @property
    def failed(self) -> list[Refused]:
        """The refused items that were not written (the database stayed unreachable)."""
        return [r for r in self.refused if r.failed]


class Admission:
    """What ``record()`` returns: awaiting it returns the execution id, at once while the queue
    has room, else once the item entered the queue (back-pressure)."""

    __slots__ = ("_future", "execution_id")

    def __init__(self, execution_id: str, future: asyncio.Future[None] | None) -> None:
        self.execution_id = execution_id
        self._future = future

    @property
    def admitted(self) -> bool:
        """The item is in the queue (awaiting the admission would not wait)."""
        return self._future is None or self._future.done()

    def __await__(self) -> Generator[Any, None, str]:
        """Wait until the item is in the queue; the execution id."""
        if self._future is not None:
            yield from self._future.__await__()
        return self.execution_id


ErrorHook = Callable[[Refused], Awaitable[None] | None]
