"""The zero-gap copy: a slot's exported snapshot, and table data piped under it.

The replication slot and the snapshot are created by one command on a replication
connection, so the snapshot is *exactly* the slot's consistent point: every row committed
before it is in the copy, every change after it comes through the slot. The snapshot
lives as long as that connection stays open and idle, so :class:`ExportedSnapshot` keeps
it open for the whole copy.

Row data never passes through Python: each copy task is two ``psql`` processes joined by
an OS pipe (``COPY ... TO STDOUT`` under the snapshot on the source, ``COPY ... FROM
STDIN`` on the target), binary format where every column type supports it. Progress is
read from the target's ``pg_stat_progress_copy``.
"""

from __future__ import annotations

import math
import os
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from ..catalog.predicate import deparsed, session_statements
from ..catalog.scope import TableScope
from ..infra.db import connect
from ..infra.endpoint import Endpoint
from ..infra.errors import PgtideError
from ..infra.events import CancelToken, Emit, TableCopied, TableProgress
from ..infra.tools import ToolFailed, open_tool

#: Tables larger than this are split into primary-key ranges copied in parallel...
SPLIT_THRESHOLD_BYTES = 512 * 1024 * 1024
#: ...but only with cores to spare. One pipe already keeps two cores busy (the source
#: backend encoding, the target backend inserting), and every key range rescans the table:
#: measured on 2 cores (pgbench scale 100), four ranges took the data phase from 7.3 s to
#: 12.3 s. With more cores the ranges run side by side and win.
MIN_CORES_TO_SPLIT = 4
#: Failed copy tasks are retried this often while the snapshot is still alive.
RETRIES = 2
#: Below this, a table is relayed through the worker's own two connections: starting two
#: psql processes costs ~0.1 s, far more than relaying a few MiB through Python. Above it,
#: the psql pipe wins (C moves the bytes; a Python relay is ~1.4x slower on big tables).
PIPE_THRESHOLD_BYTES = 16 * 1024 * 1024

_INTEGER_TYPES = {"smallint", "integer", "bigint"}

# Long copies must not be cut by a server's statement or idle timeouts.
_SOURCE_SESSION = (
    # With row security on, a policy would silently drop rows from the copy; off, the
    # server refuses instead when the role may not bypass it (pg_dump does the same).
    "SET row_security = off",
    "SET statement_timeout = 0",
    "SET idle_in_transaction_session_timeout = 0",
    "SET lock_timeout = 0",
    # A filter is the server's deparsed text, printed under these settings (see catalog/predicate.py).
    *session_statements(),
)


class CopyFailed(PgtideError):
    exit_code = 1
    default_title = "Copy failed"


@dataclass(frozen=True)
class Snapshot:
    slot: str
    consistent_point: str
    name: str


@contextmanager
def exported_snapshot(source: Endpoint, slot: str, server_version_num: int) -> Iterator[Snapshot]:
    """Create ``slot`` with an exported snapshot; the snapshot dies when the block ends.

    The slot itself survives (the subscription will use it); dropping it on failure is the
    caller's job, because only the caller knows whether a subscription took it over.
    """
    # The walsender holding the snapshot is "idle in transaction" for the whole copy: a
    # server-side idle timeout would kill it, and with it the snapshot.
    timeouts = "-c idle_in_transaction_session_timeout=0 -c statement_timeout=0"
    if server_version_num >= 140000:
        timeouts += " -c idle_session_timeout=0"
    options = f"{source.params.get('options', '')} {timeouts}".strip()
    kwargs = source.connect_kwargs(replication="database", options=options)
    try:
        conn = psycopg.connect(**kwargs, autocommit=True, cursor_factory=psycopg.ClientCursor)
    except psycopg.OperationalError as exc:
        from ..infra.db import describe_connect_failure

        raise describe_connect_failure(source, exc) from None
    try:
        # PG15 changed the syntax; EXPORT_SNAPSHOT is the older spelling of the same thing.
        options = "(SNAPSHOT 'export')" if server_version_num >= 150000 else "EXPORT_SNAPSHOT"
        row = conn.execute(
            sql.SQL("CREATE_REPLICATION_SLOT {} LOGICAL pgoutput {}").format(sql.Identifier(slot), sql.SQL(options))
        ).fetchone()
        assert row is not None
        yield Snapshot(slot=row[0], consistent_point=row[1], name=row[2])
    finally:
        conn.close()


