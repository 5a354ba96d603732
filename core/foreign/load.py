"""The copy: source tables into PostgreSQL with COPY, in parallel, resumable per table.

Each table is read under its own snapshot (one per table, so tables copy in parallel: MySQL
cannot share one consistent snapshot between sessions), and the position of the change log
at that snapshot is recorded with it. Change capture later starts at the earliest such
position and applies every change as an upsert or delete by key, so a change a table's copy
already holds is applied again harmlessly and nothing after it is missed (apply.py).

A crash leaves a table either recorded as copied or not; a rerun copies the ones that are
not again, from an empty table, and keeps the others.
"""

from __future__ import annotations

import datetime as dt
import logging
import operator
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from ..infra.db import connect
from ..infra.endpoint import Endpoint
from ..infra.errors import InputError, MigrationFailed
from ..infra.events import CancelToken, Emit, Log, PhaseFinished, PhaseStarted, TableCopied, TableProgress, discard
from ..jobs.store import JobStore
from .layout import TargetTable
from .plan import ForeignPlan
from .source import SourceAdapter
from .typed import CastError

log = logging.getLogger("pgtide.foreign")

BATCH = 5000
#: How often per table a progress event goes out, at most.
PROGRESS_EVERY = 0.5


@dataclass
class TableResult:
    name: str
    rows: int
    seconds: float
    position: str | None
    skipped: bool = False


def check_casts(target: Endpoint, casts: dict[str, str]) -> dict[str, str]:
    """Each override as the target server prints its type (format_type), so the DDL holds the
    server's text, never the user's; InputError naming the cast the server does not know."""
    if not casts:
        return {}
    checked: dict[str, str] = {}
    with connect(target) as conn:
        for key, typed in casts.items():
            match = re.fullmatch(r"\s*(.+?)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?\s*(\[\])?\s*", typed)
            if not match:
                raise InputError(f"cast for {key}: {typed!r} is not a type name", 'Write e.g. "text" or "numeric(12,2)".')
            base, precision, scale, array = match.groups()
            try:
                row = conn.execute("SELECT format_type(%s::regtype, NULL)", (base,)).fetchone()
            except psycopg.Error as exc:
                raise InputError(f"cast for {key}: the target does not know the type {base!r} "
                                 f"({exc.diag.message_primary or type(exc).__name__})",
                                 "Use a PostgreSQL type name the target has, e.g. text, bytea, jsonb, "
                                 "numeric(12,2), timestamptz, interval.", title="Unknown type") from None
            assert row is not None
            text = str(row[0])
            if precision:
                text += f"({int(precision)}" + (f",{int(scale)})" if scale else ")")
            checked[key] = text + (array or "")
    return checked


def ensure_database(target: Endpoint, emit: Emit) -> None:
    """Create the target database when it does not exist yet (it is named in the target URL)."""
    admin = target.with_dbname("postgres")
    with connect(admin) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target.dbname,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target.dbname)))
            emit(Log("info", f"created the target database {target.dbname!r}", target.dbname))


