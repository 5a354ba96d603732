"""Running pg_dump, pg_dumpall, pg_restore and psql without a secret on their command line.

Anyone on the machine can read another process's argv (``ps``, ``/proc/<pid>/cmdline``),
so a child gets its connection as a keyword string *without* the password in ``-d``, and the
password through a temporary passfile named by ``PGPASSFILE`` in its environment (readable
only by our own user). The passfile is created with O_EXCL and mode 0600 in one step, holds
a single wildcard line, and is removed when the child is done — also when we are interrupted
by an exception, SIGINT or SIGTERM.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import FrameType
from typing import IO, Any

from .endpoint import Endpoint
from .errors import EnvironmentProblem, PgtideError

TOOLS = ("pg_dump", "pg_dumpall", "pg_restore", "psql")
#: Debian keeps one bin directory per installed major version under here.
DEBIAN_ROOT = Path("/usr/lib/postgresql")

# Passfiles and children that exist right now; the signal handler and atexit clean up
# whatever is left, so an interrupted run leaves neither a secret on disk nor an orphan pg_dump.
_live_passfiles: set[str] = set()
_live_processes: set[subprocess.Popen[bytes]] = set()
# Re-entrant: the signal handler runs on the main thread, possibly while it holds the lock.
_live_lock = threading.RLock()
_handlers_installed = False


def escape_passfile_field(value: str) -> str:
    """libpq's passfile syntax: ``:`` separates fields, so ``\\`` and ``:`` are escaped."""
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _remove_live_passfiles() -> None:
    with _live_lock:
        paths = list(_live_passfiles)
        _live_passfiles.clear()
        processes = list(_live_processes)
    for proc in processes:
        if proc.poll() is None:
            proc.terminate()
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _remove_live_passfiles()
    previous = _previous_handlers.get(signum)
    if previous == signal.SIG_IGN:
        return
    if callable(previous):
        previous(signum, frame)
        return
    # Default action: die of the same signal so the parent sees the real cause.
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


_previous_handlers: dict[int, Any] = {}


def install_cleanup_handlers() -> None:
    """Remove live passfiles on SIGTERM/SIGINT and at exit.

    Signal handlers can only be set from the main thread, so front ends call this once at
    start-up; :func:`passfile` also calls it when it happens to run on the main thread.
    """
    global _handlers_installed
    if _handlers_installed or threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        _previous_handlers[signum] = signal.getsignal(signum)
        signal.signal(signum, _on_signal)
    atexit.register(_remove_live_passfiles)
    _handlers_installed = True


@contextmanager
def passfile(password: str) -> Iterator[str]:
    """A private passfile holding ``password`` for any host/port/db/user; removed afterwards."""
    install_cleanup_handlers()
    if "\n" in password or "\r" in password:
        raise EnvironmentProblem(
            "the password contains a line break, which a libpq passfile cannot hold",
            "Use PGPASSWORD in the environment for this role, or change its password.",
        )
    # mkstemp opens with O_CREAT|O_EXCL and mode 0600: no window where the file is readable.
    fd, path = tempfile.mkstemp(prefix="pgtide-", suffix=".pgpass")
    with _live_lock:
        _live_passfiles.add(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(f"*:*:*:*:{escape_passfile_field(password)}\n")
        yield path
    finally:
        with _live_lock:
            _live_passfiles.discard(path)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


# -- finding the tools ----------------------------------------------------------------------


@dataclass(frozen=True)
class ToolVersion:
    path: Path
    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.path.name} {self.major}.{self.minor}"


def bin_dirs() -> list[Path]:
    """Where PostgreSQL programs may live, most wanted first (PGTIDE_PG_BINDIR, Debian's, pg_config's)."""
    dirs: list[Path] = []
    if os.environ.get("PGTIDE_PG_BINDIR"):
        dirs.append(Path(os.environ["PGTIDE_PG_BINDIR"]))
    # Debian keeps one bin directory per installed major; newer pg_dump dumps older servers.
    debian = DEBIAN_ROOT
    if debian.is_dir():
        versions = sorted(
            (child for child in debian.iterdir() if child.name.isdigit()), key=lambda p: int(p.name), reverse=True
        )
        dirs.extend(version / "bin" for version in versions)
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False)
            if out.returncode == 0 and out.stdout.strip():
                dirs.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    return dirs


