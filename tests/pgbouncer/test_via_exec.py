"""tests/api/test_exec.py, every test, through PgBouncer in transaction mode."""

from api.test_exec import *  # noqa: F403
