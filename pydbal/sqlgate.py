"""The read-only gate of ``pydbal sql``: parse, refuse what is not one read-only query, run it.

The database is the real guard (analyst policies, no write privilege, a READ ONLY transaction);
this module gives early, readable refusals. :func:`check` parses with sqlglot (which is lenient:
unknown statements become ``exp.Command``, data-modifying CTEs, ``SELECT … INTO`` and locking
clauses parse as ``Select``) and refuses, naming the reason:

- anything but a single query (SELECT, set operations), every ``exp.Command`` (EXPLAIN ANALYZE,
  CALL, DO, SET ROLE, SHOW, LOCK, VACUUM, …), DML anywhere (also inside a CTE), DDL, SET/RESET,
  COPY, transaction control, ``SELECT … INTO``, locking clauses (FOR UPDATE/SHARE);
- calls of functions outside an allow list: functions sqlglot knows (aggregates, window, date and
  time, string, math, JSON accessors, …) are allowed; any other name (sqlglot's ``Anonymous``)
  must be in :data:`ALLOWED_FUNCTIONS`; schema-qualified calls only in ``pg_catalog``.

The query that runs is the checked tree regenerated as PostgreSQL (``normalize_functions=False``),
so what runs is what was checked; ``read=`` transpiles from another dialect.

:func:`run_query` refuses logins that could see more than an analyst (superuser, BYPASSRLS, able
to become such a role, member of the owner or application role), then runs the query in a READ
ONLY transaction with a statement timeout.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from pydbal.schema import Roles, resolve_roles

__all__ = [
    "ALLOWED_FUNCTIONS",
    "QueryResult",
    "RefusedLogin",
    "RefusedQuery",
    "check",
    "check_login",
    "run_query",
]


class RefusedQuery(Exception):
    """The statement is not a single read-only query; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class QueryTooComplex(RefusedQuery):
    """The query is too long or too deeply nested to be checked: bad input, not a policy."""


