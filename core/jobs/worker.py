"""A migration's worker process: the session runs there, detached from the terminal.

Closing the terminal, losing the SSH connection or quitting the app no longer ends a copy:
the worker has its own session and process group, no terminal, stdin closed, and output in
the migration's log. Everything about it lives in the migration's directory under the state
dir (owner-only, like the record):

- ``worker.lock`` — held (``flock``) for the worker's whole life: a lock that can be taken
  means no worker is alive, whatever ``worker.json`` still says (kill -9, a reboot);
- ``worker.json`` — pid, command, start time; written atomically;
- ``events.jsonl`` — append-only JSON lines: phases, per-table progress, lag samples,
  verify results, errors, and a final ``WorkerFinished`` with the exit code. Bounded: past
  ``EVENT_LOG_MAX_BYTES`` it rotates to ``events.1.jsonl`` (one generation kept), and
  per-table progress is thinned to one line per table per second before it is written;
- ``control/`` — requests from ``pgtide stop|attach``, the app: one JSON file per request,
  written atomically, answered by a ``.reply`` file. A directory of files rather than a
  socket: no path-length limit (a Unix socket path has 108 bytes), and its 0700 mode is the
  whole permission story.

The worker receives its plan — passwords included — on a pipe it reads to the end and
closes before doing anything else: never argv, never its environment.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..infra.errors import EnvironmentProblem, InputError
from .store import jobs_dir, write_json

EVENT_LOG_MAX_BYTES = 8 * 1024 * 1024
#: Progress of one table is kept at most this often (seconds) in the log.
PROGRESS_EVERY = 1.0


def migration_dir(migration_id: str) -> Path:
    path = jobs_dir() / migration_id
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


# -- the event log ------------------------------------------------------------------------------------


class EventLog:
    """The worker's append-only log of events (one writer: the worker; any number of readers)."""

    def __init__(self, migration_id: str, *, max_bytes: int = EVENT_LOG_MAX_BYTES) -> None:
        self.path = migration_dir(migration_id) / "events.jsonl"
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._last_progress: dict[tuple[str, ...], float] = {}

    def append(self, record: Mapping[str, Any]) -> None:
        if record.get("event") == "TableProgress":
            key = (str(record.get("database")), str(record.get("schema")), str(record.get("table")))
            now = time.monotonic()
            if now - self._last_progress.get(key, 0.0) < PROGRESS_EVERY and record.get("bytes_done") != record.get(
                    "bytes_total"):
                return
            self._last_progress[key] = now
        line = json.dumps({"at": time.time(), **record}, default=str) + "\n"
        with self._lock:
            try:
                if self.path.stat().st_size + len(line) > self.max_bytes:
                    os.replace(self.path, self.path.with_name("events.1.jsonl"))
            except FileNotFoundError:
                pass
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode("utf-8"))
            finally:
                os.close(fd)

    def read(self) -> list[dict[str, Any]]:
        """Everything kept: the rotated generation, then the current one."""
        records: list[dict[str, Any]] = []
        for path in (self.path.with_name("events.1.jsonl"), self.path):
            with contextlib.suppress(FileNotFoundError):
                records += _parse_lines(path.read_text(encoding="utf-8"))
        return records

    def follow(self, *, stop: Callable[[], bool], poll: float = 0.2, offset: int = 0) -> Iterator[dict[str, Any]]:
        """Records from byte ``offset`` on, as they are appended, until ``stop()`` (checked when
        nothing new came) says enough."""
        position = offset
        inode = None
        partial = b""
        while True:
            try:
                with open(self.path, "rb") as handle:
                    stat = os.fstat(handle.fileno())
                    if inode is not None and stat.st_ino != inode:
                        position = 0  # rotated: the new file starts from its beginning
                    inode = stat.st_ino
                    handle.seek(position)
                    data = handle.read()
                    position = handle.tell()
            except FileNotFoundError:
                data = b""
            if data:
                partial += data
                *lines, partial = partial.split(b"\n")
                for line in lines:
                    yield from _parse_lines(line.decode("utf-8", errors="replace"))
            elif stop():
                return
            else:
                time.sleep(poll)


