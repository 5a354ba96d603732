"""Running pg_dump, pg_dumpall, pg_restore and psql without a secret on their command line or disk.

Anyone on the machine can read another process's argv (``ps``, ``/proc/<pid>/cmdline``),
so a child gets its connection as a keyword string *without* the password in ``-d``, and the
password through a passfile that never touches a disk: an anonymous in-memory file
(``memfd_create``), mode 0600, handed to the child as an inherited descriptor and named by
``PGPASSFILE=/dev/fd/N`` (libpq accepts it: a plain file, owner-only). Nothing of it is left
behind whatever happens to us — a ``kill -9`` included — because the kernel frees it with
the last descriptor.

Children die with us: each one asks the kernel for SIGKILL when its parent goes
(``PR_SET_PDEATHSIG``), so an orphaned ``psql`` cannot keep copying, or holding a snapshot,
after a crash. Where memfd is missing (not Linux) the passfile is a file in a private 0700
directory named after our pid, and every start removes those of pids that no longer run.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
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

# Children that run right now; the signal handler and atexit stop whatever is left.
_live_processes: set[subprocess.Popen[bytes]] = set()
# Re-entrant: the signal handler runs on the main thread, possibly while it holds the lock.
_live_lock = threading.RLock()
_handlers_installed = False

_PR_SET_PDEATHSIG = 1


def escape_passfile_field(value: str) -> str:
    """libpq's passfile syntax: ``:`` separates fields, so ``\\`` and ``:`` are escaped."""
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _stop_live_children() -> None:
    with _live_lock:
        processes = list(_live_processes)
    for proc in processes:
        if proc.poll() is None:
            proc.terminate()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _stop_live_children()
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
    """Stop live children on SIGTERM/SIGINT/SIGHUP and at exit; sweep what dead runs left.

    Signal handlers can only be set from the main thread, so front ends call this once at
    start-up; :func:`open_tool` also calls it when it happens to run on the main thread.
    """
    global _handlers_installed
    if _handlers_installed or threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        _previous_handlers[signum] = signal.getsignal(signum)
        signal.signal(signum, _on_signal)
    atexit.register(_stop_live_children)
    _handlers_installed = True
    sweep_stale_passfiles()


# -- the passfile ------------------------------------------------------------------------------

_PRIVATE_PREFIX = "pgtide-secrets-"
#: What pgtide 0.1 left in the temp directory (``mkstemp(prefix="pgtide-", suffix=".pgpass")``).
_LEGACY_PASSFILE = re.compile(r"pgtide-[A-Za-z0-9_]+\.pgpass")


def _passfile_line(password: str) -> bytes:
    if "\n" in password or "\r" in password:
        raise EnvironmentProblem(
            "the password contains a line break, which a libpq passfile cannot hold",
            "Use PGPASSWORD in the environment for this role, or change its password.",
        )
    return f"*:*:*:*:{escape_passfile_field(password)}\n".encode()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


@dataclass(frozen=True)
class Passfile:
    """Where a child finds its password: the PGPASSFILE value, and the descriptor to inherit."""

    path: str
    fd: int | None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _named_in_a_live_environment(path: Path) -> bool:
    """Whether a running process of ours still names ``path`` as its PGPASSFILE."""
    needle = b"PGPASSFILE=" + bytes(path)
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    return True
            except OSError:
                continue
    return False


def sweep_stale_passfiles(directory: str | None = None) -> int:
    """Remove passfiles that runs which no longer exist left in the temp directory.

    This version keeps passfiles off the disk (memfd) where it can; this finds the private
    directories of dead pids (the fallback) and the files pgtide 0.1 wrote, which a crash of
    that version left behind. Returns how many were removed.
    """
    root = Path(directory or tempfile.gettempdir())
    removed = 0
    try:
        entries = list(root.iterdir())
    except OSError:
        return 0
    for entry in entries:
        try:
            if entry.is_symlink() or entry.stat().st_uid != os.getuid():
                continue
            if entry.name.startswith(_PRIVATE_PREFIX) and entry.is_dir():
                pid = entry.name[len(_PRIVATE_PREFIX):].split("-", 1)[0]
                if pid.isdigit() and not _pid_alive(int(pid)):
                    shutil.rmtree(entry, ignore_errors=True)
                    removed += 1
            elif (_LEGACY_PASSFILE.fullmatch(entry.name) and entry.is_file()
                  and not _named_in_a_live_environment(entry)):
                entry.unlink()
                removed += 1
        except OSError:
            continue
    return removed


