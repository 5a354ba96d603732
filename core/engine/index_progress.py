"""Progress of the post-data restore: indexes and constraints built so far, and the one building now.

pg_restore says nothing until it ends, and on a big database the post-data section is where
the minutes go. While it runs, a thread of its own reads the target every half second, one
query on one connection of its own:

- how many objects the section creates exist yet: user indexes, and table-level foreign key
  and check constraints, counted against what the target held before the restore began
  (a primary key or unique constraint is an index; pg_restore commits each statement, so an
  object is visible exactly when it is finished);
- what pg_restore's sessions are running (``pg_stat_activity``), with
  ``pg_stat_progress_create_index`` for an index build's phase and block counts.

The total is counted from the schema dump's table of contents (``pg_restore --list``). The
progress is a view, never a reason to fail: any error stops the polling (logged at debug)
and the restore goes on exactly as it would without it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg

from ..infra.db import connect
from ..infra.endpoint import Endpoint
from ..infra.events import Emit, IndexProgress
from ..infra.tools import run_tool

log = logging.getLogger("pgtide.indexes")

POLL_SECONDS = 0.5

#: TOC kinds of the post-data section that build something the progress counts ("INDEX ATTACH"
#: and "TABLE ATTACH" only link a partition's index or table to its parent's: nothing to wait for).
COUNTED_KINDS = ("INDEX", "CONSTRAINT", "FK CONSTRAINT", "CHECK CONSTRAINT")
_TOC_LINE = re.compile(r"^\d+;\s+\d+\s+\d+\s+(?P<rest>.*)$")

# One round trip: the counts, and one row per pg_restore statement running (or none).
# Parallel index workers are 'parallel worker' backends with the leader's query: left out.
PROGRESS_SQL = """
WITH counts AS (
    SELECT (SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema') AS indexes,
           (SELECT count(*) FROM pg_constraint
            WHERE contype IN ('f', 'c') AND conparentid = 0 AND conislocal) AS constraints
)
SELECT counts.indexes, counts.constraints, running.query, running.phase, running.blocks_done,
       running.blocks_total, running.tuples_done, running.tuples_total
FROM counts LEFT JOIN LATERAL (
    SELECT a.query, p.phase, coalesce(p.blocks_done, 0) AS blocks_done,
           coalesce(p.blocks_total, 0) AS blocks_total, coalesce(p.tuples_done, 0) AS tuples_done,
           coalesce(p.tuples_total, 0) AS tuples_total
    FROM pg_stat_activity a LEFT JOIN pg_stat_progress_create_index p ON p.pid = a.pid
    WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() AND a.state = 'active'
      AND a.backend_type = 'client backend' AND a.usename = current_user
      AND (p.pid IS NOT NULL OR a.query ~* '^\\s*(CREATE\\s+(UNIQUE\\s+)?INDEX|ALTER\\s+TABLE)\\s')
    ORDER BY coalesce(p.blocks_total, 0) + coalesce(p.tuples_total, 0) DESC, a.pid
) running ON true
"""

_IDENTIFIER = r'("(?:[^"]|"")+"|[^\s"(;]+)'
_BUILT_NAME = re.compile(
    r"\bCREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?" + _IDENTIFIER
    + r"|\bADD\s+CONSTRAINT\s+" + _IDENTIFIER, re.IGNORECASE)


def count_post_data(schema_file: Path, target: Endpoint) -> int:
    """How many indexes and constraints the post-data section of ``schema_file`` creates.

    ``target`` only fills the tool's connection argument: ``--list`` reads the file alone.
    """
    out = run_tool("pg_restore", ["--list", "--section=post-data", str(schema_file)], target)
    return count_toc(out.decode("utf-8", errors="replace"))


def count_toc(listing: str) -> int:
    """The counted entries of a ``pg_restore --list`` listing (comment lines start with ``;``)."""
    total = 0
    for line in listing.splitlines():
        match = _TOC_LINE.match(line.strip())
        if match is None:
            continue
        rest = match.group("rest")
        # Longest kind first: "INDEX ATTACH ..." must not count as "INDEX".
        kind = next((k for k in ("INDEX ATTACH", "TABLE ATTACH", *COUNTED_KINDS) if rest.startswith(k + " ")), None)
        if kind in COUNTED_KINDS:
            total += 1
    return total


def built_name(query: str) -> str | None:
    """The index or constraint a pg_restore statement creates, unquoted (None if not one)."""
    match = _BUILT_NAME.search(query)
    if match is None:
        return None
    name = match.group(1) or match.group(2)
    if name.startswith('"'):
        return name[1:-1].replace('""', '"')
    return name


def _phase_of(query: str, phase: str | None) -> str | None:
    if phase:
        return str(phase)
    if re.search(r"\bFOREIGN\s+KEY\b", query, re.IGNORECASE):
        return "checking the foreign key"
    return None


class IndexProgressPoller:
    """Polls one target database on a thread of its own until :meth:`stop`."""

    def __init__(self, target: Endpoint, database: str, total: int, emit: Emit, *,
                 interval: float = POLL_SECONDS) -> None:
        self.target = target
        self.database = database
        self.total = total
        self.emit = emit
        self.interval = interval
        self._stop = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None
        self._thread: threading.Thread | None = None
        self._baseline = 0
        self._last: IndexProgress | None = None
        #: Polls that ran (what the tests count).
        self.polls = 0

    def start(self) -> None:
        """Open the connection and read the baseline here, before the restore creates anything."""
        try:
            # Its own session, never the pool's: it lives on another thread for the whole phase.
            self._conn = connect(self.target, pooled=False)
            # A stuck catalog read must not keep the thread (and its connection) past the phase.
            self._conn.execute("SET statement_timeout = '5s'")
            self._baseline = self._built(self._read())
        except Exception as exc:  # the progress is a view: the restore goes on without it
            log.debug("%s: no index progress (%s)", self.database, self.target.redact(str(exc)))
            self._close()
            return
        self._send(IndexProgress(self.database, 0, self.total))
        self._thread = threading.Thread(target=self._run, name=f"pgtide-index-progress-{self.database}",
                                        daemon=True)
        self._thread.start()

    def stop(self, *, finished: bool) -> None:
        """End the polling; when the restore succeeded, report every object built."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=self.interval + 1.0)
            if thread.is_alive() and self._conn is not None:
                # In a slow poll: cancel it rather than wait out its statement timeout.
                try:
                    self._conn.cancel_safe()
                except Exception as exc:
                    log.debug("%s: cancelling the index progress poll: %s", self.database, exc)
                thread.join(timeout=5.0)
        self._close()
        if finished and self._last is not None:
            # pg_restore --exit-on-error returned 0: the whole section is in, whatever the
            # catalog counts made of it (a partitioned index also builds its partitions').
            self._send(IndexProgress(self.database, self.total, self.total))

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:
                log.debug("%s: closing the index progress connection: %s", self.database, exc)

    def _read(self) -> list[tuple[Any, ...]]:
        assert self._conn is not None
        self.polls += 1
        return self._conn.execute(PROGRESS_SQL).fetchall()

    @staticmethod
    def _built(rows: list[tuple[Any, ...]]) -> int:
        return int(rows[0][0]) + int(rows[0][1]) if rows else 0

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                self._poll()
        except Exception as exc:
            log.debug("%s: index progress stopped (%s)", self.database, self.target.redact(str(exc)))

    def _poll(self) -> None:
        rows = self._read()
        done = max(0, min(self.total, self._built(rows) - self._baseline))
        running = [row for row in rows if row[2] is not None]
        event = IndexProgress(self.database, done, self.total, building=len(running))
        if running:
            query, phase, blocks_done, blocks_total, tuples_done, tuples_total = running[0][2:8]
            event = IndexProgress(self.database, done, self.total, current=built_name(str(query)),
                                  phase=_phase_of(str(query), phase), blocks_done=int(blocks_done),
                                  blocks_total=int(blocks_total), tuples_done=int(tuples_done),
                                  tuples_total=int(tuples_total), building=len(running))
        self._send(event)

    def _send(self, event: IndexProgress) -> None:
        last = self._last
        # Only what changed: an idle phase (a long FK check) sends nothing every half second.
        if last is not None and replace(event, at=last.at) == last:
            return
        self._last = event
        self.emit(event)


@contextmanager
def watch_post_data(target: Endpoint, database: str, schema_file: Path, emit: Emit) -> Iterator[None]:
    """Report the post-data restore run inside this block as :class:`IndexProgress` events.

    Nothing is reported when the section builds nothing or its size cannot be read; the thread
    and its connection are gone when the block is left, however it is left.
    """
    poller: IndexProgressPoller | None = None
    try:
        total = count_post_data(schema_file, target)
    except Exception as exc:
        log.debug("%s: cannot count the post-data objects (%s)", database, target.redact(str(exc)))
        total = 0
    if total:
        poller = IndexProgressPoller(target, database, total, emit)
        poller.start()
    finished = False
    try:
        yield
        finished = True
    finally:
        if poller is not None:
            poller.stop(finished=finished)
