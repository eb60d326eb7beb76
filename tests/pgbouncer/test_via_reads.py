"""tests/api/test_reads.py, every test, through PgBouncer in transaction mode."""

from api.test_reads import *  # noqa: F403