_private_dir: Path | None = None


def _private_directory() -> Path:
    global _private_dir
    with _live_lock:
        if _private_dir is None or not _private_dir.is_dir():
            _private_dir = Path(tempfile.mkdtemp(prefix=f"{_PRIVATE_PREFIX}{os.getpid()}-"))  # mode 0700
            atexit.register(shutil.rmtree, _private_dir, True)
        return _private_dir


def _memfd() -> int | None:
    """An anonymous in-memory file, or None where the system has none (or forbids it)."""
    memfd_create = getattr(os, "memfd_create", None)
    # The child opens it again by name: /dev/fd must exist (not on FreeBSD without fdescfs).
    if memfd_create is None or not os.path.isdir("/dev/fd"):
        return None
    try:
        # Close-on-exec: only the child it is passed to (pass_fds) inherits it.
        return int(memfd_create("pgtide-pgpass", os.MFD_CLOEXEC))
    except OSError:  # a seccomp filter or sandbox that refuses memfd_create
        return None


@contextmanager
def passfile(password: str) -> Iterator[Passfile]:
    """A private passfile holding ``password`` for any host/port/db/user, gone afterwards."""
    line = _passfile_line(password)
    fd = _memfd()
    if fd is not None:
        try:
            os.fchmod(fd, 0o600)
            _write_all(fd, line)
            yield Passfile(f"/dev/fd/{fd}", fd)
        finally:
            os.close(fd)
        return
    fd, path = tempfile.mkstemp(suffix=".pgpass", dir=_private_directory())  # O_EXCL, 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(line)
        yield Passfile(path, None)
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _load_prctl() -> Any:
    if not os.path.exists("/proc/self"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _load_prctl()


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec function: the child gets SIGKILL when this process dies (Linux).

    The kernel ties the signal to the thread that forks; open_tool's caller waits for (or
    stops) its child in that same thread, so the child never outlives it by design.
    """
    if _PRCTL is None:
        return None
    parent = os.getpid()
    prctl = _PRCTL

    # Runs in the child between fork and exec: one system call, and no exec at all if the
    # parent died before it took effect.
    def set_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return set_death_signal


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
def tool_environment(endpoint: Endpoint) -> Iterator[tuple[dict[str, str], str, tuple[int, ...]]]:
    """(environment, conninfo-without-password, descriptors to pass) for a child of ``endpoint``."""
    env = dict(os.environ)
    conninfo = endpoint.conninfo(include_password=False)
    password = endpoint.password
    if password is None:
        # No explicit password: the child finds one the way libpq always does (PGPASSWORD,
        # the user's .pgpass, a service file), exactly like psql would.
        yield env, conninfo, ()
        return
    # An inherited PGPASSWORD would beat the passfile (libpq reads it first) and belongs to
    # some other server; drop it for this child.
    env.pop("PGPASSWORD", None)
    with passfile(password) as secret:
        env["PGPASSFILE"] = secret.path
        yield env, conninfo, (() if secret.fd is None else (secret.fd,))


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
    install_cleanup_handlers()
    tool = find_tool(name, server_major=server_major)
    with tool_environment(endpoint) as (env, conninfo, pass_fds):
        # Our arguments (table names, COPY statements) are UTF-8 whatever the database's
        # encoding: a child must say so, or the server reads them in the database's encoding.
        env["PGCLIENTENCODING"] = "UTF8"
        if extra_env:
            env.update(extra_env)
        argv = [str(tool.path), f"--dbname={conninfo}", *args]
        proc = subprocess.Popen(argv, env=env, stdin=stdin, stdout=stdout, stderr=stderr, pass_fds=pass_fds,
                                preexec_fn=_die_with_parent())
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
