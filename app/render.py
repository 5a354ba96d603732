"""Turning core events and results into terminal output: lines, a progress line, or JSON."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

from ..core.catalog.estimate import Estimate
from ..core.infra.events import (
    CheckReported,
    Event,
    IndexProgress,
    Log,
    PhaseFinished,
    PhaseStarted,
    TableCopied,
    TableProgress,
)
from ..core.infra.formatting import human_bytes, human_seconds, text_table

_MARK = {"ok": "ok", "warning": "WARN", "error": "FAIL"}
#: At most one "indexes n/m built" line this often per database, and always the last: a
#: section of thousands of small indexes must not print thousands of lines.
INDEX_LINE_SECONDS = 1.0


def table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    return text_table(rows, headers)


class EventPrinter:
    """An ``Emit`` for the CLI. Thread-safe: copy workers emit from their own threads."""

    def __init__(self, *, as_json: bool = False, stream: IO[str] | None = None, quiet_checks: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.as_json = as_json
        #: What the throttles measure time with (tests step it).
        self.clock = clock
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.quiet_checks = quiet_checks
        self._lock = threading.Lock()
        self._progress: dict[tuple[str, str, str], TableProgress] = {}
        self._last_progress_line = 0.0
        self._progress_shown = False
        #: Per database: (objects built when its last line was printed, when).
        self._indexes: dict[str, tuple[int, float]] = {}

    def __call__(self, event: Event) -> None:
        with self._lock:
            if self.as_json:
                print(json.dumps(event.to_dict(), default=str), file=self.stream, flush=True)
                return
            self._render(event)

    def _clear_progress(self) -> None:
        if self._progress_shown:
            self.stream.write("\r\033[K")
            self._progress_shown = False

    def _line(self, text: str) -> None:
        self._clear_progress()
        print(text, file=self.stream, flush=True)

    def _render(self, event: Event) -> None:
        if isinstance(event, TableProgress):
            self._progress[event.key] = event
            now = time.monotonic()
            if self.tty and now - self._last_progress_line > 0.2:
                self._last_progress_line = now
                done = sum(p.bytes_done for p in self._progress.values())
                rows = sum(p.rows_done for p in self._progress.values())
                self.stream.write(f"\r\033[K  copying {len(self._progress)} table(s): {human_bytes(done)}, {rows:,} rows")
                self.stream.flush()
                self._progress_shown = True
            return
        if isinstance(event, IndexProgress):
            self._index_progress(event)
            return
        if isinstance(event, CheckReported):
            if self.quiet_checks and event.status == "ok":
                return
            where = f"[{event.database}] " if event.database else ""
            self._line(f"{_MARK[event.status]:>4}  {where}{event.name}: {event.observed}")
            if event.remedy and event.status != "ok":
                self._line(f"      fix: {event.remedy}")
        elif isinstance(event, PhaseStarted):
            self._line(f"{_prefix(event.database)}{event.phase} ...")
        elif isinstance(event, PhaseFinished):
            self._line(f"{_prefix(event.database)}{event.phase} done in {event.seconds:.1f}s")
        elif isinstance(event, TableCopied):
            self._progress.pop((event.database, event.schema, event.table), None)
            self._line(f"{_prefix(event.database)}  copied {event.schema}.{event.table}: {event.rows:,} rows "
                       f"in {event.seconds:.1f}s")
        elif isinstance(event, Log):
            label = {"info": "", "warning": "warning: ", "error": "error: "}[event.level]
            self._line(f"{_prefix(event.database)}{label}{event.text}")


    def _index_progress(self, event: IndexProgress) -> None:
        now = self.clock()
        where = _prefix(event.database)
        printed = self._indexes.get(event.database)
        if printed is None:
            self._indexes[event.database] = (event.done, now)
            self._line(f"{where}  building {event.total} index(es) and constraint(s)")
            return
        done, at = printed
        if event.done > done and (event.done >= event.total or now - at >= INDEX_LINE_SECONDS):
            self._indexes[event.database] = (event.done, now)
            self._line(f"{where}  indexes and constraints: {event.done}/{event.total} built")
        elif self.tty and event.current and now - self._last_progress_line > 0.2:
            # What is building now, on the progress line that the next line overwrites.
            self._last_progress_line = now
            self.stream.write(f"\r\033[K  {event.done}/{event.total} built · {index_activity(event)}")
            self.stream.flush()
            self._progress_shown = True


def index_activity(event: IndexProgress) -> str:
    """``building orders_pkey (scanning table 42 %)``: what the restore is busy with."""
    text = f"building {event.current}" if event.current else "building"
    details = [(event.phase or "").removeprefix("building index: ")]
    if event.fraction is not None:
        details.append(f"{event.fraction * 100:.0f} %")
    if any(details):
        text += " (" + " ".join(d for d in details if d) + ")"
    if event.building > 1:
        text += f" and {event.building - 1} more"
    return text


def _prefix(database: str | None) -> str:
    return f"[{database}] " if database else ""


def estimate_table(estimate: Estimate) -> str:
    rows = [[db.name, human_bytes(db.bytes), human_seconds(db.seconds)] for db in estimate.databases]
    rows.append(["total", human_bytes(estimate.bytes), human_seconds(estimate.seconds)])
    source = "measured on this machine" if estimate.measured else "default until pgtide has measured a copy here"
    return (table(rows, ["Database", "Size", "Est. Time"])
            + f"\n(rate {human_bytes(estimate.bytes_per_second)}/s, {source})")


def print_json(data: Any) -> None:
    print(json.dumps(data, default=str), flush=True)
