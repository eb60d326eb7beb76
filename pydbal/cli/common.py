"""Shared pieces of the ``pydbal`` subcommands (the modules of :mod:`pydbal.cli`).

- exit codes and :func:`run`: a command body raises :class:`CommandError` with its exit code;
  :func:`run` turns it, and the usual connection, schema and API errors, into one line on stderr
  and the exit code (0 all went well; 1 some items failed or were invalid, or the operation
  failed; 2 usage error, no database or an outdated schema, or a DSN :func:`require_superuser`
  refuses);
- the options commands share (:func:`add_options`: ``--json``, ``--dsn``, ``--user``) and
  durations (:func:`duration`);
- the DSN and login: :func:`operator_dsn` (``--dsn``, ``$PYDBAL_DSN``, else the embedded
  server), :func:`superuser_connection` (refuses a DSN that is not a superuser's, exit 2);
- the workflow API for operators: :func:`open_db`, :func:`all_workflows`;
- output: :func:`print_table`, :func:`cell`, :func:`json_value`;
- :class:`Interrupts`, a command working through items that stops cleanly on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any
from uuid import UUID

import asyncpg

from pydbal import queries as q

if TYPE_CHECKING:
    from pydbal.database import Tenant
    from pydbal.models import Workflow

#: argparse's ``_SubParsersAction`` (the object ``add_subparsers`` returns) is private.
SubParsers = Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """A command cannot go on; ``code`` is the exit code, the message says why."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


# --- arguments -------------------------------------------------------------------------------


def add_options(
    parser: argparse.ArgumentParser,
    func: Callable[[argparse.Namespace], int],
    *,
    json: str | None = None,
    dsn: str | None = "an operator",
    user: bool = False,
) -> None:
    """The options commands share, after their own, and ``func`` as the command to run.

    ``--json`` unless ``json`` is None (its help: print ``json`` as JSON, or just "print JSON"
    for ""); ``--dsn`` of ``dsn`` (whose DSN the command expects) unless None, falling back on
    ``$PYDBAL_DSN`` and the embedded server (:func:`operator_dsn`); ``--user`` when ``user``:
    the name the audit log records, acting with role supergod."""
    if json is not None:
        parser.add_argument(
            "--json", action="store_true", help=f"print {json} as JSON" if json else "print JSON"
        )
    if dsn is not None:
        parser.add_argument(
            "--dsn",
            help=f"PostgreSQL DSN of {dsn} (default: $PYDBAL_DSN, else the embedded server under "
            "$PYDBAL_HOME)",
        )
    if user:
        parser.add_argument(
            "--user",
            default=None,
            help="user named in the audit log, acting with role supergod (default: the OS user)",
        )
    parser.set_defaults(func=func)


def os_user() -> str:
    """The operating-system login (``$USER`` or ``operator`` where there is no passwd entry)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return os.environ.get("USER") or "operator"


def user_of(args: argparse.Namespace) -> str:
    """``--user``, else the OS login: who the audit log names."""
    user = getattr(args, "user", None)
    return str(user) if user else os_user()


def operator_dsn(args: argparse.Namespace) -> str:
    """``--dsn``, ``$PYDBAL_DSN``, else the embedded server; no database → exit 2."""
    from pydbal.server import EmbeddedServerUnavailable, resolve_dsn

    try:
        return resolve_dsn(getattr(args, "dsn", None))
    except EmbeddedServerUnavailable as exc:
        raise CommandError(f"no database: {exc}", EXIT_USAGE) from None


def run(name: str, body: Callable[[], Awaitable[int]]) -> int:
    """Run an async command body; errors become one line on stderr and an exit code.

    :class:`CommandError` → its code; no embedded server, an outdated schema, a database that
    cannot be reached or refuses the login, input nested too deeply, an API validation error → 2;
    a failed migration, any other API error or database error → 1."""
    from pydbal.database import SchemaOutdatedError
    from pydbal.errors import DBALError, ErrorCode
    from pydbal.schema import MigrationError
    from pydbal.server import EmbeddedServerUnavailable

    try:
        return asyncio.run(_call(body))
    except CommandError as exc:
        print(f"pydbal {name}: {exc}", file=sys.stderr)
        return exc.code
    except EmbeddedServerUnavailable as exc:
        print(f"pydbal {name}: no database: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MigrationError as exc:
        print(f"pydbal {name}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except SchemaOutdatedError as exc:
        print(f"pydbal {name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (
        OSError,
        asyncpg.InvalidCatalogNameError,
        asyncpg.InvalidAuthorizationSpecificationError,
        asyncpg.InvalidPasswordError,
    ) as exc:
        print(f"pydbal {name}: cannot connect to the database: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DBALError as exc:
        print(f"pydbal {name}: {exc.code.name}: {exc.message}", file=sys.stderr)
        # bad input (pydbal/limits/) is a usage error; anything else, a failed operation
        return EXIT_USAGE if exc.code == ErrorCode.VALIDATION_ERROR else EXIT_FAILED
    except RecursionError:
        print(f"pydbal {name}: the input is nested too deeply", file=sys.stderr)
        return EXIT_USAGE
    except asyncpg.PostgresError as exc:
        print(f"pydbal {name}: database error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED


class Interrupts:
    """SIGINT/SIGTERM while a command works through items (``async with Interrupts() as stop``):
    the first signal sets ``stop.signal`` so the command finishes the current item and stops;
    a second one cancels the current item too (its transaction rolls back). Outside the main
    thread (no signal handlers there) it never fires."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None
        self._task: asyncio.Task[Any] | None = None
        self._installed: list[signal.Signals] = []

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as shells report a command ended by a signal."""
        return 128 + int(self.signal) if self.signal is not None else EXIT_OK

    def _on(self, sig: signal.Signals) -> None:
        """The handler: the first signal is remembered, a second cancels the command's task."""
        if self.signal is None:
            self.signal = sig
            print(
                f"\npydbal: {sig.name}: stopping after the current file (again to abort it)",
                file=sys.stderr,
            )
        elif self._task is not None:
            self._task.cancel()

    async def __aenter__(self) -> Interrupts:
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        for sig in self.SIGNALS:
            try:
                loop.add_signal_handler(sig, self._on, sig)
            except (ValueError, RuntimeError, NotImplementedError):  # not the main thread
                continue
            self._installed.append(sig)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._installed:
            loop.remove_signal_handler(sig)
        self._installed.clear()


