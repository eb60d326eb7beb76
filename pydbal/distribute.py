"""pydbal distributed by tenant on Citus: detection and the distribution step.

A database is *distributed* when it has the ``citus`` extension (a Citus coordinator with its
workers added). There ``pydbal migrate`` installs the normal schema (``sql/*.sql``) as local
objects on the coordinator, with Citus' DDL propagation off (so the files' ``SET LOCAL ROLE`` to
the NOLOGIN owner never makes Citus open worker connections as that role), then applies
``sql/citus/*.sql`` in the same transaction: tables distributed by ``tenant_id`` and colocated
with ``dbal.workflows``, ``dbal.analyst_grants`` as a reference table, every function propagated
and the tenant entry points distributed by ``p_tenant``. ``pydbal distribute`` applies the same
step to a database migrated on a single node, after its nodes were added: the rows move into the
shards. The step is idempotent, so both commands may run again.

Upgrading a distributed install (``pydbal migrate`` with pending migrations) runs each pending
file through :func:`upgrade_file`: the file's sections that switch to the NOLOGIN owner
(``SET LOCAL ROLE @owner_role@`` … ``RESET ROLE``) run as the migrating superuser instead, with
Citus' DDL propagation on (Citus reaches the workers over connections as the current user,
which the owner cannot open), and every object such a section created in pydbal's schemas is
then given to the owner (``ALTER … OWNER``, which Citus propagates) — the objects, owners and
privileges of running the section as the owner. The distribution step then runs again and
distributes what is new (migrate does that after every run).

Nothing here runs on a database without Citus: single-node semantics are those of ``sql/``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import asyncpg

from pydbal.schema import (
    MigrationError,
    Roles,
    execute_file,
    execute_text,
    file_label,
    has_extension,
    ledger_exists,
    render,
    resolve_roles,
    schema_dirs,
)

__all__ = [
    "apply_distribution",
    "citus_dir",
    "citus_present",
    "distribute",
    "distribution_files",
    "finish_upgrade",
    "owner_sections",
    "prepare_upgrade",
    "upgrade_file",
]


def citus_dir(sql_dir: Path | None = None) -> Path:
    """The directory of the distribution step's files (``sql/citus``)."""
    return (sql_dir if sql_dir is not None else schema_dirs()[0]) / "citus"


def distribution_files(sql_dir: Path | None = None) -> list[Path]:
    """``sql/citus/*.sql`` in application order."""
    directory = citus_dir(sql_dir)
    return sorted(p for p in directory.glob("*.sql") if p.is_file()) if directory.is_dir() else []


#: Transaction-local settings of the distribution step (see sql/citus/10_distribute.sql).
_SETTINGS = (
    "SET LOCAL citus.enable_unsafe_triggers = on",
    "SET LOCAL citus.multi_shard_modify_mode = 'sequential'",
    "SET LOCAL citus.propagate_set_commands = 'local'",
    "SET LOCAL check_function_bodies = off",
    # rows moving into the shards are not new writes: no trigger may fire for them (history,
    # audit, timestamps) on the coordinator or on the workers
    "SET LOCAL session_replication_role = replica",
)


async def citus_present(conn: Any) -> bool:
    """Whether the connected database has the citus extension (is a Citus node)."""
    return await has_extension(conn, "citus")


async def _workers(conn: Any) -> int:
    """How many active primary worker nodes that hold shards the coordinator knows."""
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM pg_dist_node WHERE isactive AND noderole = 'primary' "
            "AND shouldhaveshards AND groupid <> 0"
        )
    )


#: The file of pydbal's own operators and GIN operator classes (issue 13), which Citus cannot
#: propagate: created on every worker with the coordinator's text (see _operators_on_workers).
_OPERATORS_FILE = "05_index_operators.sql"


