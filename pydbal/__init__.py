"""pydbal: a PostgreSQL data-access layer; the schema lives in ``sql/`` (see pydbal.migrate)."""

from pydbal.errors import DBALError, ErrorCode

__version__ = "0.1.0.dev0"

__all__ = ["DBALError", "ErrorCode", "__version__"]