class RefusedLogin(Exception):
    """The DSN logs in as a role that sees more than an analyst; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


#: Names (lowercase) of functions sqlglot does not model that analysts may call. Pure functions
#: only: no settings, sequences, locks, files, sleeps, remote calls or catalog writes.
_ALLOWED_NAMES = """
    count sum avg min max array_agg string_agg json_agg jsonb_agg json_object_agg
    jsonb_object_agg bool_and bool_or every bit_and bit_or stddev stddev_pop stddev_samp
    variance var_pop var_samp corr covar_pop covar_samp regr_slope regr_intercept regr_r2
    regr_count percentile_cont percentile_disc mode row_number rank dense_rank percent_rank
    cume_dist ntile lag lead first_value last_value nth_value
    coalesce nullif greatest least num_nulls num_nonnulls
    now clock_timestamp statement_timestamp transaction_timestamp age date_part date_trunc
    date_bin extract make_date make_time make_timestamp make_timestamptz make_interval
    to_timestamp to_date to_char to_number justify_days justify_hours justify_interval isfinite
    timezone
    lower upper initcap length char_length character_length octet_length bit_length substr
    substring position strpos replace translate left right lpad rpad trim btrim ltrim rtrim
    concat concat_ws format split_part repeat reverse starts_with regexp_replace regexp_match
    regexp_matches regexp_split_to_array regexp_split_to_table string_to_array array_to_string
    md5 sha256 encode decode chr ascii quote_literal quote_ident
    abs ceil ceiling floor round trunc sign sqrt cbrt exp ln log log10 power pow mod div pi
    degrees radians random width_bucket generate_series
    unnest cardinality array_length array_lower array_upper array_position array_positions
    array_remove array_append array_prepend array_cat
    to_json to_jsonb json_build_object jsonb_build_object json_build_array jsonb_build_array
    json_array_length jsonb_array_length json_typeof jsonb_typeof json_extract_path
    jsonb_extract_path json_extract_path_text jsonb_extract_path_text json_each jsonb_each
    json_each_text jsonb_each_text json_array_elements jsonb_array_elements
    json_array_elements_text jsonb_array_elements_text json_object_keys jsonb_object_keys
    jsonb_path_query jsonb_path_query_array jsonb_path_query_first jsonb_path_exists
    jsonb_strip_nulls jsonb_pretty jsonb_set jsonb_insert
    to_tsvector to_tsquery plainto_tsquery phraseto_tsquery websearch_to_tsquery ts_rank
    ts_rank_cd ts_headline
    """
ALLOWED_FUNCTIONS: frozenset[str] = frozenset(_ALLOWED_NAMES.split())

# Named reasons for functions people reach for that are deliberately not allowed.
_KNOWN_REFUSALS: dict[str, str] = {
    "set_config": "set_config() changes session settings",
    "current_setting": "current_setting() reads session settings",
    "nextval": "nextval() advances a sequence (a write)",
    "setval": "setval() changes a sequence (a write)",
    "pg_sleep": "pg_sleep() only holds a connection",
    "dblink": "dblink() reaches other databases",
    "lo_import": "lo_import() reads server files",
    "pg_read_file": "pg_read_file() reads server files",
    "pg_advisory_lock": "pg_advisory_lock() takes a lock",
    "pg_terminate_backend": "pg_terminate_backend() ends other sessions",
}

_QUERY_TYPES = (exp.Select, exp.Union, exp.Intersect, exp.Except)
_DML = (exp.Insert, exp.Update, exp.Delete, exp.Merge)
_DDL = (exp.Create, exp.Drop, exp.Alter, exp.TruncateTable, exp.Grant, exp.Comment)
_DDL_WORDS = frozenset(
    {
        "CREATE",
        "ALTER",
        "DROP",
        "TRUNCATE",
        "GRANT",
        "REVOKE",
        "COMMENT",
        "REINDEX",
        "CLUSTER",
        "REFRESH",
        "SECURITY",
        "IMPORT",
    }
)
_TRANSACTION = (exp.Transaction, exp.Commit, exp.Rollback)


@contextmanager
def _quiet_sqlglot() -> Iterator[None]:
    """sqlglot's logger at ERROR while parsing, restored afterwards."""
    # sqlglot logs a warning when it falls back to exp.Command; the refusal says it better.
    logger = logging.getLogger("sqlglot")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _kind(node: exp.Expr) -> str:
    """The statement's keyword as a refusal names it (``INSERT``, ``TRUNCATE``, ``VACUUM``)."""
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    if isinstance(node, exp.TruncateTable):
        return "TRUNCATE"
    return node.key.upper()


def _statement_reason(node: exp.Expr) -> str | None:
    """Why a statement-level node is refused, or None when it is not one of the refused kinds."""
    if isinstance(node, exp.Command):
        word = str(node.this).upper()
        if word in ("SET", "RESET"):
            return f"{word} changes session settings (including SET ROLE): not allowed"
        if word in _DDL_WORDS:
            return f"{word} is DDL (changes the schema or privileges): not allowed"
        if word == "EXPLAIN":
            return "EXPLAIN is not allowed (EXPLAIN ANALYZE runs its statement)"
        return f"{word} is a command, not a read-only query"
    if isinstance(node, exp.Set):
        return "SET changes session settings: not allowed"
    if isinstance(node, exp.Copy):
        return "COPY reads or writes files and tables: not allowed"
    if isinstance(node, _DML):
        return f"{_kind(node)} modifies data: only read-only queries are allowed"
    if isinstance(node, _DDL):
        return f"{_kind(node)} is DDL (changes the schema or privileges): not allowed"
    if isinstance(node, _TRANSACTION):
        return (
            "transaction control is not allowed: each query runs in its own read-only transaction"
        )
    return None


def _qualifier(func: exp.Expr) -> str | None:
    """The schema a function call is qualified with (lower case), or None when unqualified."""
    parent = func.parent
    if isinstance(parent, exp.Dot) and parent.expression is func:
        return parent.this.name.lower() if parent.this is not None else ""
    if isinstance(parent, exp.Table) and parent.this is func and parent.args.get("db"):
        return str(parent.db).lower()
    return None