async def _operators_on_workers(conn: Any, roles: Roles, sql_dir: Path) -> None:
    """Create ``sql/05_index_operators.sql``'s functions, operators and operator classes on
    every worker where they are missing, before sql/citus/10_distribute.sql distributes the
    tables whose indexes use them (Citus 13.2 refuses to distribute a table depending on an
    operator class, and does not create one on the workers). Runs through
    ``run_command_on_workers``: on its own connections, committed whatever the caller's
    transaction does (the text is idempotent, so a failed migration leaves nothing that a
    retry trips on). Any worker's failure raises."""
    path = sql_dir / _OPERATORS_FILE
    if not path.is_file():
        return
    owners = dict(
        await conn.fetch(
            "SELECT nspname, nspowner::regrole::text FROM pg_namespace "
            "WHERE nspname IN ('dbal', 'dbal_ext')"
        )
    )
    body = render(path, roles)
    if "$pydbal_ops$" in body:
        raise MigrationError(f"{path.name}: contains the quoting tag $pydbal_ops$")
    command = (
        "DO $pydbal_do$ BEGIN\n"
        # a worker's own DDL stays there (Citus refuses to propagate it from a worker)
        "PERFORM set_config('citus.enable_ddl_propagation', 'off', true);\n"
        f"CREATE SCHEMA IF NOT EXISTS dbal AUTHORIZATION {owners.get('dbal', 'CURRENT_USER')};\n"
        "CREATE SCHEMA IF NOT EXISTS dbal_ext AUTHORIZATION "
        f"{owners.get('dbal_ext', 'CURRENT_USER')};\n"
        "CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA dbal_ext;\n"
        # sql/00_schemas.sql's privileges on dbal_ext (Citus does not carry that schema)
        "REVOKE ALL ON SCHEMA dbal_ext FROM PUBLIC;\n"
        f"GRANT USAGE ON SCHEMA dbal_ext TO {roles.owner}, {roles.app}, {roles.analyst};\n"
        "IF EXISTS (SELECT FROM pg_opclass o JOIN pg_namespace n ON n.oid = o.opcnamespace "
        "WHERE n.nspname = 'dbal' AND o.opcname = 'name_trgm_ops') THEN RETURN; END IF;\n"
        f"EXECUTE $pydbal_ops${body}$pydbal_ops$;\n"
        "END $pydbal_do$"
    )
    failed = [
        f"{row['nodename']}:{row['nodeport']}: {row['result']}"
        for row in await conn.fetch(
            "SELECT nodename, nodeport, success, result FROM run_command_on_workers($1)", command
        )
        if not row["success"]
    ]
    if failed:
        raise MigrationError(
            f"creating {path.name}'s operators on the workers failed: " + "; ".join(failed)
        )


async def apply_distribution(conn: Any, roles: Roles, sql_dir: Path | None = None) -> None:
    """Run ``sql/citus/*.sql`` on an open connection, inside the caller's transaction."""
    if await _workers(conn) == 0:
        raise MigrationError(
            "the database has the citus extension but no worker nodes: add them first "
            "(SELECT citus_add_node(host, port) on the coordinator), then migrate again"
        )
    for setting in _SETTINGS:  # one statement each: Citus forwards a SET's whole query string
        await conn.execute(setting)
    shards = os.environ.get("PYDBAL_CITUS_SHARD_COUNT")
    if shards:  # shards per distributed table (Citus' default: citus.shard_count, 32)
        if not shards.isdigit() or not 1 <= int(shards) <= 64000:
            raise MigrationError(f"PYDBAL_CITUS_SHARD_COUNT must be 1..64000, not {shards!r}")
        await conn.execute(f"SET LOCAL citus.shard_count = {int(shards)}")
    distributed = bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT FROM pg_dist_partition "
            "WHERE logicalrelid = to_regclass('dbal.workflows'))"
        )
    )
    await _operators_on_workers(conn, roles, citus_dir(sql_dir).parent)
    for path in distribution_files(sql_dir):
        # Files before 10_ reshape local objects: until dbal.workflows is distributed nothing
        # of theirs may reach the workers (10_ sends everything, in dependency order).
        local = not distributed and path.name < "10"
        await conn.execute(f"SET LOCAL citus.enable_ddl_propagation = {'off' if local else 'on'}")
        await execute_file(conn, path, roles, label=f"sql/citus/{path.name}")


async def distribute(
    dsn: str,
    *,
    owner_role: str | None = None,
    app_role: str | None = None,
    analyst_role: str | None = None,
) -> dict[str, int]:
    """Distribute the pydbal database at ``dsn`` in place (data included); idempotent.

    The database must be migrated (``pydbal migrate``) and have Citus with its workers added.
    Returns how many tables and functions are distributed afterwards.
    """
    roles = resolve_roles(owner_role, app_role, analyst_role)
    conn = await asyncpg.connect(dsn)
    try:
        if not await citus_present(conn):
            raise MigrationError(
                "the database has no citus extension: CREATE EXTENSION citus on the "
                "coordinator and every worker, add the workers, then distribute"
            )
        if not await ledger_exists(conn):
            raise MigrationError("no pydbal schema here: run `pydbal migrate` first")
        async with conn.transaction():
            await apply_distribution(conn, roles)
        return await summary(conn)
    finally:
        await conn.close()