@dataclass(frozen=True)
class CopyTask:
    table: TableScope
    #: Extra range predicate for one slice of a split table (None: the whole table).
    range_predicate: str | None
    estimated_bytes: int
    binary: bool
    columns: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.table.display + (f" [{self.range_predicate}]" if self.range_predicate else "")

    def where(self) -> str | None:
        parts = [p for p in (self.table.where, self.range_predicate) if p]
        return " AND ".join(f"({p})" for p in parts) if parts else None

    def source_query(self) -> str:
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in self.columns)
        query = sql.SQL("SELECT {} FROM {}").format(cols, sql.Identifier(*self.table.info.qualified))
        where = self.where()
        if where:
            query = sql.SQL("{} WHERE {}").format(query, deparsed(where))
        fmt = sql.SQL(" (FORMAT binary)" if self.binary else "")
        return sql.SQL("COPY ({}) TO STDOUT{}").format(query, fmt).as_string()

    def target_query(self) -> str:
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in self.columns)
        fmt = sql.SQL(" (FORMAT binary)" if self.binary else "")
        return sql.SQL("COPY {} ({}) FROM STDIN{}").format(
            sql.Identifier(*self.table.info.qualified), cols, fmt
        ).as_string()

    def clear_target_query(self) -> str:
        """Undo a failed attempt before retrying it."""
        ident = sql.Identifier(*self.table.info.qualified)
        if self.range_predicate:
            return sql.SQL("DELETE FROM {} WHERE {}").format(ident, sql.SQL(self.range_predicate)).as_string()  # type: ignore[arg-type]
        return sql.SQL("TRUNCATE {}").format(ident).as_string()


@dataclass
class _TableTally:
    tasks: int
    done: int = 0
    rows: int = 0
    bytes_done: int = 0
    #: When the table's first slice began (tasks wait in a queue before that).
    started: float | None = None


def _binary_safe_columns(conn: psycopg.Connection[Any], tables: Sequence[TableScope]) -> dict[int, tuple[bool, tuple[str, ...]]]:
    """Per table oid: can it use binary COPY, and which columns to copy (no generated ones)."""
    oids = [t.info.oid for t in tables]
    rows = conn.execute(
        """
        SELECT a.attrelid, a.attname, t.typsend <> 0 AND t.typreceive <> 0, a.attgenerated <> ''
        FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
        WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attrelid, a.attnum
        """,
        [oids],
    ).fetchall()
    result: dict[int, tuple[bool, list[str]]] = {}
    for relid, name, binary_ok, generated in rows:
        binary, columns = result.setdefault(relid, (True, []))
        if not generated:
            columns.append(name)
        result[relid] = (binary and bool(binary_ok), columns)
    return {relid: (binary, tuple(columns)) for relid, (binary, columns) in result.items()}


