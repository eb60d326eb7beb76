"""tests/api/test_crud.py, every test, through PgBouncer in transaction mode."""

from api.test_crud import *  # noqa: F403