async def summary(conn: Any) -> dict[str, int]:
    """Counts of dbal's distributed tables, reference tables and distributed functions."""
    row = await conn.fetchrow(
        """
SELECT count(*) FILTER (WHERE p.partmethod = 'h') AS distributed_tables,
       count(*) FILTER (WHERE p.partmethod = 'n') AS reference_tables
  FROM pg_dist_partition p JOIN pg_class c ON c.oid = p.logicalrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'dbal' AND NOT c.relispartition
"""
    )
    functions = await conn.fetchval(
        """
SELECT count(*) FILTER (WHERE o.distribution_argument_index IS NOT NULL)
  FROM pg_dist_object o JOIN pg_proc p ON o.classid = 'pg_proc'::regclass AND p.oid = o.objid
 WHERE p.pronamespace = 'dbal'::regnamespace
"""
    )
    return {
        "distributed_tables": int(row["distributed_tables"]),
        "reference_tables": int(row["reference_tables"]),
        "tenant_functions": int(functions or 0),
    }


# --- upgrading a distributed install -------------------------------------------------------------

#: A schema file's switch to a role and back, each alone on a line (never inside a body).
_ROLE_SWITCH = re.compile(
    r"^(?:SET\s+(?:LOCAL\s+)?ROLE\s+\"?(\w+)\"?|RESET\s+ROLE)\s*;[ \t]*$",
    re.MULTILINE | re.IGNORECASE,
)

_COMMENT = re.compile(r"--[^\n]*")

#: Objects in pydbal's schemas (dbal*) owned by the current user, as ALTER … OWNER targets:
#: relations, routines, types, operators and their classes and families, the schemas; not
#: extension members, indexes, or sequences and types owned through another object.
_OWNED_BY_ME = """
SELECT o.classid::oid::bigint AS classid, o.objid::bigint AS objid, i.type, i.identity
  FROM (SELECT 'pg_class'::regclass AS classid, c.oid AS objid, c.relnamespace AS nsp
          FROM pg_class c
         WHERE c.relowner = current_user::regrole
           AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
        UNION ALL
        SELECT 'pg_proc'::regclass, p.oid, p.pronamespace FROM pg_proc p
         WHERE p.proowner = current_user::regrole
        UNION ALL
        SELECT 'pg_type'::regclass, t.oid, t.typnamespace FROM pg_type t
         WHERE t.typowner = current_user::regrole AND t.typrelid = 0 AND t.typelem = 0
        UNION ALL
        SELECT 'pg_operator'::regclass, x.oid, x.oprnamespace FROM pg_operator x
         WHERE x.oprowner = current_user::regrole
        UNION ALL
        SELECT 'pg_opclass'::regclass, x.oid, x.opcnamespace FROM pg_opclass x
         WHERE x.opcowner = current_user::regrole
        UNION ALL
        SELECT 'pg_opfamily'::regclass, x.oid, x.opfnamespace FROM pg_opfamily x
         WHERE x.opfowner = current_user::regrole
        UNION ALL
        SELECT 'pg_namespace'::regclass, n.oid, n.oid FROM pg_namespace n
         WHERE n.nspowner = current_user::regrole) o
  JOIN pg_namespace n ON n.oid = o.nsp AND n.nspname LIKE 'dbal%'
 CROSS JOIN LATERAL pg_identify_object(o.classid, o.objid, 0) i
 WHERE NOT EXISTS (SELECT FROM pg_depend d
                    WHERE d.classid = o.classid AND d.objid = o.objid
                      AND d.deptype IN ('e', 'a', 'i'))
"""

#: pg_identify_object's type → the ALTER command that changes its owner.
_ALTER = {
    "table": "TABLE",
    "view": "VIEW",
    "materialized view": "MATERIALIZED VIEW",
    "sequence": "SEQUENCE",
    "foreign table": "FOREIGN TABLE",
    "composite type": "TYPE",
    "function": "FUNCTION",
    "procedure": "PROCEDURE",
    "aggregate": "AGGREGATE",
    "type": "TYPE",
    "domain": "DOMAIN",
    "operator": "OPERATOR",
    "operator class": "OPERATOR CLASS",
    "operator family": "OPERATOR FAMILY",
    "schema": "SCHEMA",
}


def owner_sections(text: str, roles: Roles, label: str) -> list[tuple[str, bool]]:
    """A rendered schema file cut at its role switches: ``(sql, as_owner)`` in file order, the
    switch lines left out. Refuses a switch to a role other than the owner."""
    sections: list[tuple[str, bool]] = []
    as_owner = False
    start = 0
    for match in _ROLE_SWITCH.finditer(text):
        role = match.group(1)
        if role is not None and role.lower() != roles.owner:
            raise MigrationError(f"{label}: switches to role {role!r}, not the owner's")
        sections.append((text[start : match.start()], as_owner))
        as_owner = role is not None
        start = match.end()
    sections.append((text[start:], as_owner))
    # a section of comments only is left out (an empty query has no command tag)
    return [(sql, owner) for sql, owner in sections if _COMMENT.sub("", sql).strip()]


