"""``pydbal analysts grant|revoke|list``: which tenants each analyst login may read.

Grants live in ``dbal.analyst_grants`` (one row per login and tenant); the analyst policies read
them for ``session_user`` (sql/95_analysts.sql). Managing them needs a superuser DSN.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydbal.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    SubParsers,
    add_options,
    duration,
    operator_dsn,
    print_table,
    run,
    superuser_connection,
    user_of,
)
from pydbal.schema import Roles, close_public_temp, resolve_roles

# --- the operations (also used by tests) -----------------------------------------------------


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
        """The PostgreSQL setting names with their values in milliseconds."""
        return {
            "statement_timeout": self.statement_timeout_ms,
            "idle_in_transaction_session_timeout": self.idle_in_transaction_session_timeout_ms,
            "lock_timeout": self.lock_timeout_ms,
        }


@dataclass(frozen=True)
class AnalystGrant:
    """One row of ``dbal.analyst_grants``: ``login`` may read ``tenant_id``."""

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
    async with superuser_connection(dsn, "managing analyst grants") as conn:
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


def _ident(name: str) -> str:
    """``name`` with its double quotes doubled, to stand between double quotes."""
    return name.replace('"', '""')


async def revoke_analyst(dsn: str, login: str, tenants: Sequence[str]) -> int:
    """Remove ``login``'s grants for ``tenants``; returns how many rows were removed."""
    async with superuser_connection(dsn, "managing analyst grants") as conn:
        result = await conn.execute(
            "DELETE FROM dbal.analyst_grants"
            " WHERE login = $1::name AND tenant_id = ANY($2::text[])",
            login,
            list(tenants),
        )
        return int(result.split()[-1])


async def list_analysts(dsn: str, login: str | None = None) -> list[AnalystGrant]:
    """The analyst grants, of every login or of ``login``, ordered by login and tenant."""
    async with superuser_connection(dsn, "managing analyst grants") as conn:
        rows = await conn.fetch(
            """SELECT login::text AS login, tenant_id, granted_at, granted_by
                 FROM dbal.analyst_grants WHERE $1::text IS NULL OR login = $1::name
                ORDER BY login, tenant_id""",
            login,
        )
        return [AnalystGrant(**dict(r)) for r in rows]


# --- the command -----------------------------------------------------------------------------


def add_analysts_parser(subparsers: SubParsers) -> None:
    """``pydbal analysts grant|revoke|list``."""
    parser = subparsers.add_parser(
        "analysts",
        help="manage which tenants analyst logins may read (needs a superuser DSN)",
        description="Analysts read their granted tenants through the dbal_analytics views "
        "(docs/analysts.md). Every action needs a superuser DSN. Exit 0 done, 1 refused or "
        "failed (no such login, a login that would see more than an analyst, revoke of a grant "
        "that did not exist), 2 usage error, no database or not a superuser's DSN.",
    )
    sub = parser.add_subparsers(dest="analysts_command", required=True, metavar="ACTION")

    grant = sub.add_parser(
        "grant",
        help="let LOGIN read TENANT… (grants it the analyst role if needed)",
        description="Lets an existing analyst login read the tenants given, grants it the "
        "analyst role if needed, sets its session limits and closes temporary tables to PUBLIC "
        "in this database. Refuses superusers, BYPASSRLS logins and members of the owner or "
        "app role.",
    )
    grant.add_argument("login", metavar="LOGIN", help="an existing LOGIN role (the analyst's own)")
    grant.add_argument("tenants", nargs="+", metavar="TENANT", help="tenant ids to grant")
    defaults = SessionLimits()
    for flag, default, text in (
        ("--statement-timeout", defaults.statement_timeout_ms, "statement_timeout (default 5min"),
        (
            "--idle-timeout",
            defaults.idle_in_transaction_session_timeout_ms,
            "idle_in_transaction_session_timeout (default 1min",
        ),
        ("--lock-timeout", defaults.lock_timeout_ms, "lock_timeout (default 10s"),
    ):
        grant.add_argument(
            flag,
            type=_duration_ms,
            default=default,
            metavar="DURATION",
            help=f"the login's {text}; 0 = none; at most 24h), e.g. 30s, 5min, 1h",
        )
    add_options(grant, cmd_analysts, dsn="a superuser", user=True)

    revoke = sub.add_parser(
        "revoke",
        help="stop LOGIN reading TENANT… (from its next query)",
        description="Removes the login's grants for the tenants given. Exit 1 when some of "
        "them did not exist.",
    )
    revoke.add_argument("login", metavar="LOGIN", help="the analyst's login")
    revoke.add_argument("tenants", nargs="+", metavar="TENANT", help="tenant ids to revoke")
    add_options(revoke, cmd_analysts, dsn="a superuser")

    lst = sub.add_parser("list", help="list analyst grants (login, tenant, when, by whom)")
    lst.add_argument("--login", help="only this login's grants")
    add_options(lst, cmd_analysts, json="", dsn="a superuser")


def _duration_ms(text: str) -> int:
    """A duration (see :func:`pydbal.cli.common.duration`) of at most 24 h, in milliseconds."""
    return round(duration(text, maximum=timedelta(hours=24)) / timedelta(milliseconds=1))


def cmd_analysts(args: argparse.Namespace) -> int:
    """Run ``analysts grant``, ``revoke`` or ``list``; exit 0, 1 (refused, failed, a grant to
    revoke missing) or 2 (usage, no database, not a superuser)."""

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
            print_table(
                ["login", "tenant", "granted_at", "granted_by"],
                [(g.login, g.tenant_id, g.granted_at, g.granted_by) for g in grants],
            )
        return EXIT_OK

    return run(f"analysts {args.analysts_command}", body)