def plan_tasks(
    source: Endpoint, snapshot: Snapshot, tables: Sequence[TableScope], *, split_bytes: int, jobs: int
) -> list[CopyTask]:
    """Copy tasks, largest first; big tables with an integer key split into key ranges."""
    data_tables = [t for t in tables if t.copies_rows and not t.info.is_partitioned]
    if not data_tables:
        return []
    tasks: list[CopyTask] = []
    with connect(source, autocommit=False) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot.name)))
        layout = _binary_safe_columns(conn, data_tables)
        for table in data_tables:
            binary, columns = layout.get(table.info.oid, (True, tuple(c.name for c in table.info.columns)))
            size = table.estimated_bytes
            key = table.info.primary_key
            key_column = table.info.column(key[0]) if len(key) == 1 else None
            key_type = key_column.type if key_column is not None else ""
            pieces = math.ceil(size / split_bytes) if split_bytes > 0 else 1
            if (os.cpu_count() or 1) < MIN_CORES_TO_SPLIT:
                pieces = 1
            if pieces > 1:
                # A multiple of the workers: three slices on two workers leave one running alone.
                pieces = math.ceil(pieces / jobs) * jobs
            if pieces > 1 and key_type in _INTEGER_TYPES:
                bounds = _split_ranges(conn, table, key[0], min(pieces, jobs * 4))
                if len(bounds) > 1:
                    share = size // len(bounds)
                    tasks.extend(CopyTask(table, predicate, share, binary, columns) for predicate in bounds)
                    continue
            tasks.append(CopyTask(table, None, size, binary, columns))
        conn.rollback()
    return sorted(tasks, key=lambda task: task.estimated_bytes, reverse=True)


def _split_ranges(conn: psycopg.Connection[Any], table: TableScope, column: str, pieces: int) -> list[str]:
    ident = sql.Identifier(column)
    query = sql.SQL("SELECT min({0}), max({0}) FROM {1}").format(ident, sql.Identifier(*table.info.qualified))
    low, high = conn.execute(query).fetchone()  # type: ignore[misc]
    if low is None or high is None or high - low < pieces:
        return []
    step = (high - low + 1) // pieces + 1
    name = ident.as_string()
    predicates = []
    for index in range(pieces):
        start = low + index * step
        if start > high:
            break
        lower = "" if index == 0 else f"{name} >= {start}"
        upper = "" if start + step > high else f"{name} < {start + step}"
        predicates.append(" AND ".join(p for p in (lower, upper) if p) or "true")
    return predicates


def _run_task(source: Endpoint, target: Endpoint, snapshot: Snapshot, task: CopyTask, cancel: CancelToken) -> int:
    """One table slice through a psql → psql pipe; returns the rows the target took."""
    source_args = ["-X", "-q", "-v", "ON_ERROR_STOP=1"]
    for statement in (
        *_SOURCE_SESSION,
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot.name)).as_string(),
        task.source_query(),
        "COMMIT",
    ):
        source_args += ["-c", statement]
    target_args = ["-X", "-v", "ON_ERROR_STOP=1", "-c", "SET synchronous_commit = off", "-c", task.target_query()]
    with ExitStack() as stack:
        producer = stack.enter_context(
            open_tool("psql", source_args, source, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        )
        consumer = stack.enter_context(
            open_tool("psql", target_args, target, stdin=producer.stdout, stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE)
        )
        assert producer.stdout is not None
        producer.stdout.close()  # the consumer owns the read end now
        while consumer.poll() is None:
            if cancel.wait(0.2):
                producer.terminate()
                consumer.terminate()
                cancel.check()
        out = consumer.stdout.read() if consumer.stdout else b""
        target_err = consumer.stderr.read() if consumer.stderr else b""
        producer.wait()
        source_err = producer.stderr.read() if producer.stderr else b""
        if producer.returncode != 0:
            raise ToolFailed("psql (source COPY)", producer.returncode, source.redact(source_err.decode(errors="replace")))
        if consumer.returncode != 0:
            raise ToolFailed("psql (target COPY)", consumer.returncode, target.redact(target_err.decode(errors="replace")))
    words = out.decode(errors="replace").split()
    return int(words[-1]) if len(words) >= 2 and words[-2] == "COPY" and words[-1].isdigit() else 0


class _WorkerConnections(threading.local):
    """Each copy worker's own pair of connections for small tables, opened on first use."""

    source: psycopg.Connection[Any] | None = None
    target: psycopg.Connection[Any] | None = None


def _relay_task(
    source: Endpoint, target: Endpoint, snapshot: Snapshot, task: CopyTask, conns: _WorkerConnections,
    opened: list[psycopg.Connection[Any]], lock: threading.Lock,
) -> int:
    if conns.source is None or conns.target is None:
        for conn in (conns.source, conns.target):
            if conn is not None:
                conn.close()
        conns.source = conns.target = None
        # Registered one by one: if the second connect fails, the first is still closed later.
        conns.source = connect(source, autocommit=False)
        with lock:
            opened.append(conns.source)
        conns.target = connect(target, autocommit=False)
        with lock:
            opened.append(conns.target)
        for statement in _SOURCE_SESSION:
            conns.source.execute(statement)
        conns.source.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conns.source.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot.name)))
        conns.target.execute("SET synchronous_commit = off")
    buffer = bytearray()
    try:
        with conns.source.cursor().copy(task.source_query()) as out, conns.target.cursor() as cursor:  # type: ignore[arg-type]
            with cursor.copy(task.target_query()) as into:  # type: ignore[arg-type]
                for chunk in out:
                    buffer += chunk
                    if len(buffer) >= 1 << 20:
                        into.write(buffer)
                        buffer.clear()
                if buffer:
                    into.write(buffer)
            rows = cursor.rowcount
        conns.target.commit()
        return max(rows, 0)
    except psycopg.Error as exc:
        # The snapshot transaction may be aborted now: drop this worker's connections so the
        # retry starts from a clean pair (the snapshot itself is still alive).
        for conn in (conns.source, conns.target):
            if conn is not None:
                conn.close()
        conns.source = conns.target = None
        raise ToolFailed("copy", 1, target.redact(source.redact(str(exc)))) from None


