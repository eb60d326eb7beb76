"""tests/api/test_transfer.py, every test, through PgBouncer in transaction mode."""

from api.test_transfer import *  # noqa: F403