def _parse_lines(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                records.append(value)
    return records


# -- alive or not --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerInfo:
    migration_id: str
    pid: int | None
    command: str | None
    started_at: float | None
    alive: bool
    #: The worker's last words (its WorkerFinished record), if it ended cleanly.
    finished: dict[str, Any] | None

    @property
    def state(self) -> str:
        """alive, finished (exit code), or dead (ended without a word: kill -9, a reboot)."""
        if self.alive:
            return "alive"
        if self.finished is not None:
            return f"finished ({self.finished.get('exit_code')})"
        return "dead" if self.pid is not None else "none"


def _lock_path(migration_id: str) -> Path:
    return migration_dir(migration_id) / "worker.lock"


def file_lock_held(path: Path) -> bool:
    """Whether some process holds an exclusive flock on ``path`` (tried shared, for an instant)."""
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def lock_held(migration_id: str) -> bool:
    for process in _spawned:
        process.poll()  # reap a worker of ours that ended
    return file_lock_held(_lock_path(migration_id))


def worker_info(migration_id: str) -> WorkerInfo:
    directory = jobs_dir() / migration_id
    try:
        data = json.loads((directory / "worker.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    alive = lock_held(migration_id) if directory.exists() else False
    finished = None
    if not alive and data:
        records = EventLog(migration_id).read()
        finished = next((r for r in reversed(records) if r.get("event") == "WorkerFinished"
                         and r.get("worker") == data.get("token")), None)
    return WorkerInfo(migration_id, data.get("pid"), data.get("command"), data.get("started_at"), alive, finished)


class WorkerLock:
    """Held by the running worker: taking it fails while another worker of the migration lives."""

    def __init__(self, migration_id: str) -> None:
        self.migration_id = migration_id
        self.fd = os.open(_lock_path(migration_id), os.O_RDWR | os.O_CREAT, 0o600)
        for _ in range(20):
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                # lock_held() takes the lock shared for an instant: that is not a live worker.
                time.sleep(0.05)
        os.close(self.fd)
        raise InputError(f"a worker of migration {migration_id} is already running",
                         f"Follow it with `pgtide attach {migration_id}`, or stop it with "
                         f"`pgtide stop {migration_id}`.", title="Worker running")

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


# -- control requests ---------------------------------------------------------------------------------


def _control_dir(migration_id: str) -> Path:
    path = migration_dir(migration_id) / "control"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def send_request(migration_id: str, request: Mapping[str, Any], *, timeout: float = 10.0) -> dict[str, Any]:
    """Ask the migration's worker to do something; its answer, or an error after ``timeout``."""
    if not lock_held(migration_id):
        raise InputError(f"no worker of migration {migration_id} is running",
                         "Run `pgtide migrations` to see its state; `pgtide init` continues a stopped one.",
                         title="No worker")
    name = uuid.uuid4().hex
    directory = _control_dir(migration_id)
    write_json(directory / f"{name}.request", dict(request))
    reply = directory / f"{name}.reply"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if reply.exists():
            answer: dict[str, Any] = json.loads(reply.read_text(encoding="utf-8"))
            reply.unlink(missing_ok=True)
            return answer
        if not lock_held(migration_id):
            break
        time.sleep(0.05)
    with contextlib.suppress(FileNotFoundError):
        (directory / f"{name}.request").unlink()
    raise EnvironmentProblem(f"the worker of migration {migration_id} did not answer within {timeout:g} s",
                             "It may be busy or stuck: its log says more (`pgtide attach`).", title="No answer")


class ControlServer:
    """The worker's side: a thread that hands each request to ``handle`` and writes the reply."""

    def __init__(self, migration_id: str, handle: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.directory = _control_dir(migration_id)
        for stale in self.directory.glob("*.re*"):  # a dead worker's unanswered questions
            stale.unlink(missing_ok=True)
        self.handle = handle
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="pgtide-control", daemon=True)

    def start(self) -> ControlServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for request in sorted(self.directory.glob("*.request")):
                try:
                    data = json.loads(request.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                request.unlink(missing_ok=True)
                try:
                    answer = self.handle(data)
                except Exception as exc:  # an answer, never a dead control thread
                    answer = {"ok": False, "error": str(exc)}
                write_json(request.with_suffix(".reply"), answer)


# -- starting one --------------------------------------------------------------------------------------


_spawned: list[subprocess.Popen[bytes]] = []


def spawn(migration_id: str, job: Mapping[str, Any], *, module: str = "pgtide.app.worker",
          wait: float = 15.0, systemd: bool = False) -> int:
    """Start the worker for ``job`` (its plan, secrets included, goes through a pipe) and return its
    pid once it holds the migration's lock.

    ``systemd``: in a transient scope of the user's systemd (``systemd-run --user --scope``),
    which survives a logout even where logind ends the user's processes (KillUserProcesses);
    the scope runs the worker itself, so the pipe and the lock work the same."""
    from ..infra.paths import log_dir

    if lock_held(migration_id):
        raise InputError(f"a worker of migration {migration_id} is already running",
                         f"Follow it with `pgtide attach {migration_id}`.", title="Worker running")
    prefix: list[str] = []
    if systemd:
        runner = shutil.which("systemd-run")
        if runner is None:
            raise EnvironmentProblem("--systemd needs systemd-run, which is not on this machine",
                                     "Leave --systemd out and keep the terminal in tmux/screen, or enable "
                                     "lingering (loginctl enable-linger) where systemd is used.")
        prefix = [runner, "--user", "--scope", "--quiet", "--collect", "--unit", f"pgtide-{migration_id}", "--"]
    log_dir().mkdir(parents=True, exist_ok=True)
    output = open(log_dir() / f"worker-{migration_id}.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        # The foreign source's password travels in the job (the pipe): the worker, which lives
        # on, must not keep it in its environment where /proc/PID/environ shows it.
        from ..foreign.endpoint import PASSWORD_ENV

        env = {key: value for key, value in os.environ.items() if key != PASSWORD_ENV}
        process = subprocess.Popen(
            [*prefix, sys.executable, "-m", module, migration_id], stdin=subprocess.PIPE, stdout=output, stderr=output,
            start_new_session=True, close_fds=True, cwd="/", env=env,
        )
    finally:
        output.close()
    # Kept, and polled now and then: a worker that ends before this process must be reaped
    # (no zombie), and must not be reported as a leak when its Popen would be collected.
    _spawned[:] = [p for p in _spawned if p.poll() is None]
    _spawned.append(process)
    assert process.stdin is not None
    with process.stdin:
        process.stdin.write(json.dumps(dict(job)).encode("utf-8"))
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EnvironmentProblem(f"the worker of migration {migration_id} ended at once "
                                     f"(exit code {process.returncode})",
                                     f"Its output is in {log_dir() / f'worker-{migration_id}.log'}.",
                                     title="Worker did not start")
        info = worker_info(migration_id)
        if info.alive and (info.pid == process.pid or prefix):  # under systemd-run the pid is the scope's child
            return info.pid or process.pid
        time.sleep(0.05)
    raise EnvironmentProblem(f"the worker of migration {migration_id} did not start within {wait:g} s",
                             f"Its output is in {log_dir() / f'worker-{migration_id}.log'}.",
                             title="Worker did not start")


def read_job(stream: IO[bytes]) -> dict[str, Any]:
    """The worker's first act: its job from the pipe, which is then closed for good."""
    data = stream.read()
    stream.close()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    job: dict[str, Any] = json.loads(data.decode("utf-8"))
    return job


def announce(migration_id: str, command: str) -> str:
    """Record the running worker (after it took the lock); returns its token for WorkerFinished."""
    token = uuid.uuid4().hex
    write_json(migration_dir(migration_id) / "worker.json",
               {"pid": os.getpid(), "command": command, "started_at": time.time(), "token": token})
    return token
