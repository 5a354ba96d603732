"""Throwaway MariaDB servers for the tests: the machine's ``mariadbd`` on a free loopback port.

Each server lives in its own temporary folder (data dir, Unix socket, pid file, error log)
and is initialised by ``mariadb-install-db``; the machine's own MariaDB (port 3306, its
socket and data dir) is never read or touched: every option is given on the command line
with ``--no-defaults``, so no ``my.cnf`` applies. As root the server runs with ``--user=root``
(its data dir is root's too), which mariadbd allows when told explicitly.

Authentication is real (no ``--skip-grant-tables``): root gets a random password and is only
used over the socket by the fixtures; the adapter under test logs in over TCP as ``pgtide``
with its own random password and the privileges change capture needs (SELECT, RELOAD,
BINLOG MONITOR — MariaDB's name for REPLICATION CLIENT — and REPLICATION SLAVE).

The binlog is on by default in ROW format with FULL row images; ``mariadb_factory`` starts
extra servers with other settings (``binlog_format="STATEMENT"``, ``log_bin=False``).
InnoDB is made small and lax (32 MB buffer pool, 8 MB redo log, no doublewrite, no flush at
commit): these servers hold test data only, and start in about a second.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from child_guard import die_with_parent

from pgtide.core.infra.localcluster import free_port

__all__ = [
    "APP_USER",
    "MariaDBMissing",
    "MariaDBServer",
    "find_mariadbd",
    "mariadb_db",
    "mariadb_factory",
    "mariadb_server",
    "quote_ident",
]

APP_USER = "pgtide"
#: What the adapter's user may do: read, and stream the binlog (MariaDB >= 10.5 names
#: REPLICATION CLIENT "BINLOG MONITOR"; the old name is an alias there).
APP_GRANTS = "SELECT, RELOAD, BINLOG MONITOR, REPLICATION SLAVE"

_live: list[MariaDBServer] = []
atexit.register(lambda: [server.destroy() for server in list(_live)])


class MariaDBMissing(RuntimeError):
    pass


def find_mariadbd() -> tuple[Path, Path]:
    """The machine's server and its initialiser (Debian: /usr/sbin, off a normal user's PATH)."""
    server = os.environ.get("PGTIDE_TEST_MARIADBD") or shutil.which("mariadbd") or "/usr/sbin/mariadbd"
    installer = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
    if not os.access(server, os.X_OK) or not os.access(installer, os.X_OK):
        raise MariaDBMissing("mariadbd / mariadb-install-db are not installed "
                             "(Debian: apt-get install mariadb-server-core mariadb-client-core)")
    return Path(server), Path(installer)


def quote_ident(name: str) -> str:
    """A MySQL identifier, quoted (backticks doubled) — for test SQL only."""
    return "`" + name.replace("`", "``") + "`"


class MariaDBServer:
    """One throwaway MariaDB. ``settings`` are extra server options (``name: value``, as in
    my.cnf, underscores or dashes); ``log_bin=False`` runs it without a binlog."""

    def __init__(self, *, log_bin: bool = True, binlog_format: str = "ROW", binlog_row_image: str = "FULL",
                 settings: dict[str, str] | None = None) -> None:
        self.server_bin, self.install_bin = find_mariadbd()
        self.log_bin = log_bin
        self.binlog_format = binlog_format
        self.binlog_row_image = binlog_row_image
        self.settings = dict(settings or {})
        self.host = "127.0.0.1"
        self.port = 0
        self.password = secrets.token_urlsafe(18)
        self.root_password = secrets.token_urlsafe(18)
        self.process: subprocess.Popen[bytes] | None = None
        self.root = Path(tempfile.mkdtemp(prefix="pgtide-mariadb-"))
        self.datadir = self.root / "data"
        self.socket = str(self.root / "mysqld.sock")
        self.errlog = self.root / "error.log"
        self._initialised = False
        _live.append(self)

    # -- options ----------------------------------------------------------------------------------

    def _common_options(self) -> list[str]:
        options = {
            "datadir": str(self.datadir),
            "innodb_buffer_pool_size": "32M",
            "innodb_log_file_size": "8M",
            "innodb_data_file_path": "ibdata1:10M:autoextend",
        }
        for key in ("innodb_buffer_pool_size", "innodb_log_file_size"):
            if key in self.settings or key.replace("_", "-") in self.settings:
                options.pop(key)
        return ["--no-defaults", *(f"--{k}={v}" for k, v in options.items())]

    def _server_options(self) -> list[str]:
        options: dict[str, str] = {
            "port": str(self.port),
            "bind_address": self.host,
            "socket": self.socket,
            "pid_file": str(self.root / "mysqld.pid"),
            "log_error": str(self.errlog),
            "tmpdir": str(self.root),
            "performance_schema": "OFF",
            "skip_name_resolve": "1",
            "innodb_doublewrite": "0",
            "innodb_flush_log_at_trx_commit": "2",
            "sync_binlog": "0",
            "character_set_server": "utf8mb4",
            "collation_server": "utf8mb4_unicode_ci",
            "max_connections": "100",
            "loose_feedback": "OFF",
            "server_id": "1",
        }
        if self.log_bin:
            options["log_bin"] = str(self.datadir / "binlog")
            options["binlog_format"] = self.binlog_format
            options["binlog_row_image"] = self.binlog_row_image
        else:
            options["skip_log_bin"] = "1"
        options.update({k.replace("-", "_"): v for k, v in self.settings.items()})
        argv = self._common_options()
        if os.geteuid() == 0:
            argv.append("--user=root")
        argv += [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
        return argv

    # -- lifetime ---------------------------------------------------------------------------------

    def _install(self) -> None:
        argv = [str(self.install_bin), *self._common_options(), "--auth-root-authentication-method=normal",
                "--skip-test-db", "--skip-name-resolve"]
        if os.geteuid() == 0:
            argv.insert(2, "--user=root")
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError("mariadb-install-db failed: "
                               + (done.stdout + done.stderr).decode(errors="replace")[-2000:])
        self._initialised = True

    def start(self) -> None:
        if not self._initialised:
            self._install()
        last = ""
        for _attempt in range(3):  # a port picked as free can be taken before mariadbd binds it
            self.port = free_port()
            self.process = subprocess.Popen(
                [str(self.server_bin), *self._server_options()], cwd=self.root, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=die_with_parent,
            )
            if self._wait_ready():
                self._set_up_accounts()
                return
            last = self.log_tail()
            self.stop()
        raise RuntimeError(f"MariaDB did not start: {last[-2000:]}")

    def _wait_ready(self) -> bool:
        import pymysql

        deadline = time.monotonic() + 30
        assert self.process is not None
        while time.monotonic() < deadline and self.process.poll() is None:
            if not self._socket_accepts():
                time.sleep(0.05)
                continue
            for password in (self.root_password, ""):
                try:
                    pymysql.connect(unix_socket=self.socket, user="root", password=password,
                                    connect_timeout=2).close()
                    return True
                except pymysql.err.OperationalError:
                    pass
            time.sleep(0.05)
        return False

    def _socket_accepts(self) -> bool:
        # PyMySQL leaks its socket when connecting to a Unix socket fails: probe it ourselves first.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(2)
            try:
                probe.connect(self.socket)
            except OSError:
                return False
        return True

    def _set_up_accounts(self) -> None:
        import pymysql

        try:
            conn = pymysql.connect(unix_socket=self.socket, user="root", password="", autocommit=True)
        except pymysql.err.OperationalError:
            return  # a restart: the accounts exist already
        with conn, conn.cursor() as cur:
            cur.execute("ALTER USER 'root'@'localhost' IDENTIFIED BY %s", (self.root_password,))
            # Only the socket's root stays: nothing logs in as root over TCP.
            cur.execute("SELECT user, host FROM mysql.user WHERE user = 'root' AND host <> 'localhost'")
            for user, host in cur.fetchall():
                cur.execute("DROP USER %s@%s", (user, host))
            cur.execute(f"CREATE USER '{APP_USER}'@'%%' IDENTIFIED BY %s", (self.password,))
            cur.execute(f"GRANT {APP_GRANTS} ON *.* TO '{APP_USER}'@'%'")

    def log_tail(self) -> str:
        try:
            return self.errlog.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            import pymysql

            conn = pymysql.connect(unix_socket=self.socket, user="root", password=self.root_password,
                                   connect_timeout=2, read_timeout=5)
            with conn, conn.cursor() as cur:
                cur.execute("SHUTDOWN")
        except Exception:
            process.send_signal(signal.SIGTERM)  # mariadbd: a normal shutdown too
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        if self in _live:
            _live.remove(self)

    # -- use --------------------------------------------------------------------------------------

    def url(self, db: str, user: str = APP_USER, with_password: bool = False) -> str:
        secret = ":" + quote(self.password, safe="") if with_password else ""
        return f"mariadb://{quote(user, safe='')}{secret}@{self.host}:{self.port}/{quote(db, safe='')}"

    def connect(self, db: str | None = None, **kwargs: Any) -> Any:
        """A PyMySQL connection as root over the socket (autocommit, utf8mb4)."""
        import pymysql

        options: dict[str, Any] = {"autocommit": True, "charset": "utf8mb4", "connect_timeout": 5}
        options.update(kwargs)
        return pymysql.connect(unix_socket=self.socket, user="root", password=self.root_password,
                               database=db, **options)

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None,
                db: str | None = None) -> list[tuple[Any, ...]]:
        """Run one statement as root; its rows (or [] when it returns none)."""
        conn = self.connect(db)
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []

    def create_database(self, name: str | None = None) -> str:
        name = name or "t_" + secrets.token_hex(4)
        self.execute(f"CREATE DATABASE {quote_ident(name)} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        return name

    def drop_database(self, name: str) -> None:
        self.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)}")


def _start(**kwargs: Any) -> MariaDBServer:
    try:
        server = MariaDBServer(**kwargs)
    except MariaDBMissing as missing:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(missing))
    try:
        server.start()
    except BaseException:
        server.destroy()
        raise
    return server


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDBServer]:
    """One MariaDB for the session: binlog on, ROW format, FULL row images."""
    server = _start()
    yield server
    server.destroy()


@pytest.fixture
def mariadb_db(mariadb_server: MariaDBServer) -> Iterator[str]:
    """A fresh database on the session's server, dropped afterwards."""
    name = mariadb_server.create_database()
    yield name
    mariadb_server.drop_database(name)


@pytest.fixture
def mariadb_factory() -> Iterator[Callable[..., MariaDBServer]]:
    """Start extra servers with other settings; each is stopped and removed after the test."""
    started: list[MariaDBServer] = []

    def make(**kwargs: Any) -> MariaDBServer:
        server = _start(**kwargs)
        started.append(server)
        return server

    yield make
    for server in started:
        server.destroy()
