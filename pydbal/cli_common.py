"""Shared pieces of the operator and analyst subcommands (``pydbal.cli_*``).

Exit codes: 0 all went well, 1 some items failed or were invalid, 2 usage error or no database.
A command raises :class:`CommandError` with its exit code; :func:`run` turns it (and the usual
connection errors) into a message on stderr and the code.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from types import TracebackType
from typing import Any, TypeVar

import asyncpg

from pydbal import queries as q

T = TypeVar("T")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """A command cannot go on; ``code`` is the exit code, the message says why."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def add_dsn_argument(parser: argparse.ArgumentParser, *, who: str = "an operator") -> None:
    parser.add_argument(
        "--dsn", help=f"PostgreSQL DSN of {who} (default: $PYDBAL_DSN, else the embedded server)"
    )


def add_user_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--user",
        default=None,
        help="user named in the audit log, acting with role supergod (default: the OS user)",
    )


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return os.environ.get("USER") or "operator"


def user_of(args: argparse.Namespace) -> str:
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
    """Run an async command body; errors become a message on stderr and an exit code."""
    from pydbal.database import SchemaOutdatedError
    from pydbal.errors import DBALError, ErrorCode

    try:
        return asyncio.run(_call(body))
    except CommandError as exc:
        print(f"pydbal {name}: {exc}", file=sys.stderr)
        return exc.code
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
        # bad input (pydbal/limits.py) is a usage error; anything else, a failed operation
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
    return await body()


async def connect_raw(dsn: str) -> Any:
    """A plain asyncpg connection (operator queries outside the workflow API)."""
    return await asyncpg.connect(dsn)


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


async def require_superuser(conn: Any, what: str) -> None:
    """Refuse (exit 2) unless ``conn`` logged in as a superuser: ``what`` is an operator's job."""
    if not await conn.fetchval(q.IS_SUPERUSER):
        raise CommandError(f"{what} needs a superuser DSN (an operator's)", EXIT_USAGE)
