"""The migration runner: fresh install ≡ replayed migrations, exactly-once, refusals, idempotence.

Each test runs against a small sample schema (tests/conftest.py) and, once ``sql/`` and
``migrations/0001_initial.sql`` exist, against a copy of the real one.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from pydbal.migrate import (
    MigrationError,
    checksum,
    migrate,
    migration_files,
    resolve_roles,
    status,
)
from pydbal.server import dsn_with

from conftest import TestDatabase, copy_real_schema, real_schema_available, write_sample_schema


@pytest.fixture(params=["sample", "real"])
def schema(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Path]:
    """``(sql_dir, migrations_dir)``: copies in a temporary directory, safe to edit."""
    if request.param == "real":
        if not real_schema_available():
            pytest.skip("sql/ and migrations/0001_initial.sql do not exist yet")
        return copy_real_schema(tmp_path)
    return write_sample_schema(tmp_path)


# --- catalog snapshot ---------------------------------------------------------------------------

_SCHEMAS = "n.nspname LIKE 'dbal%'"
_NOT_EXTENSION_MEMBER = (
    "NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = {cat}::regclass "
    "AND d.objid = {oid} AND d.deptype = 'e')"
)

SNAPSHOT_QUERIES: dict[str, str] = {
    "schemas": """
        SELECT n.nspname, pg_get_userbyid(n.nspowner) AS owner, n.nspacl::text
        FROM pg_namespace n WHERE """
    + _SCHEMAS
    + " ORDER BY 1",
    "relations": """
        SELECT n.nspname, c.relname, c.relkind, pg_get_userbyid(c.relowner) AS owner,
               c.relrowsecurity, c.relforcerowsecurity, c.relacl::text,
               pg_get_partkeydef(c.oid) AS partkey, c.reloptions::text
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE """
    + _SCHEMAS
    + """ AND NOT c.relispartition AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
          AND """
    + _NOT_EXTENSION_MEMBER.format(cat="'pg_class'", oid="c.oid")
    + " ORDER BY 1, 2",
    "columns": """
        SELECT n.nspname, c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
               a.attnotnull, pg_get_expr(ad.adbin, ad.adrelid) AS default, a.attidentity,
               a.attgenerated, a.attacl::text, a.attcollation
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
        WHERE """
    + _SCHEMAS
    + """ AND NOT c.relispartition AND a.attnum > 0 AND NOT a.attisdropped
          AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')
        ORDER BY 1, 2, a.attname""",
    "constraints": """
        SELECT n.nspname, c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid)
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE """
    + _SCHEMAS
    + " AND NOT c.relispartition ORDER BY 1, 2, 3",
    "domain_and_type_constraints": """
        SELECT n.nspname, t.typname, k.conname, pg_get_constraintdef(k.oid)
        FROM pg_constraint k JOIN pg_type t ON t.oid = k.contypid
        JOIN pg_namespace n ON n.oid = t.typnamespace WHERE """
    + _SCHEMAS
    + " ORDER BY 1, 2, 3",
    "indexes": """
        SELECT schemaname, tablename, indexname, indexdef FROM pg_indexes i
        JOIN pg_class c ON c.relname = i.tablename
        JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = i.schemaname
        WHERE """
    + _SCHEMAS
    + " AND NOT c.relispartition ORDER BY 1, 2, 3",
    "policies": """
        SELECT schemaname, tablename, policyname, permissive, roles::text, cmd, qual, with_check
        FROM pg_policies WHERE schemaname LIKE 'dbal%' ORDER BY 1, 2, 3""",
    "table_grants": """
        SELECT g.grantor, g.grantee, g.table_schema, g.table_name, g.privilege_type,
               g.is_grantable
        FROM information_schema.role_table_grants g
        JOIN pg_class c ON c.relname = g.table_name
        JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = g.table_schema
        WHERE """
    + _SCHEMAS
    + " AND NOT c.relispartition ORDER BY 1, 2, 3, 4, 5",
    "column_grants": """
        SELECT grantor, grantee, table_schema, table_name, column_name, privilege_type,
               is_grantable
        FROM information_schema.column_privileges WHERE table_schema LIKE 'dbal%'
          AND (table_schema, table_name) NOT IN (
              SELECT n.nspname, c.relname FROM pg_class c
              JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relispartition)
        ORDER BY 1, 2, 3, 4, 5, 6""",
    "routine_grants": """
        SELECT grantor, grantee, routine_schema, routine_name, privilege_type, is_grantable
        FROM information_schema.routine_privileges WHERE routine_schema LIKE 'dbal%'
        ORDER BY 1, 2, 3, 4, 5""",
    "functions": """
        SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid) AS args,
               pg_get_userbyid(p.proowner) AS owner, p.proacl::text, p.prosecdef,
               p.provolatile, p.proconfig::text, pg_get_functiondef(p.oid)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE """
    + _SCHEMAS
    + " AND p.prokind <> 'a' AND "
    + _NOT_EXTENSION_MEMBER.format(cat="'pg_proc'", oid="p.oid")
    + " ORDER BY 1, 2, 3",
    "triggers": """
        SELECT n.nspname, c.relname, t.tgname, t.tgenabled, pg_get_triggerdef(t.oid)
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE """
    + _SCHEMAS
    + " AND NOT t.tgisinternal AND NOT c.relispartition ORDER BY 1, 2, 3",
    "views": """
        SELECT schemaname, viewname, definition FROM pg_views
        WHERE schemaname LIKE 'dbal%' ORDER BY 1, 2""",
    "types": """
        SELECT n.nspname, t.typname, t.typtype, pg_get_userbyid(t.typowner), t.typacl::text,
               (SELECT array_agg(e.enumlabel ORDER BY e.enumsortorder)::text
                FROM pg_enum e WHERE e.enumtypid = t.oid) AS labels
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE """
    + _SCHEMAS
    + """ AND t.typtype IN ('e', 'd', 'c', 'r')
          AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
          AND """
    + _NOT_EXTENSION_MEMBER.format(cat="'pg_type'", oid="t.oid")
    + " ORDER BY 1, 2",
    "extensions": "SELECT extname, extversion, extnamespace::regnamespace::text FROM pg_extension"
    " ORDER BY 1",
    "default_privileges": """
        SELECT pg_get_userbyid(defaclrole), defaclnamespace::regnamespace::text, defaclobjtype,
               defaclacl::text FROM pg_default_acl ORDER BY 1, 2, 3""",
    "comments": """
        SELECT d.classoid::regclass::text, n.nspname,
               COALESCE(c.relname, p.proname || '(' || pg_get_function_identity_arguments(p.oid)
                        || ')', t.typname) AS object, d.objsubid, d.description
        FROM pg_description d
        LEFT JOIN pg_class c ON d.classoid = 'pg_class'::regclass AND c.oid = d.objoid
        LEFT JOIN pg_proc p ON d.classoid = 'pg_proc'::regclass AND p.oid = d.objoid
        LEFT JOIN pg_type t ON d.classoid = 'pg_type'::regclass AND t.oid = d.objoid
        JOIN pg_namespace n ON n.oid = COALESCE(c.relnamespace, p.pronamespace, t.typnamespace)
        WHERE """
    + _SCHEMAS
    + " AND NOT COALESCE(c.relispartition, false) ORDER BY 1, 2, 3, 4",
    "ledger": "SELECT name, checksum FROM dbal.schema_migrations ORDER BY name",
}

_PARTMAN_QUERY = """
    SELECT parent_table, control, partition_type, partition_interval, premake, retention,
           retention_keep_table, infinite_time_partitions
    FROM partman.part_config WHERE parent_table LIKE 'dbal%' ORDER BY 1"""


async def schema_snapshot(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    """What a database's dbal* schemas look like, as comparable rows per catalog aspect."""
    conn = await asyncpg.connect(dsn)
    try:
        snapshot = {
            aspect: [tuple(row) for row in await conn.fetch(query)]
            for aspect, query in SNAPSHOT_QUERIES.items()
        }
        if await conn.fetchval("SELECT to_regclass('partman.part_config') IS NOT NULL"):
            snapshot["partman"] = [tuple(row) for row in await conn.fetch(_PARTMAN_QUERY)]
        return snapshot
    finally:
        await conn.close()