def existing_tables(target: Endpoint, schema: str) -> set[str]:
    with connect(target) as conn:
        return {r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p')", (schema,))}


def create_tables(target: Endpoint, tables: list[TargetTable], *, replace: set[str], emit: Emit) -> None:
    """Create the tables that are not there (and drop first those in ``replace``), in one transaction."""
    with connect(target, autocommit=False, pooled=False) as conn:
        schema = tables[0].schema if tables else "public"
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        present = {r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p')", (schema,))}
        for table in tables:
            if table.name in replace and table.name in present:
                conn.execute(sql.SQL("DROP TABLE {} CASCADE").format(table.ident))
                emit(Log("warning", f"dropped the existing target table {table.name!r}", table.name))
                present.discard(table.name)
            if table.name not in present:
                for statement in table.create_statements():
                    conn.execute(statement)
        conn.commit()


#: Target types whose values the binary COPY can send from what the converters give, by the
#: type's text (the rules' spelling, or format_type's for an override) → the type psycopg
#: dumps them as. A table with any other column type (real: float4 in binary rounds from the
#: double, not from the decimal text; time, interval, jsonb, enums, arrays, bit strings,
#: anything else an override names) is sent as text.
_BINARY_TYPES = {"smallint": "int2", "integer": "int4", "bigint": "int8", "double precision": "float8",
                 "numeric": "numeric", "text": "text", "character varying": "varchar", "boolean": "bool",
                 "bytea": "bytea", "date": "date",
                 # Naive datetimes meaning UTC, in the timestamp encoding: microseconds since
                 # 2000-01-01, which timestamptz_recv reads as UTC — the same instant the aware
                 # value would give, without attaching a zone to each (typed.convert_columns).
                 "timestamp with time zone": "timestamp"}
#: What binary costs pgtide per value against text, in µs (psycopg 3.3's C dumpers, measured
#: here): its numeric dumper is slow (Decimal.as_tuple), its timestamp, date and float8 ones
#: much faster than formatting text; the rest about even. Binary also spares the server its
#: text parsing (a 10-column table: 1.7 µs a row less server CPU), so an even table goes binary.
_BINARY_COST = {"numeric": 1.2, "timestamp": -1.0, "date": -0.6, "float8": -0.7}
_TZINFO = operator.attrgetter("tzinfo")
#: What int2/int4 hold: psycopg's binary dumpers for them wrap a larger int around silently.
_INT_RANGES = {"int2": (-(2**15), 2**15 - 1), "int4": (-(2**31), 2**31 - 1)}


def _binary_type(pg_type: str) -> str | None:
    text = pg_type.lower()
    if text in _BINARY_TYPES:
        return _BINARY_TYPES[text]
    if re.fullmatch(r"numeric\(\d+(,\d+)?\)", text):
        return "numeric"
    if re.fullmatch(r"(varchar|character varying)\(\d+\)", text):
        return "varchar"
    return None


@dataclass(frozen=True)
class _Wire:
    """How a table's converted columns go into its COPY."""

    binary: bool
    #: Binary only: the type psycopg dumps each column as.
    types: tuple[str, ...] = ()
    #: Columns whose values may be naive datetimes meaning UTC (a typed timestamptz column).
    timestamptz: tuple[int, ...] = ()

    @classmethod
    def for_table(cls, table: TargetTable) -> _Wire:
        if table.layout == "jsonb":
            return cls(False)  # measured: binary jsonb (a version byte and the text) gains nothing
        zoned = tuple(i for i, c in enumerate(table.casts) if c.pg_type.lower() == "timestamp with time zone")
        types = [None if c.enum_values else _binary_type(c.pg_type) for c in table.casts]
        if types and all(types) and sum(_BINARY_COST.get(t or "", -0.1) for t in types) <= 0:
            return cls(True, tuple(t for t in types if t), zoned)
        return cls(False, (), zoned)

    def statement(self, table: TargetTable) -> sql.Composed:
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in table.columns)
        return sql.SQL("COPY {} ({}) FROM STDIN" + (" (FORMAT BINARY)" if self.binary else "")).format(
            table.ident, columns)

    def rows(self, table: TargetTable, columns: list[Sequence[Any]], count: int) -> Iterable[tuple[Any, ...]]:
        for i in self.timestamptz:
            values = columns[i]
            if self.binary:
                if any(map(_TZINFO, filter(None, values))):
                    columns[i] = [v if v is None or v.tzinfo is None else v.astimezone(dt.UTC).replace(tzinfo=None)
                                  for v in values]
            else:
                # Text: say UTC in the value itself, whatever the session's TimeZone.
                columns[i] = [v.isoformat() + "+00:00" if v is not None and v.tzinfo is None else v for v in values]
        for i, kind in enumerate(self.types):
            if kind in _INT_RANGES:
                self._check_range(table, i, columns[i], *_INT_RANGES[kind])
        if not columns:
            return [()] * count
        return zip(*columns, strict=True)

    @staticmethod
    def _check_range(table: TargetTable, i: int, values: Sequence[Any], low: int, high: int) -> None:
        present = values if None not in values else [v for v in values if v is not None]
        if present and (min(present) < low or max(present) > high):
            bad = next(v for v in present if not low <= v <= high)
            cast = table.casts[i]
            raise CastError(
                f"{table.name}.{cast.column}: {str(bad)[:60]!r} does not fit {cast.pg_type} (out of range)",
                f'Override the column\'s cast in the profile ([casts] "{table.name}.{cast.column}" = "bigint"), '
                "or fix the value on the source, or use --layout jsonb.")


def copy_table(plan: ForeignPlan, adapter: SourceAdapter, table: TargetTable, *, emit: Emit,
               cancel: CancelToken | None) -> TableResult:
    """Empty the target table and fill it from one snapshot of the source, in one transaction."""
    started = time.monotonic()
    database = plan.database
    where = plan.filters.get(table.name)
    total_bytes = table.source.size_bytes
    wire = _Wire.for_table(table)
    with adapter.snapshot() as snapshot, connect(plan.target, autocommit=False, pooled=False) as conn:
        position = snapshot.position
        expected = max(table.source.rows, 1)
        conn.execute(sql.SQL("TRUNCATE {}").format(table.ident))
        done = 0
        last = 0.0
        with conn.cursor().copy(wire.statement(table)) as copy:
            if wire.binary:
                copy.set_types(list(wire.types))
            for batch in snapshot.rows(table.source, where=where, batch=BATCH):
                if cancel is not None:
                    cancel.check()
                columns = table.convert_columns(batch, done + 1)
                for row in wire.rows(table, columns, len(batch)):
                    copy.write_row(row)
                done += len(batch)
                now = time.monotonic()
                if now - last >= PROGRESS_EVERY:
                    last = now
                    emit(TableProgress(database, plan.target_schema, table.name,
                                       min(total_bytes, int(total_bytes * done / expected)), done, total_bytes))
        conn.commit()
    seconds = time.monotonic() - started
    emit(TableCopied(database, plan.target_schema, table.name, done, total_bytes, seconds))
    return TableResult(table.name, done, seconds, position)


def treatment(plan: ForeignPlan, table: TargetTable) -> dict[str, Any]:
    """What a table's copy depends on besides the source rows: a rerun keeps a copied table
    only when this is unchanged (a filter removed since must not leave the filtered rows)."""
    prefix = table.name + "."
    return {"layout": plan.layout, "schema": plan.target_schema, "mode": plan.mode(table.name),
            "where": plan.filters.get(table.name),
            "casts": {key: value for key, value in sorted(plan.casts.items()) if key.startswith(prefix)}}


def copy_all(plan: ForeignPlan, open_adapter: Callable[[], SourceAdapter], tables: list[TargetTable], store: JobStore,
             *, emit: Emit = discard, cancel: CancelToken | None = None) -> list[TableResult]:
    """Copy ``tables`` on ``plan.jobs`` threads (each with its own source connection), largest
    first; the ones recorded as copied are kept. The first failure stops the others."""
    database = plan.database
    recorded = store.database(database).get("tables", {})
    results: list[TableResult] = []
    todo: list[TargetTable] = []
    for table in tables:
        entry = recorded.get(table.name, {})
        if plan.resume and entry.get("state") == "copied":
            results.append(TableResult(table.name, int(entry.get("rows", 0)), 0.0, entry.get("position"), True))
            emit(Log("info", f"{table.name}: copied by an earlier run, kept", database))
        elif plan.mode(table.name) == "schema_only":
            store.table_update(database, table.name, state="copied", rows=0, position=None, taken_at=time.time(),
                               treatment=treatment(plan, table))
            results.append(TableResult(table.name, 0, 0.0, None))
        else:
            todo.append(table)
    todo.sort(key=lambda t: t.source.size_bytes, reverse=True)
    queue = list(todo)
    lock = threading.Lock()
    local = threading.local()
    adapters: list[SourceAdapter] = []
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            with lock:
                if not queue:
                    return
                table = queue.pop(0)
            adapter = getattr(local, "adapter", None)
            if adapter is None:
                adapter = local.adapter = open_adapter()
                with lock:
                    adapters.append(adapter)
            store.table_update(database, table.name, state="copying", rows=0)
            taken_at = time.time()
            try:
                result = copy_table(plan, adapter, table, emit=emit, cancel=cancel)
            except BaseException:
                stop.set()
                raise
            store.table_update(database, table.name, state="copied", rows=result.rows, position=result.position,
                               treatment=treatment(plan, table),
                               taken_at=taken_at, seconds=round(result.seconds, 3))
            with lock:
                results.append(result)

    emit(PhaseStarted(database, "copy"))
    started = time.monotonic()
    threads = max(1, min(plan.jobs, len(todo)))
    try:
        with ThreadPoolExecutor(threads, thread_name_prefix="pgtide-copy") as pool:
            futures = [pool.submit(worker) for _ in range(threads)]
            wait(futures, return_when=FIRST_EXCEPTION)
            for future in futures:
                error = future.exception()
                if error is not None:
                    raise error
    finally:
        for adapter in adapters:
            try:
                adapter.close()
            except Exception as exc:  # closing a broken connection must not hide the copy's own error
                log.debug("closing a source connection failed: %s", type(exc).__name__)
    emit(PhaseFinished(database, "copy", time.monotonic() - started))
    return results


def build_keys(plan: ForeignPlan, tables: list[TargetTable], *, emit: Emit = discard) -> None:
    """Primary keys, indexes, then foreign keys and identity sequences, after the data."""
    database = plan.database
    emit(PhaseStarted(database, "indexes"))
    started = time.monotonic()
    names = {t.name for t in tables}
    with connect(plan.target, autocommit=True, pooled=False) as conn:
        for table in tables:
            for statement in table.key_statements():
                try:
                    _run_once(conn, statement)
                except (psycopg.errors.UniqueViolation, psycopg.errors.NotNullViolation) as exc:
                    # SQLite lets a non-integer primary key hold NULLs and MySQL's collations call
                    # some distinct strings equal: the rows are copied, the key cannot be made.
                    raise MigrationFailed(
                        f"{table.name}: its key or unique index cannot be built on the target: "
                        f"{exc.diag.message_primary or type(exc).__name__}"
                        + (f" ({exc.diag.message_detail})" if exc.diag.message_detail else ""),
                        "Fix those rows on the source and run init again with --no-resume, leave the table "
                        "out (--exclude-tables), or use --layout jsonb.",
                        title="Key cannot be built") from None
        for table in tables:
            for statement in table.foreign_key_statements(names):
                try:
                    _run_once(conn, statement)
                except psycopg.errors.ForeignKeyViolation as exc:
                    # A row filter (or a source that never enforced it) left rows without their
                    # parent: the rows are what the selection asked for, the constraint cannot hold.
                    emit(Log("warning", f"{table.name}: a foreign key was not created: "
                                        f"{exc.diag.message_detail or exc.diag.message_primary}", database))
        for table in tables:
            for cast in table.casts:
                if cast.identity:
                    conn.execute(sql.SQL(
                        "SELECT setval(pg_get_serial_sequence(%s, %s), "
                        "greatest(coalesce((SELECT max({}) FROM {}), 0), 1), "
                        "coalesce((SELECT max({}) FROM {}), 0) > 0)").format(
                        sql.Identifier(cast.column), table.ident, sql.Identifier(cast.column), table.ident),
                        (f"{_quoted(plan.target_schema)}.{_quoted(table.name)}", cast.column))
    emit(PhaseFinished(database, "indexes", time.monotonic() - started))


def _quoted(name: str) -> str:
    """A name as pg_get_serial_sequence's text argument wants it (it parses a qualified name)."""
    return '"' + name.replace('"', '""') + '"'


def _run_once(conn: psycopg.Connection[Any], statement: sql.Composed) -> None:
    """Run a CREATE INDEX / ADD CONSTRAINT unless a rerun already made that object."""
    try:
        conn.execute(statement)
    except (psycopg.errors.DuplicateObject, psycopg.errors.DuplicateTable, psycopg.errors.InvalidTableDefinition):
        pass  # made by an earlier run that stopped after it: the object is there
