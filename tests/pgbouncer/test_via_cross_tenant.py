"""tests/api/test_cross_tenant.py, every test, through PgBouncer in transaction mode."""

from api.test_cross_tenant import *  # noqa: F403
