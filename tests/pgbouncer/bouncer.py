"""A real PgBouncer (Debian's ``pgbouncer``) in transaction mode, started by the test harness.

It runs in a temporary directory on a free port, trusts the logins it is told about, and sends
every database name to the test server (``* = host=… port=…``), so the per-test databases reach
it under their own names.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

BINARY = shutil.which("pgbouncer") or (
    "/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else None
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_address(dsn: str) -> tuple[str, int]:
    """(host or socket directory, port) of a URL DSN."""
    split = urlsplit(dsn)
    query = dict(parse_qsl(split.query))
    host = query.get("host") or unquote(split.hostname or "") or "127.0.0.1"
    port = int(query.get("port") or split.port or 5432)
    return host, port


class PgBouncer:
    def __init__(self, server_dsn: str, logins: list[str], *, pool_size: int = 4) -> None:
        self.server_dsn = server_dsn
        self.logins = logins
        self.pool_size = pool_size
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pydbal-pgbouncer-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert BINARY is not None
        host, port = server_address(self.server_dsn)
        lines = [
            "[databases]",
            f"* = host={host} port={port}",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            "auth_type = trust",
            f"auth_file = {self.dir / 'users.txt'}",
            "pool_mode = transaction",
            f"default_pool_size = {self.pool_size}",
            "max_client_conn = 500",
            "server_login_retry = 1",
            "server_connect_timeout = 5",
            "query_wait_timeout = 20",  # a broken set-up fails a test, never hangs it
            "ignore_startup_parameters = extra_float_digits",
        ]
        if os.geteuid() == 0:  # pgbouncer refuses to run as root: it switches to this user
            lines.append(f"user = {_unprivileged_user(host)}")
            self.dir.chmod(0o755)
        (self.dir / "users.txt").write_text("".join(f'"{u}" ""\n' for u in self.logins))
        (self.dir / "pgbouncer.ini").write_text("\n".join(lines) + "\n")
        for f in ("users.txt", "pgbouncer.ini"):
            (self.dir / f).chmod(0o644)
        self.log = open(self.dir / "pgbouncer.log", "wb")  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(
            [BINARY, str(self.dir / "pgbouncer.ini")], stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited: {self.log_text()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"pgbouncer did not start: {self.log_text()}")

    def log_text(self) -> str:
        return (self.dir / "pgbouncer.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def dsn(self, dsn: str) -> str:
        """``dsn`` (a URL DSN of the test server) with the same login and database, through
        this PgBouncer."""
        split = urlsplit(dsn)
        user = unquote(split.username or "postgres")
        query = dict(parse_qsl(split.query))
        database = query.get("dbname") or unquote(split.path.lstrip("/")) or "postgres"
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"


def _unprivileged_user(host: str) -> str:
    """An OS user pgbouncer may switch to: the owner of the server's socket directory when it
    listens on one (the embedded server runs as its own user), else postgres or nobody."""
    if host.startswith("/"):
        with contextlib.suppress(OSError, KeyError):
            owner = pwd.getpwuid(os.stat(host).st_uid).pw_name
            if owner != "root":
                return owner
    for name in ("postgres", "embedded_postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    return "nobody"