def _function_reason(func: exp.Func) -> str | None:
    """Why calling ``func`` is refused: qualified outside pg_catalog, a known refusal, or an
    unknown name not in :data:`ALLOWED_FUNCTIONS`; None when the call is allowed."""
    if isinstance(func, exp.Anonymous):
        name = str(func.name).lower()
        known = False
    else:
        name = func.sql_name().lower()
        known = True
    schema = _qualifier(func)
    if schema is not None and schema != "pg_catalog":
        return (
            f"{schema}.{name}() is not allowed: only built-in functions may be called "
            "(pydbal's own functions are not for analysts)"
        )
    if name in _KNOWN_REFUSALS:
        return f"{_KNOWN_REFUSALS[name]}: not allowed"
    if known or name in ALLOWED_FUNCTIONS:
        return None
    return f"function {name}() is not on the allow list of read-only functions"


def _relation_reason(table: exp.Table) -> str | None:
    """Why reading this relation is refused: the statistics views, row estimates and lock
    tables reveal what happens in other tenants (counts of rows fetched, inserted, estimated),
    and pydbal's base tables are not the analysts' (read dbal_analytics.*)."""
    name = table.name.lower()
    schema = (table.db or "").lower()
    if schema in ("", "pg_catalog") and (
        name.startswith(("pg_stat_", "pg_statio_"))
        or name in ("pg_stats", "pg_stats_ext", "pg_statistic", "pg_locks")
    ):
        return (
            f"{name} is not allowed: statistics and lock views reveal other tenants' activity "
            "and row counts"
        )
    if schema in ("", "pg_catalog") and name == "pg_class" and _reads_estimates(table):
        return "pg_class row estimates (reltuples, relpages) reveal other tenants' row counts"
    if schema == "dbal" and name != "analyst_grants":
        return f"dbal.{name} is not for analysts: read the dbal_analytics views"
    return None


_ESTIMATE_COLUMNS = frozenset({"reltuples", "relpages", "relallvisible", "relallfrozen"})


def _reads_estimates(table: exp.Table) -> bool:
    """Whether the query reading ``table`` (pg_class) may read its row estimates: ``*``, an
    estimate column, or no enclosing SELECT to tell."""
    query = table.find_ancestor(exp.Select)
    if query is None:
        return True
    if any(isinstance(e, exp.Star) for e in query.expressions):
        return True
    return any(c.name.lower() in _ESTIMATE_COLUMNS for c in query.find_all(exp.Column))


def _tree_reason(tree: exp.Expr) -> str | None:
    """The first reason anywhere in the tree to refuse it (a relation, a statement, a locking
    clause, ``SELECT … INTO``, a function call), or None."""
    for node in tree.walk():
        if isinstance(node, exp.Table) and node.name:
            reason = _relation_reason(node)
            if reason is not None:
                return reason
        reason = _statement_reason(node)
        if reason is not None:
            if node is not tree and isinstance(node, _DML):
                return f"{_kind(node)} inside the query (a data-modifying CTE?): not allowed"
            return reason
        if isinstance(node, exp.Lock):
            return "locking clauses (FOR UPDATE / FOR SHARE) are not allowed in read-only queries"
        if isinstance(node, exp.Into) or (isinstance(node, exp.Select) and node.args.get("into")):
            return "SELECT … INTO creates a table: not allowed"
        if isinstance(node, exp.Func):
            reason = _function_reason(node)
            if reason is not None:
                return reason
    return None


MAX_QUERY_CHARS = 1_000_000


def check(sql: str, *, read: str | None = None) -> str:
    """The PostgreSQL text of ``sql`` if it is one read-only query, else :class:`RefusedQuery`.

    ``read`` is the dialect ``sql`` is written in (default postgres); the result is PostgreSQL.
    A query longer than :data:`MAX_QUERY_CHARS` or nested too deeply for the parser is
    :class:`QueryTooComplex` (a RefusedQuery).
    """
    if len(sql) > MAX_QUERY_CHARS:
        raise QueryTooComplex(f"the query is longer than {MAX_QUERY_CHARS:,} characters")
    try:
        return _check(sql, read)
    except RecursionError:
        raise QueryTooComplex("the query is nested too deeply to check") from None


