"""Throwaway PgBouncers for the tests: a real pgbouncer on a free loopback port, never the machine's.

Each one lives in its own temporary folder: ``pgbouncer.ini``, the ``databases.ini`` it
``%include``-s (the file pgtide's redirect rewrites), an auth file, its log, pid file and Unix
socket. PgBouncer refuses to run as root, so as root it runs as the ``postgres`` account, like
the clusters of pgharness.py, and the folder is handed to that account.

Passwords are made per run and the auth file holds SCRAM secrets derived from them, so not
even PgBouncer's own files hold a password. Clients log in as ``postgres`` (the clusters trust
loopback for it, so PgBouncer needs no server password); the console user is ``ADMIN_USER``.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import hmac
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from pgharness import PgCluster, free_port

from pgtide.core.infra.endpoint import Endpoint

__all__ = ["ADMIN_USER", "CLIENT_USER", "PgBouncer", "PgBouncerMissing", "find_pgbouncer", "scram_secret"]

ADMIN_USER = "pgtide_bouncer_admin"
CLIENT_USER = "postgres"

_live: list[PgBouncer] = []
atexit.register(lambda: [bouncer.destroy() for bouncer in list(_live)])


class PgBouncerMissing(RuntimeError):
    pass


def find_pgbouncer() -> Path:
    """The machine's pgbouncer (Debian installs it in /usr/sbin, off a normal user's PATH)."""
    found = os.environ.get("PGTIDE_TEST_PGBOUNCER") or shutil.which("pgbouncer")
    for candidate in (found, "/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer"):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise PgBouncerMissing("pgbouncer is not installed (Debian/Ubuntu: apt-get install pgbouncer)")


def scram_secret(password: str, *, iterations: int = 4096) -> str:
    """A SCRAM-SHA-256 verifier as PostgreSQL stores it (RFC 5802/7677): PgBouncer accepts it
    in an auth file, and it does not reveal the password."""
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _quote_auth(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


class PgBouncer:
    """One throwaway PgBouncer. ``databases`` maps a PgBouncer database name to (cluster, dbname);
    ``fallback`` (a cluster) adds PgBouncer's ``*`` entry, for names an ini key cannot hold."""

    def __init__(self, databases: Mapping[str, tuple[PgCluster, str]] | None = None, *,
                 fallback: PgCluster | None = None, pool_mode: str = "transaction",
                 settings: Mapping[str, str] | None = None) -> None:
        self.binary = find_pgbouncer()
        self.pool_mode = pool_mode
        self.settings = dict(settings or {})
        self.databases: dict[str, tuple[PgCluster, str]] = dict(databases or {})
        self.fallback = fallback
        self.admin_password = secrets.token_urlsafe(18)
        self.client_password = secrets.token_urlsafe(18)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._run_as: dict[str, Any] = (
            {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}
        )
        self.root = Path(tempfile.mkdtemp(prefix="pgtide-pgbouncer-"))
        # Not a private 0700 chain: the postgres account must reach it, as with the clusters.
        os.chmod(self.root, 0o755)
        self._own(self.root)
        _live.append(self)

    # -- files ------------------------------------------------------------------------------------

    @property
    def ini(self) -> Path:
        return self.root / "pgbouncer.ini"

    @property
    def databases_file(self) -> Path:
        """The ``%include``-d ``[databases]`` file: what pgtide's redirect rewrites."""
        return self.root / "databases.ini"

    @property
    def logfile(self) -> Path:
        return self.root / "pgbouncer.log"

    def _own(self, path: Path) -> None:
        if self._run_as:
            shutil.chown(path, "postgres", "postgres")

    def _write(self, path: Path, text: str, mode: int = 0o640) -> None:
        path.write_text(text)
        os.chmod(path, mode)
        self._own(path)

    def databases_text(self) -> str:
        lines = ["[databases]"]
        for name, (cluster, dbname) in self.databases.items():
            lines.append(f"{name} = host=127.0.0.1 port={cluster.port} dbname={dbname}")
        if self.fallback is not None:
            lines.append(f"* = host=127.0.0.1 port={self.fallback.port}")
        return "\n".join(lines) + "\n"

    def _write_config(self) -> None:
        self._write(self.databases_file, self.databases_text())
        self._write(self.root / "users.txt", "".join(
            f"{_quote_auth(user)} {_quote_auth(scram_secret(password))}\n"
            for user, password in ((ADMIN_USER, self.admin_password), (CLIENT_USER, self.client_password))
        ), mode=0o600)
        settings = {
            "listen_addr": "127.0.0.1",
            "listen_port": str(self.port),
            "unix_socket_dir": str(self.root),
            "auth_type": "scram-sha-256",
            "auth_file": str(self.root / "users.txt"),
            "admin_users": ADMIN_USER,
            "pool_mode": self.pool_mode,
            "logfile": str(self.logfile),
            "pidfile": str(self.root / "pgbouncer.pid"),
            **self.settings,
        }
        body = "".join(f"{key} = {value}\n" for key, value in settings.items())
        self._write(self.ini, f"[pgbouncer]\n{body}\n%include {self.databases_file}\n")

    # -- lifetime ---------------------------------------------------------------------------------

    def start(self) -> None:
        last = ""
        for _attempt in range(3):  # a port picked as free can be taken before pgbouncer binds it
            self.port = free_port()
            self._write_config()
            self.process = subprocess.Popen(
                [str(self.binary), str(self.ini)], cwd=self.root, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, **self._run_as,
            )
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    with psycopg.connect(self.admin_url(), autocommit=True, connect_timeout=2):
                        return
                except psycopg.OperationalError:
                    time.sleep(0.05)
            last = self.log_tail()
            self.stop()
        raise RuntimeError(f"PgBouncer did not start: {last[-1500:]}")

    def log_tail(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)  # PgBouncer: immediate shutdown
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        if self in _live:
            _live.remove(self)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    # -- configuration at run time ----------------------------------------------------------------

    def write_databases_file(self, text: str) -> None:
        """Replace the databases file as its owner would (PgBouncer reads it at its next RELOAD)."""
        self._write(self.databases_file, text)

    # -- connecting -------------------------------------------------------------------------------

    def admin_url(self, *, password: str | None = None) -> str:
        secret = self.admin_password if password is None else password
        return f"postgresql://{ADMIN_USER}:{quote(secret, safe='')}@127.0.0.1:{self.port}/pgbouncer"

    def admin_endpoint(self, *, password: str | None = None) -> Endpoint:
        return Endpoint.parse(self.admin_url(password=password))

    def client_url(self, dbname: str) -> str:
        return (f"postgresql://{CLIENT_USER}:{quote(self.client_password, safe='')}@127.0.0.1:{self.port}/"
                f"{quote(dbname, safe='')}")

    def connect(self, dbname: str, **kwargs: Any) -> psycopg.Connection[Any]:
        """A client session through PgBouncer (autocommit unless told otherwise)."""
        kwargs.setdefault("autocommit", True)
        kwargs.setdefault("connect_timeout", 10)
        return psycopg.connect(host="127.0.0.1", port=self.port, user=CLIENT_USER, password=self.client_password,
                               dbname=dbname, **kwargs)
