"""What a migration has finished, on disk, so a rerun continues instead of starting over.

One JSON file per migration (source server → target server) under the user's *state*
directory — never $TMPDIR, and never deleted behind the user's back (teardown marks it torn
down; ``pgtide teardown --forget`` is the only thing that removes it). Written atomically
(temp file + rename) after every change, so a SIGKILL leaves either the old or the new state.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..infra.paths import state_dir
from .state import DatabaseState, check_transition, parse_state

if TYPE_CHECKING:
    from ..catalog.scope import Scope
    from ..model.plan import Plan

#: Used for estimates until pgtide has measured this machine's copy path itself.
DEFAULT_THROUGHPUT_BYTES_PER_SECOND = 100 * 1024 * 1024


def jobs_dir() -> Path:
    return state_dir() / "jobs"


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".state-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class JobStore:
    """Per-database progress of one migration. Thread-safe; every change is persisted."""

    @staticmethod
    def exists(migration_id: str, *, root: Path | None = None) -> bool:
        return ((root or jobs_dir()) / migration_id / "state.json").is_file()

    def __init__(self, migration_id: str, *, root: Path | None = None) -> None:
        self.migration_id = migration_id
        self.path = (root or jobs_dir()) / migration_id / "state.json"
        self._lock = threading.Lock()
        self._data: dict[str, Any] = self._read()
        self._seen = self._stamp()

    def _stamp(self) -> tuple[int, int, int] | None:
        """Which version of the file is on disk (every save replaces it: a new inode)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    @contextmanager
    def _fresh(self) -> Iterator[None]:
        """The record as it is on disk now, for this thread and process alone until the block
        ends. Several stores of one migration live at once (the CLI's session, init's, the
        worker's, the app's): each change starts from the file, never from a copy read
        earlier — a stale copy once wrote a verify result over the databases init recorded."""
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path.with_name("state.lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                seen = self._stamp()
                if seen is not None and seen != self._seen:  # another writer since: read theirs
                    self._data = self._read()
                    self._seen = seen
                yield
            finally:
                os.close(fd)

    def _read(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"migration_id": self.migration_id, "databases": {}}
        except (OSError, ValueError):
            # A damaged store must not block the user: keep it aside and start fresh.
            self.path.rename(self.path.with_suffix(f".damaged-{int(time.time())}"))
            return {"migration_id": self.migration_id, "databases": {}}
        data.setdefault("databases", {})
        return data

    def _save(self) -> None:
        write_json(self.path, self._data)
        self._seen = self._stamp()

    def database(self, name: str) -> dict[str, Any]:
        """A copy of what is recorded for ``name`` (empty when nothing is)."""
        with self._fresh():
            copied: dict[str, Any] = json.loads(json.dumps(self._data["databases"].get(name, {})))
            return copied

    def state(self, name: str) -> DatabaseState | None:
        with self._fresh():
            return parse_state(self._data["databases"].get(name, {}).get("status"))

    def update(self, name: str, **fields: Any) -> None:
        """Record facts about ``name``; its state changes only through :meth:`transition`."""
        if "status" in fields:
            raise TypeError("the state changes through transition(), which checks the move")
        with self._fresh():
            entry = self._data["databases"].setdefault(name, {})
            entry.update(fields)
            entry["updated_at"] = time.time()
            self._save()

    def transition(self, name: str, state: DatabaseState, **fields: Any) -> None:
        """Move ``name`` to ``state`` (a move the rules allow) and record ``fields`` with it."""
        with self._fresh():
            entry = self._data["databases"].setdefault(name, {})
            check_transition(name, parse_state(entry.get("status")), state)
            entry.update(fields)
            entry["status"] = state.value
            entry["updated_at"] = time.time()
            self._save()

    def table_done(self, name: str, table_key: str, rows: int, size: int) -> None:
        with self._fresh():
            entry = self._data["databases"].setdefault(name, {})
            entry.setdefault("tables", {})[table_key] = {"rows": rows, "bytes": size, "at": time.time()}
            self._save()

    def table_update(self, name: str, table_key: str, **fields: Any) -> None:
        """Record facts about one table of ``name`` (merged into what is there)."""
        with self._fresh():
            entry = self._data["databases"].setdefault(name, {})
            entry.setdefault("tables", {}).setdefault(table_key, {}).update(fields, at=time.time())
            self._save()

    def reset(self, name: str) -> None:
        with self._fresh():
            self._data["databases"].pop(name, None)
            self._save()

    def databases(self) -> dict[str, dict[str, Any]]:
        with self._fresh():
            copied: dict[str, dict[str, Any]] = json.loads(json.dumps(self._data["databases"]))
            return copied

    # -- the migration itself --------------------------------------------------------------------

    def record_plan(self, plan: Plan, scope: Scope | None = None) -> None:
        """Record what this migration is: endpoints without secrets, the selection and options as
        given, and (with a scope) the resolved plan — every table's treatment with the server's
        text of its filter and the time cuts. Later commands act on this record."""
        now = time.time()
        with self._fresh():
            data = self._data
            data["format"] = RECORD_FORMAT
            data.setdefault("created_at", now)
            data["recorded_at"] = now
            for side, endpoint in (("source", plan.source), ("target", plan.target)):
                data[side] = {"url": endpoint.to_url(), "display": endpoint.redacted()}
            data["selection"] = plan.selection.to_dict()
            data["options"] = plan.options.to_dict()
            if scope is not None:
                data["resolved"] = {
                    db.name: {
                        ".".join(t.info.qualified): {
                            "mode": t.mode, **({"where": t.where} if t.where else {}),
                            **({"time_cutoff": t.time_cutoff} if t.time_cutoff else {}),
                        }
                        for t in db.tables
                    }
                    for db in scope.databases
                }
                data["resolved_at"] = scope.resolved_at.isoformat()
            self._save()

    def record_verify(self, summary: Mapping[str, Any]) -> None:
        with self._fresh():
            self._data["last_verify"] = {**summary, "at": time.time()}
            self._save()

    def record_meta(self, key: str, value: Any) -> None:
        """Record a fact about the whole migration (e.g. its cutover's progress); None removes it."""
        with self._fresh():
            if value is None:
                self._data.pop(key, None)
            else:
                self._data[key] = value
            self._save()

    def meta(self) -> dict[str, Any]:
        """Everything recorded but the per-database progress."""
        with self._fresh():
            copied: dict[str, Any] = json.loads(json.dumps({k: v for k, v in self._data.items() if k != "databases"}))
            return copied

    def recorded_plan(self) -> Plan | None:
        """The plan this migration was recorded with (passwords from libpq or the keyring, as
        for a profile), or None for a record of pgtide 0.1, which kept no plan."""
        from ..infra.endpoint import Endpoint
        from ..infra.secrets import with_stored_password
        from ..model.plan import Options, Plan
        from ..model.selection import Selection

        meta = self.meta()
        if meta.get("format") != RECORD_FORMAT:
            return None
        return Plan(with_stored_password(Endpoint.parse(meta["source"]["url"])),
                    with_stored_password(Endpoint.parse(meta["target"]["url"])),
                    Selection.from_dict(meta["selection"], source=f"migration {self.migration_id}"),
                    Options.from_dict(meta["options"], source=f"migration {self.migration_id}"))


#: Version 2 records the plan; version 1 (pgtide 0.1) kept per-database progress only.
RECORD_FORMAT = 2


def all_records(root: Path | None = None) -> list[JobStore]:
    """Every migration recorded on this machine, newest first."""
    base = root or jobs_dir()
    stores = [JobStore(path.parent.name, root=base) for path in base.glob("*/state.json")]
    return sorted(stores, key=lambda s: s.meta().get("recorded_at") or s.path.stat().st_mtime, reverse=True)


def _throughput_path() -> Path:
    return state_dir() / "throughput.json"


def measured_throughput() -> float:
    """Bytes per second of the last measured copy on this machine (or the default)."""
    try:
        value = float(json.loads(_throughput_path().read_text())["bytes_per_second"])
        return value if value > 0 else DEFAULT_THROUGHPUT_BYTES_PER_SECOND
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_THROUGHPUT_BYTES_PER_SECOND


def record_throughput(size: int, seconds: float) -> None:
    # Tiny copies measure start-up costs, not throughput: keep the old figure for them.
    if size < 64 * 1024 * 1024 or seconds <= 0:
        return
    write_json(_throughput_path(), {"bytes_per_second": size / seconds, "measured_at": time.time()})
