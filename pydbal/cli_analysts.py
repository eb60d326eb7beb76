"""``pydbal analysts grant|revoke|list`` (operators) and ``pydbal sql`` (analysts).

Grants live in ``dbal.analyst_grants`` (one row per login and tenant); the analyst policies read
them for ``session_user`` (sql/95_analysts.sql). Managing them needs a superuser DSN.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg

from pydbal.cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    add_dsn_argument,
    add_user_argument,
    duration,
    operator_dsn,
    require_superuser,
    run,
    user_of,
)
from pydbal.migrate import Roles, close_public_temp, resolve_roles

_SubParsers = Any

# --------------------------------------------------------------------------------------------
# The operations (also used by tests)


@dataclass(frozen=True)
class SessionLimits:
    """Limits set on an analyst login (``ALTER ROLE … SET``), in milliseconds; 0 = none.

    They are the login's defaults: PostgreSQL lets a session change these settings itself, so
    they protect against runaway queries and forgotten transactions, not against a hostile
    analyst (the server-wide limits are the operator's; docs/security.md)."""

    statement_timeout_ms: int = 300_000  # 5 minutes
    idle_in_transaction_session_timeout_ms: int = 60_000  # 1 minute
    lock_timeout_ms: int = 10_000  # 10 seconds

    def settings(self) -> dict[str, int]:
        return {
            "statement_timeout": self.statement_timeout_ms,
            "idle_in_transaction_session_timeout": self.idle_in_transaction_session_timeout_ms,
            "lock_timeout": self.lock_timeout_ms,
        }


@dataclass(frozen=True)
class AnalystGrant:
    login: str
    tenant_id: str
    granted_at: datetime
    granted_by: str


async def grant_analyst(
    dsn: str,
    login: str,
    tenants: Sequence[str],
    *,
    granted_by: str,
    roles: Roles | None = None,
    limits: SessionLimits | None = None,
) -> int:
    """Let ``login`` read ``tenants``; grants it the analyst role if needed. Returns new rows.

    The login must exist, may log in, and must not be a superuser, BYPASSRLS, or a member of
    the owner or application role (those see more than an analyst anyway). Sets the login's
    session limits (``limits``, default :class:`SessionLimits`) and makes sure PUBLIC cannot
    create temporary tables in this database (:func:`close_public_temp`).
    """
    roles = roles or resolve_roles()
    limits = limits or SessionLimits()
    for name, value in limits.settings().items():
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 86_400_000:
            raise CommandError(f"{name} must be 0..86400000 ms, not {value!r}", EXIT_USAGE)
    if not tenants or any(not t or len(t) > 255 for t in tenants):
        raise CommandError("give one or more tenant ids (1 to 255 characters)", EXIT_USAGE)
    conn = await asyncpg.connect(dsn)
    try:
        await require_superuser(conn, "managing analyst grants")
        row = await conn.fetchrow(
            """SELECT r.rolcanlogin, r.rolsuper, r.rolbypassrls,
                      pg_has_role(r.oid, $2, 'MEMBER') AS is_owner,
                      pg_has_role(r.oid, $3, 'MEMBER') AS is_app,
                      pg_has_role(r.oid, $4, 'MEMBER') AS is_analyst
                 FROM pg_roles r WHERE r.rolname = $1""",
            login,
            roles.owner,
            roles.app,
            roles.analyst,
        )
        if row is None:
            raise CommandError(
                f"role {login!r} does not exist: create the analyst's login first "
                f"(CREATE ROLE {login} LOGIN ...)"
            )
        if not row["rolcanlogin"]:
            raise CommandError(f"role {login!r} cannot log in (NOLOGIN): grant a login role")
        if row["rolsuper"] or row["rolbypassrls"] or row["is_owner"] or row["is_app"]:
            raise CommandError(
                f"role {login!r} is a superuser, has BYPASSRLS or belongs to the owner or app "
                "role: analyst grants would not limit it; use a dedicated analyst login"
            )
        async with conn.transaction():
            if not row["is_analyst"]:
                # Both names were checked (ROLE_NAME / pg_roles): quoting as identifiers is safe.
                await conn.execute(f'GRANT "{roles.analyst}" TO "{_ident(login)}"')
            for name, value in limits.settings().items():
                # name is one of three literals, value an int checked above
                await conn.execute(f'ALTER ROLE "{_ident(login)}" SET {name} = {value}')
            await close_public_temp(conn, roles)
            result = await conn.execute(
                """INSERT INTO dbal.analyst_grants (tenant_id, login, granted_by)
                   SELECT t, $1::name, $3 FROM unnest($2::text[]) t
                   ON CONFLICT (tenant_id, login) DO NOTHING""",
                login,
                list(dict.fromkeys(tenants)),
                granted_by,
            )
        return int(result.split()[-1])
    finally:
        await conn.close()


def _ident(name: str) -> str:
    return name.replace('"', '""')


async def revoke_analyst(dsn: str, login: str, tenants: Sequence[str]) -> int:
    """Remove ``login``'s grants for ``tenants``; returns how many rows were removed."""
    conn = await asyncpg.connect(dsn)
    try:
        await require_superuser(conn, "managing analyst grants")
        result = await conn.execute(
            "DELETE FROM dbal.analyst_grants"
            " WHERE login = $1::name AND tenant_id = ANY($2::text[])",
            login,
            list(tenants),
        )
        return int(result.split()[-1])
    finally:
        await conn.close()


async def list_analysts(dsn: str, login: str | None = None) -> list[AnalystGrant]:
    conn = await asyncpg.connect(dsn)
    try:
        await require_superuser(conn, "managing analyst grants")
        rows = await conn.fetch(
            """SELECT login::text AS login, tenant_id, granted_at, granted_by
                 FROM dbal.analyst_grants WHERE $1::text IS NULL OR login = $1::name
                ORDER BY login, tenant_id""",
            login,
        )
        return [AnalystGrant(**dict(r)) for r in rows]
    finally:
        await conn.close()


# --------------------------------------------------------------------------------------------
# pydbal analysts


def add_analysts_parser(subparsers: _SubParsers) -> None:
    parser = subparsers.add_parser(
        "analysts",
        help="manage which tenants analyst logins may read (needs a superuser DSN)",
        description="Analysts read their granted tenants through the dbal_analytics views.",
    )
    sub = parser.add_subparsers(dest="analysts_command", required=True, metavar="ACTION")

    grant = sub.add_parser(
        "grant", help="let LOGIN read TENANT… (grants it the analyst role if needed)"
    )
    grant.add_argument("login", help="an existing LOGIN role (the analyst's own)")
    grant.add_argument("tenants", nargs="+", metavar="TENANT")
    defaults = SessionLimits()
    grant.add_argument(
        "--statement-timeout",
        type=_duration_ms,
        default=defaults.statement_timeout_ms,
        metavar="DURATION",
        help="the login's statement_timeout (default 5min; 0 = none); e.g. 30s, 5min, 1h",
    )
    grant.add_argument(
        "--idle-timeout",
        type=_duration_ms,
        default=defaults.idle_in_transaction_session_timeout_ms,
        metavar="DURATION",
        help="the login's idle_in_transaction_session_timeout (default 1min)",
    )
    grant.add_argument(
        "--lock-timeout",
        type=_duration_ms,
        default=defaults.lock_timeout_ms,
        metavar="DURATION",
        help="the login's lock_timeout (default 10s)",
    )
    add_dsn_argument(grant)
    add_user_argument(grant)
    grant.set_defaults(func=cmd_analysts)

    revoke = sub.add_parser("revoke", help="stop LOGIN reading TENANT… (from its next query)")
    revoke.add_argument("login")
    revoke.add_argument("tenants", nargs="+", metavar="TENANT")
    add_dsn_argument(revoke)
    revoke.set_defaults(func=cmd_analysts)

    lst = sub.add_parser("list", help="list analyst grants")
    lst.add_argument("--login", help="only this login's grants")
    lst.add_argument("--json", action="store_true", help="print JSON")
    add_dsn_argument(lst)
    lst.set_defaults(func=cmd_analysts)


def _duration_ms(text: str) -> int:
    """A duration (see :func:`pydbal.cli_common.duration`) of at most 24 h, in milliseconds."""
    return round(duration(text, maximum=timedelta(hours=24)) / timedelta(milliseconds=1))


def cmd_analysts(args: argparse.Namespace) -> int:
    async def body() -> int:
        dsn = operator_dsn(args)
        action = args.analysts_command
        if action in ("grant", "revoke") and not 0 < len(args.login) <= 63:
            raise CommandError(f"invalid login name {args.login!r}", EXIT_USAGE)
        if action == "grant":
            limits = SessionLimits(args.statement_timeout, args.idle_timeout, args.lock_timeout)
            added = await grant_analyst(
                dsn, args.login, args.tenants, granted_by=user_of(args), limits=limits
            )
            print(f"granted {args.login}: {', '.join(args.tenants)} ({added} new)")
            return EXIT_OK
        if action == "revoke":
            removed = await revoke_analyst(dsn, args.login, args.tenants)
            print(f"revoked {removed} grant(s) of {args.login}")
            return EXIT_OK if removed == len(set(args.tenants)) else EXIT_FAILED
        grants = await list_analysts(dsn, args.login)
        if args.json:
            print(
                json.dumps(
                    [
                        {
                            "login": g.login,
                            "tenant": g.tenant_id,
                            "grantedAt": g.granted_at.isoformat(),
                            "grantedBy": g.granted_by,
                        }
                        for g in grants
                    ],
                    indent=2,
                )
            )
        else:
            _print_table(
                ["login", "tenant", "granted_at", "granted_by"],
                [(g.login, g.tenant_id, g.granted_at, g.granted_by) for g in grants],
                sys.stdout,
            )
        return EXIT_OK

    return run(f"analysts {args.analysts_command}", body)


# --------------------------------------------------------------------------------------------
# pydbal sql


MAX_TIMEOUT_S = 86_400.0  # a statement timeout longer than a day is a typo


def add_sql_parser(subparsers: _SubParsers) -> None:
    parser = subparsers.add_parser(
        "sql",
        help="run one read-only SELECT as an analyst (your own login; READ ONLY, time-limited)",
        description=(
            "Parses the query with sqlglot and refuses anything but a single read-only query, "
            "then runs it in a READ ONLY transaction with a statement timeout. Refuses DSNs of "
            "superusers, the owner, BYPASSRLS roles and members of the application role."
        ),
    )
    parser.add_argument("query", nargs="?", help="the SELECT to run")
    parser.add_argument("--file", "-f", help="read the query from this file ('-' for stdin)")
    parser.add_argument("--dsn", help="your analyst DSN (default: $PYDBAL_DSN)")
    parser.add_argument(
        "--format", choices=["table", "csv", "json"], default="table", help="output format"
    )
    parser.add_argument(
        "--from",
        dest="read",
        metavar="DIALECT",
        help="dialect the query is written in (sqlglot name: mysql, tsql, bigquery, ...)",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="statement timeout in seconds (default 30)"
    )
    parser.set_defaults(func=cmd_sql)


def _query_text(args: argparse.Namespace) -> str:
    if args.file and args.query:
        raise CommandError("give the query or --file, not both", EXIT_USAGE)
    if args.file:
        if args.file == "-":
            return sys.stdin.read()
        try:
            return Path(args.file).read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read {args.file}: {exc.strerror}", EXIT_USAGE) from None
    if not args.query:
        raise CommandError("give a query or --file", EXIT_USAGE)
    return str(args.query)


def cmd_sql(args: argparse.Namespace) -> int:
    from pydbal.sqlgate import QueryTooComplex, RefusedLogin, RefusedQuery, check, run_query

    async def body() -> int:
        text = _query_text(args)
        dsn = args.dsn or os.environ.get("PYDBAL_DSN")
        if not dsn:
            raise CommandError("no DSN: pass --dsn or set $PYDBAL_DSN to your analyst login", 2)
        if not (math.isfinite(args.timeout) and 0 < args.timeout <= MAX_TIMEOUT_S):
            raise CommandError(
                f"--timeout must be a number of seconds from 0 to {MAX_TIMEOUT_S:g}", EXIT_USAGE
            )
        try:
            sql = check(text, read=args.read)
        except QueryTooComplex as exc:
            raise CommandError(f"refused: {exc.reason}", EXIT_USAGE) from None
        except RefusedQuery as exc:
            raise CommandError(f"refused: {exc.reason}", EXIT_FAILED) from None
        try:
            result = await run_query(dsn, sql, timeout_s=args.timeout)
        except RefusedLogin as exc:
            raise CommandError(exc.reason, EXIT_USAGE) from None
        except asyncpg.QueryCanceledError:
            raise CommandError(f"the query ran longer than {args.timeout:g}s: cancelled") from None
        print_result(result.columns, result.rows, args.format, sys.stdout)
        return EXIT_OK

    return run("sql", body)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, UUID):
        return str(value)
    return str(value)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, default=_json_value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def print_result(
    columns: list[str], rows: list[tuple[Any, ...]], fmt: str, out: io.TextIOBase | Any
) -> None:
    """Print rows as an aligned table, CSV or a JSON array of objects."""
    if fmt == "json":
        out.write(
            json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=_json_value)
            + "\n"
        )
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for r in rows:
            writer.writerow([_cell(v) for v in r])
    else:
        _print_table(columns, rows, out)
        out.write(f"({len(rows)} row{'s' if len(rows) != 1 else ''})\n")


def _print_table(columns: list[str], rows: Sequence[Sequence[Any]], out: Any) -> None:
    cells = [[_cell(v).replace("\n", " ") for v in r] for r in rows]
    cells = [[c if len(c) <= 60 else c[:59] + "…" for c in r] for r in cells]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(columns)]
    out.write(" | ".join(h.ljust(w) for h, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    out.write("-+-".join("-" * w for w in widths) + "\n")
    for r in cells:
        out.write(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")