@lru_cache(maxsize=64)
def tool_version(path: Path) -> ToolVersion:
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30, check=False)
    match = re.search(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?", out.stdout)
    if out.returncode != 0 or not match:
        raise EnvironmentProblem(f"{path} --version did not report a PostgreSQL version", "Reinstall the client tools.")
    return ToolVersion(path, int(match.group(1)), int(match.group(2) or 0))


@lru_cache(maxsize=32)
def find_tool(name: str, *, server_major: int | None = None) -> ToolVersion:
    """The newest installed ``name``; refuse one older than the server it must talk to."""
    if name not in TOOLS:
        raise ValueError(name)
    found: list[ToolVersion] = []
    seen: set[Path] = set()
    for directory in bin_dirs():
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK) and candidate.resolve() not in seen:
            seen.add(candidate.resolve())
            found.append(tool_version(candidate))
    on_path = shutil.which(name)
    if on_path and Path(on_path).resolve() not in seen:
        found.append(tool_version(Path(on_path)))
    if not found:
        raise EnvironmentProblem(
            f"{name} was not found (looked in PGTIDE_PG_BINDIR, /usr/lib/postgresql/*/bin, pg_config --bindir, PATH)",
            "Install the PostgreSQL client tools (Debian/Ubuntu: apt-get install postgresql-client) "
            "or set PGTIDE_PG_BINDIR to the directory that holds them.",
            title="PostgreSQL tools missing",
        )
    best = max(found, key=lambda tool: (tool.major, tool.minor))
    if server_major is not None and name in ("pg_dump", "pg_dumpall") and best.major < server_major:
        raise EnvironmentProblem(
            f"{best} is older than the PostgreSQL {server_major} server it must read",
            f"Install {name} {server_major} or newer (Debian/Ubuntu: apt-get install postgresql-client-{server_major}) "
            "or set PGTIDE_PG_BINDIR to its directory.",
            title="pg_dump too old",
        )
    return best


# -- running them ---------------------------------------------------------------------------


class ToolFailed(PgtideError):
    """A PostgreSQL client tool exited with an error."""

    exit_code = 1
    default_title = "Command failed"

    def __init__(self, tool: str, returncode: int, stderr: str) -> None:
        lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
        # libpq appends hints ("password retrieved from file ...") after the real error.
        errors = [line for line in lines if re.search(r"\b(error|fatal)\b", line, re.IGNORECASE)]
        detail = (errors or lines or [f"exit code {returncode}"])[0]
        super().__init__(
            detail,
            "See the log for the tool's full output; fix the cause and run the same command again.",
            title=f"{tool} failed",
        )
        self.tool = tool
        self.returncode = returncode
        self.stderr = stderr


@contextmanager
def tool_environment(endpoint: Endpoint) -> Iterator[tuple[dict[str, str], str]]:
    """(environment, conninfo-without-password) for a child that connects to ``endpoint``."""
    env = dict(os.environ)
    conninfo = endpoint.conninfo(include_password=False)
    password = endpoint.password
    if password is None:
        # No explicit password: the child finds one the way libpq always does (PGPASSWORD,
        # the user's .pgpass, a service file), exactly like psql would.
        yield env, conninfo
        return
    # An inherited PGPASSWORD would beat the passfile (libpq reads it first) and belongs to
    # some other server; drop it for this child.
    env.pop("PGPASSWORD", None)
    with passfile(password) as path:
        env["PGPASSFILE"] = path
        yield env, conninfo


@contextmanager
def open_tool(
    name: str,
    args: Sequence[str],
    endpoint: Endpoint,
    *,
    server_major: int | None = None,
    stdin: int | IO[Any] | None = None,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = subprocess.PIPE,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``name`` connected to ``endpoint``; the process is stopped if we leave early.

    ``args`` must not hold connection options: the connection goes in ``-d``/``--dbname``.
    """
    tool = find_tool(name, server_major=server_major)
    with tool_environment(endpoint) as (env, conninfo):
        if extra_env:
            env.update(extra_env)
        argv = [str(tool.path), f"--dbname={conninfo}", *args]
        proc = subprocess.Popen(argv, env=env, stdin=stdin, stdout=stdout, stderr=stderr)
        with _live_lock:
            _live_processes.add(proc)
        try:
            yield proc
        finally:
            with _live_lock:
                _live_processes.discard(proc)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for stream in (proc.stdout, proc.stderr, proc.stdin):
                if stream is not None:
                    stream.close()


def run_tool(
    name: str,
    args: Sequence[str],
    endpoint: Endpoint,
    *,
    server_major: int | None = None,
    input_bytes: bytes | None = None,
    timeout: float | None = None,
) -> bytes:
    """Run a tool to completion and return its stdout; raise :class:`ToolFailed` on error."""
    with open_tool(
        name,
        args,
        endpoint,
        server_major=server_major,
        stdin=subprocess.PIPE if input_bytes is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    ) as proc:
        out, err = proc.communicate(input_bytes, timeout=timeout)
        if proc.returncode != 0:
            raise ToolFailed(name, proc.returncode, endpoint.redact(err.decode(errors="replace")))
        return out
