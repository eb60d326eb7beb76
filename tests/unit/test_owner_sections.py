"""Upgrading a distributed install: how a migration file is cut at its role switches
(pydbal.distribute.owner_sections; the upgrade itself: tests/citus/test_distribute.py)."""

from __future__ import annotations

import pytest

from pydbal.distribute import owner_sections
from pydbal.schema import MigrationError, Roles

ROLES = Roles()


def test_sections_follow_the_switches_and_skip_comment_only_ones() -> None:
    text = (
        "-- header\n-- more\n"
        "SET LOCAL ROLE pydbal_owner;\n"
        "CREATE FUNCTION dbal.f() RETURNS int LANGUAGE sql AS $$\n"
        "    SELECT 1  -- SET LOCAL ROLE x; inside a line is not a switch\n"
        "$$;\n"
        "RESET ROLE;\n"
        "GRANT USAGE ON SCHEMA dbal TO pydbal_app;\n"
        "set role pydbal_owner ;\n"
        "CREATE TABLE dbal.t (tenant_id text);\n"
        "RESET ROLE;\n"
        "-- trailer\n"
    )
    sections = owner_sections(text, ROLES, "m/0009.sql")
    assert [owner for _, owner in sections] == [True, False, True]
    assert "CREATE FUNCTION dbal.f()" in sections[0][0]
    assert "SET LOCAL ROLE x;" in sections[0][0]  # the body is kept whole
    assert sections[1][0].strip() == "GRANT USAGE ON SCHEMA dbal TO pydbal_app;"
    assert "CREATE TABLE dbal.t" in sections[2][0]
    assert all("RESET ROLE" not in sql for sql, _ in sections)


def test_a_file_without_switches_is_one_superuser_section() -> None:
    assert owner_sections("CREATE TABLE dbal.t ();\n", ROLES, "m/0009.sql") == [
        ("CREATE TABLE dbal.t ();\n", False)
    ]


def test_a_switch_to_another_role_is_refused() -> None:
    with pytest.raises(MigrationError, match=r"m/0009\.sql: switches to role 'pydbal_app'"):
        owner_sections("SET LOCAL ROLE pydbal_app;\nSELECT 1;\n", ROLES, "m/0009.sql")
