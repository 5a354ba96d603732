"""Throwaway MongoDB-compatible servers for the tests: SecantusDB (PyPI ``secantusdb``) on a
free loopback port.

SecantusDB is a beta, GPL-2.0-only server in Python over WiredTiger that speaks MongoDB's
wire protocol (it reports itself as 8.2.11). It is a test-only dev dependency: it runs as a
separate process (``secantusd-py``), never imported by pgtide. Each server gets its own
temporary folder (WiredTiger home, an empty config file, its log); ``--config`` is always
given so no ``secantusd.toml`` from the working directory, ``~/.secantus`` or ``/etc`` applies.

By default the server advertises itself as the primary of a one-node replica set named
``secantus``, which is what change streams (and ``readConcern: snapshot``) need; with
``standalone=True`` it answers as a standalone mongod does and refuses change streams with
code 40573, as mongod does. Authentication (SCRAM-SHA-256/1) is off unless ``auth=True``:
SecantusDB has no localhost exception, so the user is created with auth off and the server
is restarted with ``--auth`` on the same storage.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from child_guard import die_with_parent

from pgtide.core.infra.localcluster import free_port

__all__ = [
    "APP_USER",
    "MongoServer",
    "SecantusMissing",
    "find_secantusd",
    "mongo_auth_server",
    "mongo_db",
    "mongo_server",
    "mongo_standalone_server",
]

APP_USER = "pgtide"

_live: list[MongoServer] = []
atexit.register(lambda: [server.destroy() for server in list(_live)])


class SecantusMissing(RuntimeError):
    pass


def find_secantusd() -> Path:
    """The server's launcher: beside this interpreter (the venv's bin) or on PATH."""
    beside = Path(sys.executable).with_name("secantusd-py")
    found = os.environ.get("PGTIDE_TEST_SECANTUSD") or (str(beside) if beside.exists() else None) \
        or shutil.which("secantusd-py")
    if not found or not os.access(found, os.X_OK):
        raise SecantusMissing("secantusd-py is not installed (pip install 'secantusdb==0.7.0b3' into the venv)")
    return Path(found)


class MongoServer:
    """One throwaway SecantusDB server."""

    def __init__(self, *, auth: bool = False, standalone: bool = False) -> None:
        self.launcher = find_secantusd()
        self.auth = auth
        self.standalone = standalone
        self.host = "127.0.0.1"
        self.port = 0
        self.user = APP_USER if auth else ""
        self.password = secrets.token_urlsafe(18) if auth else ""
        self.process: subprocess.Popen[bytes] | None = None
        self.root = Path(tempfile.mkdtemp(prefix="pgtide-mongo-"))
        self.storage = self.root / "data"
        self.config = self.root / "secantusd.toml"
        self.config.write_text("# empty: every setting comes from the command line\n")
        self.logfile = self.root / "server.log"
        _live.append(self)

    # -- lifetime ---------------------------------------------------------------------------------

    def start(self) -> None:
        if self.auth:
            # No localhost exception: provision the user with auth off, then restart with it on.
            self._launch(auth=False)
            with self.client(authenticated=False) as client:
                client.admin.command("createUser", self.user, pwd=self.password, roles=["root"])
            self.stop()
        self._launch(auth=self.auth)

    def _launch(self, *, auth: bool) -> None:
        last = ""
        for _attempt in range(3):  # a port picked as free can be taken before the server binds it
            self.port = free_port()
            argv = [str(self.launcher), "--config", str(self.config), "--host", self.host,
                    "--port", str(self.port), "--storage-path", str(self.storage), "--log-level", "WARNING"]
            if auth:
                argv.append("--auth")
            if self.standalone:
                argv.append("--standalone")
            with self.logfile.open("ab") as log:
                self.process = subprocess.Popen(argv, cwd=self.root, stdin=subprocess.DEVNULL, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True,
                                                preexec_fn=die_with_parent)
            if self._wait_ready():
                return
            last = self.log_tail()
            self.stop()
        raise RuntimeError(f"SecantusDB did not start: {last[-2000:]}")

    def _wait_ready(self) -> bool:
        """Until it answers ``ping`` (which needs no authentication)."""
        import pymongo
        import pymongo.errors

        deadline = time.monotonic() + 30
        assert self.process is not None
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            self.host, self.port, directConnection=True, serverSelectionTimeoutMS=300, connectTimeoutMS=300)
        try:
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    client.admin.command("ping")
                    return True
                except pymongo.errors.PyMongoError:
                    time.sleep(0.05)
        finally:
            client.close()
        return False

    def log_tail(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()  # the server's SIGTERM handler closes WiredTiger cleanly
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        if self in _live:
            _live.remove(self)

    # -- use --------------------------------------------------------------------------------------

    def url(self, db: str, *, user: str | None = None, with_password: bool = False) -> str:
        """``mongodb://[user@]127.0.0.1:PORT/db?directConnection=true[&authSource=admin]``.

        directConnection: the server advertises a replica set whose member list is this one
        address, so discovery would find the same server; saying so skips the discovery.
        """
        user = self.user if user is None else user
        secret = ":" + quote(self.password, safe="") if with_password and user else ""
        auth = quote(user, safe="") + secret + "@" if user else ""
        options = "directConnection=true" + ("&authSource=admin" if user else "")
        return f"mongodb://{auth}{self.host}:{self.port}/{quote(db, safe='')}?{options}"

    def client(self, *, authenticated: bool = True, **kwargs: Any) -> Any:
        """A pymongo MongoClient (as the provisioned user when the server has auth on);
        dates come back aware, in UTC. The caller closes it (it is a context manager)."""
        import datetime as dt

        import pymongo

        options: dict[str, Any] = {"directConnection": True, "serverSelectionTimeoutMS": 10000,
                                   "tz_aware": True, "tzinfo": dt.UTC}
        if self.auth and authenticated and self.process is not None:
            options.update(username=self.user, password=self.password, authSource="admin")
        options.update(kwargs)
        return pymongo.MongoClient(self.host, self.port, **options)

    def drop_database(self, name: str) -> None:
        with self.client() as client:
            client.drop_database(name)


def _start(**kwargs: Any) -> MongoServer:
    try:
        server = MongoServer(**kwargs)
    except SecantusMissing as missing:
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
def mongo_server() -> Iterator[MongoServer]:
    """One SecantusDB for the session: a one-node replica set (change streams work), no auth."""
    server = _start()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def mongo_auth_server() -> Iterator[MongoServer]:
    """A SecantusDB with ``--auth``: ``.user`` / ``.password`` (SCRAM, in ``admin``)."""
    server = _start(auth=True)
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def mongo_standalone_server() -> Iterator[MongoServer]:
    """A SecantusDB answering as a standalone mongod (no replica set: change streams refused)."""
    server = _start(standalone=True)
    yield server
    server.destroy()


@pytest.fixture
def mongo_db(mongo_server: MongoServer) -> Iterator[str]:
    """A fresh database name on the session's server (created by the first write), dropped after."""
    name = "t_" + secrets.token_hex(5)
    yield name
    mongo_server.drop_database(name)