def _clear(target: Endpoint, task: CopyTask) -> None:
    with connect(target) as conn:
        conn.execute(task.clear_target_query())  # type: ignore[arg-type]


def copy_tables(
    source: Endpoint,
    target: Endpoint,
    database: str,
    snapshot: Snapshot,
    tables: Sequence[TableScope],
    *,
    jobs: int,
    emit: Emit,
    cancel: CancelToken,
    split_bytes: int | None = None,
    skip: frozenset[tuple[str, str]] = frozenset(),
    on_table_done: Any = None,
) -> tuple[int, float]:
    """Copy every table's rows under ``snapshot``; returns (bytes moved, seconds)."""
    split = SPLIT_THRESHOLD_BYTES if split_bytes is None else split_bytes
    tasks = [t for t in plan_tasks(source, snapshot, tables, split_bytes=split, jobs=jobs)
             if t.table.info.qualified not in skip]
    run = _CopyRun(source, target, snapshot, cancel, _tallies(tasks))
    by_oid: dict[tuple[str, str], TableScope] = {t.table.info.qualified: t.table for t in tasks}
    started = time.monotonic()
    total_bytes = sum(task.estimated_bytes for task in tasks)
    try:
        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="pgtide-copy") as pool, \
                _progress_reports(target, database, by_oid, run, emit):
            pending: dict[Future[int], CopyTask] = {pool.submit(run.attempt, task): task for task in tasks}
            _await_tasks(pending, run, database, emit, on_table_done, started)
    finally:
        # Only now: the pool has waited for every worker, so none is inside a COPY on these.
        run.close()
    return total_bytes, time.monotonic() - started


def _tallies(tasks: Sequence[CopyTask]) -> dict[tuple[str, str], _TableTally]:
    """One tally per table, counting its slices: the table is done when all of them are."""
    tallies: dict[tuple[str, str], _TableTally] = {}
    for task in tasks:
        tally = tallies.setdefault(task.table.info.qualified, _TableTally(0))
        tally.tasks += 1
    return tallies