async def _call(body: Callable[[], Awaitable[int]]) -> int:
    """``await body()``: asyncio.run needs a coroutine, ``body`` is any awaitable factory."""
    return await body()


_UNITS_MS = {"ms": 1, "s": 1_000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}


def duration(text: str, *, maximum: timedelta = timedelta(days=36_500)) -> timedelta:
    """A command-line duration (``250ms``, ``30s``, ``5min``, ``1h``, ``30d``; a plain number is
    seconds) within 0 .. ``maximum``. Raises ``argparse.ArgumentTypeError`` (exit 2) otherwise,
    NaN and infinity included."""
    value = text.strip().lower()
    unit = next((u for u in ("ms", "min", "s", "h", "d") if value.endswith(u)), "")
    try:
        amount = float(value[: -len(unit)] if unit else value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (e.g. 30s, 5min, 30d)"
        ) from None
    ms = amount * _UNITS_MS[unit or "s"]
    if not 0 <= ms <= maximum / timedelta(milliseconds=1):  # False for NaN
        raise argparse.ArgumentTypeError(f"duration must be between 0 and {maximum}: {text!r}")
    return timedelta(milliseconds=round(ms))


# --- connections -----------------------------------------------------------------------------


async def require_superuser(conn: Any, what: str) -> None:
    """Refuse (exit 2) unless ``conn`` logged in as a superuser: ``what`` is an operator's job."""
    if not await conn.fetchval(q.IS_SUPERUSER):
        raise CommandError(f"{what} needs a superuser DSN (an operator's)", EXIT_USAGE)


@asynccontextmanager
async def superuser_connection(dsn: str, what: str) -> AsyncIterator[Any]:
    """A plain asyncpg connection to ``dsn``, refused (exit 2) unless it is a superuser's
    (:func:`require_superuser`, ``what`` names the job); closed on the way out."""
    conn = await asyncpg.connect(dsn)
    try:
        await require_superuser(conn, what)
        yield conn
    finally:
        await conn.close()


def open_db(dsn: str) -> Any:
    """``pydbal.connect`` with a small pool, for one command (``async with open_db(dsn) as db``)."""
    import pydbal

    return pydbal.connect(dsn, min_size=1, max_size=2)


async def all_workflows(tenant: Tenant, where: dict[str, Any] | None = None) -> list[Workflow]:
    """Every workflow of ``tenant`` matching ``where`` (all pages of ``workflows.list``)."""
    found: list[Workflow] = []
    page = 1
    while True:
        result = await tenant.workflows.list(where, page=page, limit=100)
        found.extend(result.items)
        if not result.has_more:
            return found
        page += 1


# --- output ----------------------------------------------------------------------------------


def json_value(value: Any) -> Any:
    """``json.dumps``' ``default``: dates as ISO 8601, decimals as floats, anything else as text."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, UUID):
        return str(value)
    return str(value)


def cell(value: Any) -> str:
    """A value as text for a table or CSV cell: NULL empty, JSON as JSON, dates as ISO 8601."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, default=json_value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def print_table(columns: list[str], rows: Sequence[Sequence[Any]], out: Any = None) -> None:
    """Rows as an aligned text table with a header line (cells cut at 60 characters)."""
    out = out if out is not None else sys.stdout
    cells = [[cell(v).replace("\n", " ") for v in r] for r in rows]
    cells = [[c if len(c) <= 60 else c[:59] + "…" for c in r] for r in cells]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(columns)]
    out.write(" | ".join(h.ljust(w) for h, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    out.write("-+-".join("-" * w for w in widths) + "\n")
    for r in cells:
        out.write(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")
