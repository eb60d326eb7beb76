"""tests/cache/test_freshness.py (cache invalidation), every test, through PgBouncer."""

from cache.test_freshness import *  # noqa: F403