@dataclass
class _CopyRun:
    """What the workers of one copy_tables call share; ``lock`` guards the tallies and ``opened``."""

    source: Endpoint
    target: Endpoint
    snapshot: Snapshot
    cancel: CancelToken
    tallies: dict[tuple[str, str], _TableTally]
    lock: threading.Lock = field(default_factory=threading.Lock)
    conns: _WorkerConnections = field(default_factory=_WorkerConnections)
    #: Every worker's relay connections, closed once the pool is done with them.
    opened: list[psycopg.Connection[Any]] = field(default_factory=list)

    def attempt(self, task: CopyTask) -> int:
        """Copy one slice, retrying a failed attempt after undoing what it wrote."""
        with self.lock:
            tally = self.tallies[task.table.info.qualified]
            if tally.started is None:
                tally.started = time.monotonic()
        last: Exception | None = None
        for tries in range(RETRIES + 1):
            self.cancel.check()
            try:
                if tries:
                    _clear(self.target, task)
                if task.estimated_bytes < PIPE_THRESHOLD_BYTES:
                    return _relay_task(self.source, self.target, self.snapshot, task, self.conns, self.opened,
                                       self.lock)
                return _run_task(self.source, self.target, self.snapshot, task, self.cancel)
            except ToolFailed as exc:
                last = exc
        assert last is not None
        raise last

    def record(self, task: CopyTask, rows: int) -> _TableTally | None:
        """Count a finished slice; returns the table's tally when that was its last slice."""
        with self.lock:
            tally = self.tallies[task.table.info.qualified]
            tally.done += 1
            tally.rows += rows
            tally.bytes_done += task.estimated_bytes
            return tally if tally.done == tally.tasks else None

    def close(self) -> None:
        for conn in self.opened:
            conn.close()


def _await_tasks(pending: dict[Future[int], CopyTask], run: _CopyRun, database: str, emit: Emit,
                 on_table_done: Any, started: float) -> None:
    """Announce each table as its last slice lands; on the first failure stop the rest."""
    try:
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                task = pending.pop(future)
                rows = future.result()  # raises the task's error: the caller tears down
                tally = run.record(task, rows)
                if tally is not None:
                    key = task.table.info.qualified
                    seconds = time.monotonic() - (tally.started or started)
                    emit(TableCopied(database, key[0], key[1], tally.rows, task.table.estimated_bytes, seconds))
                    if on_table_done is not None:
                        on_table_done(task.table, tally.rows)
    except BaseException:
        run.cancel.cancel()  # stop the other workers' pipes promptly
        for future in pending:
            future.cancel()
        raise


@contextmanager
def _progress_reports(target: Endpoint, database: str, tables: dict[tuple[str, str], TableScope], run: _CopyRun,
                      emit: Emit) -> Iterator[None]:
    """The progress reporter's thread, running while the block does."""
    stop = threading.Event()
    thread = threading.Thread(
        target=_report_progress, name="pgtide-copy-progress",
        args=(target, database, tables, run.tallies, run.lock, emit, stop), daemon=True,
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _report_progress(
    target: Endpoint,
    database: str,
    tables: dict[tuple[str, str], TableScope],
    tallies: dict[tuple[str, str], _TableTally],
    lock: threading.Lock,
    emit: Emit,
    stop: threading.Event,
) -> None:
    """Once a second: bytes and rows the target's COPYs have taken so far, per table."""
    try:
        conn = connect(target, pooled=False)  # held for the whole copy
    except PgtideError:
        return
    with conn:
        while not stop.wait(1.0):
            try:
                rows = conn.execute(
                    "SELECT n.nspname, c.relname, sum(p.bytes_processed)::int8, sum(p.tuples_processed)::int8 "
                    "FROM pg_stat_progress_copy p JOIN pg_class c ON c.oid = p.relid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE p.datname = current_database() GROUP BY 1, 2"
                ).fetchall()
            except psycopg.Error:
                return
            for schema, name, processed, tuples in rows:
                table = tables.get((schema, name))
                if table is None:
                    continue
                with lock:
                    tally = tallies[(schema, name)]
                    done = tally.bytes_done + int(processed or 0)
                    rows_done = tally.rows + int(tuples or 0)
                emit(TableProgress(database, schema, name, min(done, table.estimated_bytes or done),
                                   rows_done, table.estimated_bytes))
