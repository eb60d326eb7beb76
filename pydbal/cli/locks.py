"""``pydbal locks list|sweep``: the workflows of a tenant that hold a live lock, and the release
of every expired lock (``dbal.sweep_expired_locks()``, audited as ``--user``)."""

from __future__ import annotations

import argparse
import json

from pydbal import queries as q
from pydbal.cli.common import (
    EXIT_OK,
    SubParsers,
    add_options,
    all_workflows,
    open_db,
    operator_dsn,
    print_table,
    run,
    superuser_connection,
    user_of,
)


def add_locks_parser(subparsers: SubParsers) -> None:
    """``pydbal locks list`` and ``pydbal locks sweep``."""
    parser = subparsers.add_parser(
        "locks",
        help="list workflow locks, release expired ones",
        description="Workflow locks (leases): list a tenant's live ones, or release every "
        "expired one in all tenants. Exit 0 done, 2 usage error, no database or (sweep) not a "
        "superuser's DSN.",
    )
    sub = parser.add_subparsers(dest="locks_command", required=True, metavar="ACTION")
    lst = sub.add_parser(
        "list",
        help="the workflows of a tenant that hold a live lock (holder, since, expiry)",
        description="The workflows of --tenant that hold a live lock; an expired lease reads "
        "as unlocked. Reads as --user with role supergod.",
    )
    lst.add_argument("--tenant", required=True, help="the tenant id")
    add_options(lst, cmd_locks, json="", user=True)
    sweep = sub.add_parser(
        "sweep",
        help="release every expired lock in all tenants (audited; needs a superuser)",
        description="Runs dbal.sweep_expired_locks(): every expired lock in all tenants is "
        "released, each with an audit row naming --user. Needs a superuser DSN.",
    )
    add_options(sweep, cmd_locks, dsn="a superuser", user=True)


async def sweep_locks(dsn: str, user: str) -> int:
    """``dbal.sweep_expired_locks()`` as a superuser; the audit rows name ``user``."""
    async with superuser_connection(dsn, "locks sweep") as conn, conn.transaction():
        await conn.execute(
            "SELECT set_config('dbal.user_id', $1, true), "
            "set_config('dbal.user_role', 'supergod', true)",
            user,
        )
        return int(await conn.fetchval(q.SWEEP_EXPIRED_LOCKS))


def cmd_locks(args: argparse.Namespace) -> int:
    """Run ``locks list`` or ``locks sweep``; exit 0, or 2 (no database, not a superuser)."""

    async def body() -> int:
        dsn = operator_dsn(args)
        if args.locks_command == "sweep":
            count = await sweep_locks(dsn, user_of(args))
            print(f"released {count} expired lock(s)")
            return EXIT_OK
        async with open_db(dsn) as db:
            tenant = db.tenant(args.tenant, user_id=user_of(args), role="supergod")
            locked = await all_workflows(tenant, {"is_locked": True})
        rows = [
            {
                "id": str(w.id),
                "name": w.name,
                "lockedBy": w.locked_by,
                "lockedAt": w.locked_at.isoformat() if w.locked_at else None,
                "expiresAt": w.lock_expires_at.isoformat() if w.lock_expires_at else None,
            }
            for w in locked
        ]
        if args.json:
            print(json.dumps(rows, indent=2))
        elif not rows:
            print(f"no live locks in {args.tenant}")
        else:
            print_table(
                ["id", "name", "locked_by", "locked_at", "expires_at"],
                [tuple(r.values()) for r in rows],
            )
        return EXIT_OK

    return run(f"locks {args.locks_command}", body)