def _check(sql: str, read: str | None) -> str:
    """:func:`check` without the length and depth guards: parse, refuse, regenerate."""
    dialect = read or "postgres"
    try:
        with _quiet_sqlglot():
            statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except (ParseError, TokenError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RefusedQuery(f"cannot parse the query ({dialect}): {first}") from None
    except ValueError as exc:  # unknown dialect
        raise RefusedQuery(str(exc)) from None
    if not statements:
        raise RefusedQuery("no statement: give one SELECT query")
    if len(statements) > 1:
        raise RefusedQuery(f"{len(statements)} statements: give exactly one SELECT query")
    tree = statements[0]
    while isinstance(tree, exp.Subquery) and not tree.args.get("alias"):
        tree = tree.this
    reason = _statement_reason(tree) or _tree_reason(tree)
    if reason is None and not isinstance(tree, _QUERY_TYPES):
        first = text_words[0].upper() if (text_words := sql.split()) else _kind(tree)
        reason = f"only a single SELECT query is allowed, not {first}"
    if reason is not None:
        raise RefusedQuery(reason)
    return tree.sql(dialect="postgres", normalize_functions=False)


# --------------------------------------------------------------------------------------------
# Running


@dataclass(frozen=True)
class QueryResult:
    """Column names and rows (Python values; json/jsonb decoded) of a query."""

    columns: list[str]
    rows: list[tuple[Any, ...]]


_LOGIN_CHECK = """
SELECT session_user::text AS login, r.rolsuper, r.rolbypassrls,
       EXISTS (SELECT FROM pg_catalog.pg_roles b
                WHERE (b.rolsuper OR b.rolbypassrls) AND b.rolname <> r.rolname
                  AND pg_catalog.pg_has_role(session_user, b.oid, 'MEMBER')) AS can_escalate,
       EXISTS (SELECT FROM pg_catalog.pg_roles o WHERE o.rolname = $1
                  AND pg_catalog.pg_has_role(session_user, o.oid, 'MEMBER')) AS owner_member,
       EXISTS (SELECT FROM pg_catalog.pg_roles a WHERE a.rolname = $2
                  AND pg_catalog.pg_has_role(session_user, a.oid, 'MEMBER')) AS app_member
  FROM pg_catalog.pg_roles r WHERE r.rolname = session_user
"""


async def check_login(conn: Any, roles: Roles | None = None) -> str:
    """The connection's login if it may run analyst queries, else :class:`RefusedLogin`."""
    roles = roles or resolve_roles()
    row = await conn.fetchrow(_LOGIN_CHECK, roles.owner, roles.app)
    if row is None:
        raise RefusedLogin("cannot find the login's role in pg_roles")
    login = row["login"]
    why = None
    if row["rolsuper"]:
        why = "is a superuser"
    elif row["rolbypassrls"]:
        why = "has BYPASSRLS"
    elif row["can_escalate"]:
        why = "is a member of a superuser or BYPASSRLS role"
    elif row["owner_member"]:
        why = f"is (a member of) the owner role {roles.owner}"
    elif row["app_member"]:
        why = f"is a member of the application role {roles.app}"
    if why is not None:
        raise RefusedLogin(
            f"refusing to run: the DSN logs in as {login!r}, which {why} and is not limited by "
            "the analyst policies. Connect with your own analyst login (--dsn or $PYDBAL_DSN)."
        )
    return str(login)


async def run_query(
    dsn: str, sql: str, *, timeout_s: float = 30.0, roles: Roles | None = None
) -> QueryResult:
    """Run an already-checked query as an analyst login: READ ONLY, with a statement timeout."""
    conn = await asyncpg.connect(dsn)
    try:
        await check_login(conn, roles)
        for name in ("json", "jsonb"):
            await conn.set_type_codec(
                name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )
        async with conn.transaction(readonly=True):
            await conn.execute(
                "SELECT pg_catalog.set_config('statement_timeout', $1, true)",
                f"{max(1, int(timeout_s * 1000))}ms",
            )
            statement = await conn.prepare(sql)
            columns = [a.name for a in statement.get_attributes()]
            records = await statement.fetch()
        return QueryResult(columns=columns, rows=[tuple(r) for r in records])
    finally:
        await conn.close()
