"""The test harness itself: the roles exist and the app login is as weak as production's."""

from __future__ import annotations

from pathlib import Path

import pytest

from pydbal.migrate import resolve_roles
from pydbal.server import dsn_database, dsn_with

from conftest import APP_LOGIN, TestDatabase


async def test_roles_exist_and_are_not_privileged(db: TestDatabase) -> None:
    roles = resolve_roles()
    conn = await db.connect(as_app=False)
    rows = await conn.fetch(
        "SELECT rolname, rolsuper, rolbypassrls, rolcanlogin, rolcreatedb, rolcreaterole"
        " FROM pg_roles WHERE rolname = ANY($1::text[]) ORDER BY rolname",
        [roles.owner, roles.app, roles.analyst],
    )
    assert sorted(r["rolname"] for r in rows) == sorted([roles.owner, roles.app, roles.analyst])
    for row in rows:
        assert not any(row[k] for k in list(row.keys())[1:]), dict(row)


async def test_app_login_is_not_superuser_and_cannot_bypass_rls(db: TestDatabase) -> None:
    conn = await db.connect()
    row = await conn.fetchrow(
        "SELECT current_user AS who, rolsuper, rolbypassrls FROM pg_roles"
        " WHERE rolname = current_user"
    )
    assert row["who"] == APP_LOGIN
    assert row["rolsuper"] is False
    assert row["rolbypassrls"] is False
    assert await conn.fetchval(
        "SELECT pg_has_role(current_user, $1, 'MEMBER')", resolve_roles().app
    )
    assert await conn.fetchval("SELECT current_database()") == db.name


async def test_each_test_gets_its_own_migrated_database(db: TestDatabase, template_db: str) -> None:
    assert db.name != template_db
    conn = await db.connect(as_app=False)
    assert await conn.fetchval("SELECT count(*) FROM dbal.schema_migrations") >= 1


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        (
            "postgresql://postgres@127.0.0.1:5432/postgres",
            "postgresql://pydbal_test_app@127.0.0.1:5432/other",
        ),
        (
            "postgresql://postgres:secret@db.example:6543/postgres?sslmode=require",
            "postgresql://pydbal_test_app@db.example:6543/other?sslmode=require",
        ),
        (
            "postgresql://postgres:@/postgres?host=/var/tmp/pydbal-root/pgdata",
            "postgresql://pydbal_test_app@/other?host=/var/tmp/pydbal-root/pgdata",
        ),
        (
            "host=/tmp dbname=postgres user=postgres password=x",
            "host=/tmp dbname=other user=pydbal_test_app",
        ),
    ],
)
def test_dsn_with(dsn: str, expected: str) -> None:
    assert dsn_with(dsn, database="other", user=APP_LOGIN) == expected
    assert dsn_database(dsn_with(dsn, database="x_1")) == "x_1"


def test_dsn_with_keeps_the_user_when_only_the_database_changes(tmp_path: Path) -> None:
    dsn = "postgresql://postgres:@/postgres?host=" + str(tmp_path)
    assert dsn_with(dsn, database="db2") == f"postgresql://postgres:@/db2?host={tmp_path}"