async def upgrade_file(conn: Any, path: Path, roles: Roles) -> None:
    """Apply one migration file to a distributed install, inside the caller's transaction (see
    the module's docstring; between :func:`prepare_upgrade` and :func:`finish_upgrade`): its
    owner sections as the superuser, their new objects then given to the owner. Refuses (and
    so rolls back) when Citus says it could not propagate an object to the workers."""
    label = file_label(path)
    for number, (sql, as_owner) in enumerate(owner_sections(render(path, roles), roles, label)):
        where = f"{label} (section {number + 1})"
        if not as_owner:
            await _execute_propagated(conn, sql, where)
            continue
        before = {(r["classid"], r["objid"]) for r in await conn.fetch(_OWNED_BY_ME)}
        await _execute_propagated(conn, sql, where)
        for row in await conn.fetch(_OWNED_BY_ME):
            if (row["classid"], row["objid"]) in before:
                continue
            kind = _ALTER.get(row["type"])
            if kind is None:
                raise MigrationError(
                    f"{where}: created {row['type']} {row['identity']}, whose owner this "
                    "upgrade cannot hand over"
                )
            await execute_text(
                conn, f'ALTER {kind} {row["identity"]} OWNER TO "{roles.owner}"', where
            )


async def _execute_propagated(conn: Any, sql: str, where: str) -> None:
    """:func:`execute_text`, refusing what Citus only warns about: an object it left local to
    the coordinator because it depends on one it cannot propagate."""
    warnings: list[str] = []

    def listener(_conn: Any, message: Any) -> None:
        if "unsupported object" in str(message):
            warnings.append(str(message))

    conn.add_log_listener(listener)
    try:
        await execute_text(conn, sql, where)
    finally:
        conn.remove_log_listener(listener)
    if warnings:
        raise MigrationError(f"{where}: not propagated to the workers: " + "; ".join(warnings))


async def prepare_upgrade(conn: Any) -> None:
    """Transaction-local settings for applying migration files on a coordinator, and pydbal's
    operators and operator classes marked as present on every node until
    :func:`finish_upgrade`: Citus propagates no function depending on one it does not know
    there (a function of dbal.workflows' row type does, through the table's indexes), and
    cannot create them itself (sql/citus/10_distribute.sql marks them the same way)."""
    for setting in _UPGRADE_SETTINGS:
        await conn.execute(setting)
    await conn.execute(_MARK_OPERATORS)


async def finish_upgrade(conn: Any) -> None:
    """Undo :func:`prepare_upgrade`'s marks (before the distribution step runs again)."""
    await conn.execute(_UNMARK_OPERATORS)


#: sql/citus/10_distribute.sql's marking of dbal's operators, classes and families.
_MARK_OPERATORS = """
CREATE TEMP TABLE pg_temp.dbal_upgrade_marked ON COMMIT DROP AS
SELECT x.classid, x.objid
  FROM (SELECT 'pg_opclass'::regclass AS classid, oid AS objid FROM pg_opclass
         WHERE opcnamespace = 'dbal'::regnamespace
        UNION ALL
        SELECT 'pg_opfamily'::regclass, oid FROM pg_opfamily
         WHERE opfnamespace = 'dbal'::regnamespace
        UNION ALL
        SELECT 'pg_operator'::regclass, oid FROM pg_operator
         WHERE oprnamespace = 'dbal'::regnamespace) x
 WHERE NOT EXISTS (SELECT FROM pg_dist_object o WHERE o.classid = x.classid AND o.objid = x.objid);
INSERT INTO pg_catalog.pg_dist_object (classid, objid, objsubid)
SELECT classid, objid, 0 FROM pg_temp.dbal_upgrade_marked;
"""
_UNMARK_OPERATORS = """
DELETE FROM pg_catalog.pg_dist_object o
 USING pg_temp.dbal_upgrade_marked m
 WHERE o.classid = m.classid AND o.objid = m.objid AND o.objsubid = 0;
DROP TABLE pg_temp.dbal_upgrade_marked;
"""


#: Citus' DDL propagation on (the files' DDL must reach the workers), one connection per
#: worker for the transaction's DDL and writes, triggers allowed on distributed tables.
_UPGRADE_SETTINGS = (
    "SET LOCAL citus.enable_ddl_propagation = on",
    "SET LOCAL citus.multi_shard_modify_mode = 'sequential'",
    "SET LOCAL citus.propagate_set_commands = 'local'",
    "SET LOCAL citus.enable_unsafe_triggers = on",
)
