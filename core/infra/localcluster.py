"""Throwaway PostgreSQL servers on this machine, for ``pgtide demo``.

A :class:`LocalCluster` is a fresh data directory in a temporary folder, a server on a free
loopback port with ``wal_level=logical``, trust authentication on loopback only, and no
footprint once :meth:`LocalCluster.destroy` ran: the server is stopped and the folder removed.

The server binaries refuse to run as root, so as root they run as the ``postgres`` account
(Debian creates it with the server package) and the folder is handed to it. The server always
gets a log file (``pg_ctl -l``): a server that inherits our terminal would write over the app
and keep pipes open after we exit.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from .errors import EnvironmentProblem
from .tools import bin_dirs

#: Enough for a demo migration of a few databases, quick to start and to stop.
DEMO_SETTINGS: Mapping[str, str] = MappingProxyType(
    {
        "wal_level": "logical",
        "max_replication_slots": "10",
        "max_wal_senders": "10",
        "max_logical_replication_workers": "8",
        "max_worker_processes": "16",
        "max_connections": "50",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "wal_receiver_status_interval": "1s",
        "shared_buffers": "64MB",
    }
)

INSTALL_REMEDY = (
    "Install the PostgreSQL server package (Debian/Ubuntu: sudo apt-get install postgresql; "
    "Fedora: sudo dnf install postgresql-server; macOS: brew install postgresql@16), "
    "or point PGTIDE_PG_BINDIR at a directory holding initdb, pg_ctl and postgres."
)

_HBA = """\
local all all trust
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
"""


def _has_server(directory: Path) -> bool:
    return all((directory / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres"))


def find_server_binaries() -> Path:
    """The directory of the newest initdb/pg_ctl/postgres on this machine.

    Looks at ``PGTIDE_PG_BINDIR``, ``pg_config --bindir`` and Debian's
    ``/usr/lib/postgresql/*/bin`` (Debian keeps the server binaries off PATH).
    """
    # Debian's newest major first: the same order infra.tools picks client tools in.
    candidates = bin_dirs()
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for candidate in candidates:
        if _has_server(candidate):
            return candidate
    raise EnvironmentProblem(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) were found on this machine",
        INSTALL_REMEDY,
        title="PostgreSQL server not installed",
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> dict[str, Any]:
    """initdb and postgres refuse root: run them as the postgres account then."""
    if os.geteuid() != 0:
        return {}
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise EnvironmentProblem(
            "running as root, and there is no 'postgres' account to run the demo servers as",
            "Run pgtide demo as a normal user, or create the account (Debian: it comes with the postgresql package).",
            title="Cannot run PostgreSQL as root",
        ) from None
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


class LocalCluster:
    """One throwaway server: ``start()``, use ``url()``, then ``destroy()`` (also safe to call twice).

    The demo uses it as is; the test harness subclasses it (other pg_hba rules, faster stop).
    """

    #: pg_hba.conf written at initdb.
    HBA = _HBA
    #: pg_ctl stop mode: "fast" lets clients finish cleanly.
    STOP_MODE = "fast"

    def __init__(self, bindir: Path, *, label: str, settings: Mapping[str, str] = DEMO_SETTINGS) -> None:
        self.bindir = bindir
        self.label = label
        self.settings = dict(settings)
        self.port = 0
        self.running = False
        self._run_as = _run_as()
        # Not a private 0700 folder chain: the postgres account must be able to reach it.
        self.root = Path(tempfile.mkdtemp(prefix=f"pgtide-{label}-"))
        os.chmod(self.root, 0o755)
        if self._run_as:
            shutil.chown(self.root, "postgres", "postgres")

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "server.log"

    def _tool(self, tool: str, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bindir / tool), *args], capture_output=True, text=True, check=check, cwd=self.root,
            stdin=subprocess.DEVNULL, timeout=timeout, **self._run_as,
        )

    def start(self) -> None:
        """initdb (first time) and start on a free port; EnvironmentProblem with the server's log if it fails."""
        if not self.datadir.exists():
            result = self._tool(
                "initdb", "-D", str(self.datadir), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                "--no-locale", "--no-sync", check=False,
            )
            if result.returncode != 0:
                raise EnvironmentProblem(
                    f"initdb failed for the {self.label} server: {_last_line(result.stderr)}",
                    "Check that the PostgreSQL server package is complete and that /tmp is writable.",
                    title="Demo server did not start",
                )
            (self.datadir / "pg_hba.conf").write_text(self.HBA)
        last_error = ""
        for _ in range(3):  # a port picked as free can be taken before the server binds it
            self.port = free_port()
            options = {"port": str(self.port), "listen_addresses": "127.0.0.1",
                       "unix_socket_directories": str(self.root), **self.settings}
            opts = " ".join(f"-c {key}={value}" for key, value in options.items())
            result = self._tool("pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-w", "-t", "60",
                                "-o", opts, "start", check=False)
            if result.returncode == 0:
                self.running = True
                return
            last_error = _last_line(self._log_tail() or result.stderr)
        raise EnvironmentProblem(
            f"the {self.label} server did not start: {last_error}",
            "Check free memory and disk space in /tmp; the server log is in " + str(self.logfile),
            title="Demo server did not start",
        )

    def _log_tail(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.running:
            self._tool("pg_ctl", "-D", str(self.datadir), "-m", self.STOP_MODE, "-w", "-t", "30", "stop", check=False)
            self.running = False

    def destroy(self) -> None:
        """Stop the server (fast shutdown, then immediate if it hangs) and remove every file."""
        try:
            self.stop()
        except subprocess.TimeoutExpired:
            self._tool("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop", check=False)
            self.running = False
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{quote(dbname, safe='')}"

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