def _diff(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> str:
    only_a = [row for row in a if row not in b]
    only_b = [row for row in b if row not in a]
    lines = [f"  only in fresh-from-sql/:  {row}" for row in only_a]
    lines += [f"  only in from-migrations/: {row}" for row in only_b]
    return "\n".join(lines)


async def _fresh_and_replayed(
    pg_dsn: str, empty_db: TestDatabase, sql_dir: Path, migrations_dir: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Schema snapshots of a fresh install of ``sql_dir`` (in ``empty_db``) and of a replay of
    ``migrations_dir`` (in a scratch database dropped afterwards)."""
    other = f"{empty_db.name}_m"
    admin = await asyncpg.connect(pg_dsn)
    await admin.execute(f"CREATE DATABASE {other} TEMPLATE template0")
    try:
        other_dsn = dsn_with(pg_dsn, database=other)
        await migrate(empty_db.dsn, sql_dir=sql_dir, migrations_dir=migrations_dir)
        await migrate(other_dsn, mode="migrations", sql_dir=sql_dir, migrations_dir=migrations_dir)
        return await schema_snapshot(empty_db.dsn), await schema_snapshot(other_dsn)
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {other} WITH (FORCE)")
        await admin.close()


# --- the tests ----------------------------------------------------------------------------------


async def test_fresh_install_equals_replayed_migrations(
    schema: tuple[Path, Path], pg_dsn: str, empty_db: TestDatabase, tmp_path: Path
) -> None:
    sql_dir, migrations_dir = schema
    fresh, replayed = await _fresh_and_replayed(pg_dsn, empty_db, sql_dir, migrations_dir)
    assert fresh["relations"], "the snapshot found no tables: are the schemas named dbal*?"
    differences = {
        aspect: _diff(fresh[aspect], replayed.get(aspect, []))
        for aspect in fresh.keys() | replayed.keys()
        if fresh.get(aspect) != replayed.get(aspect)
    }
    assert not differences, "sql/ and migrations/ disagree:\n" + "\n".join(
        f"{aspect}:\n{text}" for aspect, text in sorted(differences.items())
    )


async def test_concurrent_runners_apply_everything_exactly_once(
    schema: tuple[Path, Path], empty_db: TestDatabase
) -> None:
    sql_dir, migrations_dir = schema
    results = await asyncio.gather(
        *(migrate(empty_db.dsn, sql_dir=sql_dir, migrations_dir=migrations_dir) for _ in range(4))
    )
    names = [p.stem for p in migration_files(migrations_dir)]
    assert sorted(results, key=len) == [[], [], [], names]
    conn = await empty_db.connect(as_app=False)
    rows = await conn.fetch("SELECT name, checksum FROM dbal.schema_migrations ORDER BY name")
    assert [(r["name"], r["checksum"]) for r in rows] == [
        (p.stem, checksum(p)) for p in migration_files(migrations_dir)
    ]


async def test_second_run_is_a_no_op_and_new_migrations_are_applied(
    schema: tuple[Path, Path], empty_db: TestDatabase
) -> None:
    sql_dir, migrations_dir = schema
    first = await migrate(empty_db.dsn, sql_dir=sql_dir, migrations_dir=migrations_dir)
    assert first == [p.stem for p in migration_files(migrations_dir)]
    assert await migrate(empty_db.dsn, sql_dir=sql_dir, migrations_dir=migrations_dir) == []

    (migrations_dir / "9999_test_extra.sql").write_text(
        "CREATE TABLE dbal.test_extra (id int);\n"
        "ALTER TABLE dbal.test_extra OWNER TO @owner_role@;\n"
    )
    applied = await migrate(empty_db.dsn, sql_dir=sql_dir, migrations_dir=migrations_dir)
    assert applied == ["9999_test_extra"]
    assert await migrate(empty_db.dsn, sql_dir=sql_dir, migrations_dir=migrations_dir) == []

    info = await status(empty_db.dsn, migrations_dir=migrations_dir)
    assert info["schema_version"] == "9999_test_extra"
    assert info["pending"] == [] and info["edited"] == []
    conn = await empty_db.connect(as_app=False)
    owner = await conn.fetchval(
        "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'dbal.test_extra'::regclass"
    )
    assert owner == resolve_roles().owner  # the placeholder was substituted


async def test_edited_migration_is_refused_naming_the_file(
    schema: tuple[Path, Path], empty_db: TestDatabase
) -> None:
    sql_dir, migrations_dir = schema
    await migrate(empty_db.dsn, sql_dir=sql_dir, migrations_dir=migrations_dir)
    first = migration_files(migrations_dir)[0]
    with first.open("a") as f:
        f.write("\n-- an innocent-looking edit\n")
    with pytest.raises(MigrationError) as caught:
        await migrate(empty_db.dsn, sql_dir=sql_dir, migrations_dir=migrations_dir)
    message = str(caught.value)
    assert f"migrations/{first.name} was edited after it was applied" in message
    assert "add a new migration instead" in message
    info = await status(empty_db.dsn, migrations_dir=migrations_dir)
    assert info["edited"] == [first.stem]


async def test_non_superuser_is_refused(
    schema: tuple[Path, Path], empty_db: TestDatabase, app_login: str
) -> None:
    sql_dir, migrations_dir = schema
    with pytest.raises(MigrationError, match="requires a PostgreSQL superuser"):
        await migrate(
            dsn_with(empty_db.dsn, user=app_login), sql_dir=sql_dir, migrations_dir=migrations_dir
        )
    conn = await empty_db.connect(as_app=False)
    assert await conn.fetchval("SELECT to_regclass('dbal.schema_migrations')") is None


async def test_failing_file_is_named_and_rolled_back(
    empty_db: TestDatabase, tmp_path: Path
) -> None:
    sql_dir, migrations_dir = write_sample_schema(tmp_path)
    (sql_dir / "99_broken.sql").write_text("CREATE TABLE dbal.oops (id int REFERENCES nowhere);")
    with pytest.raises(MigrationError, match=r"sql/99_broken\.sql failed"):
        await migrate(empty_db.dsn, sql_dir=sql_dir, migrations_dir=migrations_dir)
    conn = await empty_db.connect(as_app=False)
    assert await conn.fetchval("SELECT to_regclass('dbal.items')") is None


async def test_role_names_are_validated(empty_db: TestDatabase, tmp_path: Path) -> None:
    sql_dir, migrations_dir = write_sample_schema(tmp_path)
    with pytest.raises(MigrationError, match="invalid app role name"):
        await migrate(
            empty_db.dsn, app_role='x"; DROP', sql_dir=sql_dir, migrations_dir=migrations_dir
        )


async def test_snapshot_notices_a_difference(
    pg_dsn: str, empty_db: TestDatabase, tmp_path: Path
) -> None:
    """Guard against a vacuous comparison: a migration missing an index must show up."""
    sql_dir, migrations_dir = write_sample_schema(tmp_path)
    note = migrations_dir / "0002_item_note.sql"
    note.write_text(note.read_text().replace("CREATE INDEX", "-- CREATE INDEX"))
    fresh, replayed = await _fresh_and_replayed(pg_dsn, empty_db, sql_dir, migrations_dir)
    assert fresh["indexes"] != replayed["indexes"]
    assert fresh["columns"] == replayed["columns"]


async def test_emptied_ledger_is_refused_not_reinstalled(db: TestDatabase) -> None:
    conn = await db.connect(as_app=False)
    await conn.execute("DELETE FROM dbal.schema_migrations")
    with pytest.raises(MigrationError, match=r"ledger .* is empty"):
        await migrate(db.dsn)
    assert await conn.fetchval("SELECT count(*) FROM dbal.workflows") == 0  # schema untouched
