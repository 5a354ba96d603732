"""The driver: a run over databases and tables, jobs in parallel, cancel; and the entry points
verify_plan / verify_scope.
"""

from __future__ import annotations

import heapq
import logging
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from ..catalog.predicate import pin_quoting
from ..catalog.scope import Scope, TableScope, build_scope
from ..infra.db import connect
from ..infra.endpoint import Endpoint
from ..infra.errors import InputError
from ..infra.events import CancelToken
from ..model.plan import Plan
from ..model.selection import (
    TableRef,
    UnresolvedName,
    parse_table_pattern,
    quote_ident,
)
from ..replication.naming import ReplicationNames, replication_names
from .buckets import _NO_ROWS, _differing
from .connections import _Pair
from .events import (
    EventCallback,
    TableStarted,
    TableVerified,
    VerifyCancelled,
    VerifyEvent,
    _check,
)
from .live import LiveReplication, _Waiter
from .merge import (
    DifferenceKind,
    kind_of,
)
from .results import RowDifference, TableResult, VerifyOptions, VerifyReport
from .shapes import _read_relations, _Relation, _Shape, _shape, _table_sql
from .table import _KIND_ORDER, _key_bounds, _key_order, _TableVerifier

log = logging.getLogger("pgtide.verify")


#: Once replication failed to catch up in a database, later tables wait this long at most.
_STUCK_TIMEOUT = 3.0


# -- the run -----------------------------------------------------------------------------------------


@dataclass
class _DatabaseRun:
    name: str
    source: Endpoint
    target: Endpoint
    tables: list[TableScope]
    live: LiveReplication | None
    #: Row filters as the publication uses them (they win over the scope's).
    filters: dict[tuple[str, str], str] = field(default_factory=dict)
    #: Partitioned tables (at any level) whose partitions are verified in this run themselves.
    covered_parents: set[tuple[str, str]] = field(default_factory=set)
    #: A wait already timed out in this database: later tables wait briefly only.
    stuck: bool = False


class Verifier:
    """Runs a verification. Cancelling its token (:meth:`cancel`, or ``cancel.cancel()`` from any
    thread) stops it promptly with :class:`VerifyCancelled`, a :class:`Cancelled`."""

    def __init__(self, options: VerifyOptions | None = None, on_event: EventCallback | None = None, *,
                 cancel: CancelToken | None = None) -> None:
        self.options = options or VerifyOptions()
        self._on_event = on_event
        self._event_lock = threading.Lock()
        self._cancel = cancel or CancelToken()
        self._pairs: list[_Pair] = []
        self._pairs_lock = threading.Lock()
        self._counter = 0
        self._total = 0

    @property
    def token(self) -> CancelToken:
        return self._cancel

    def cancel(self) -> None:
        self._cancel.cancel()
        self._interrupt()

    def _interrupt(self) -> None:
        with self._pairs_lock:
            for pair in self._pairs:
                pair.interrupt()

    def _watch(self, finished: threading.Event) -> None:
        """A token cancelled elsewhere only sets a flag: stop the queries running on its behalf."""
        while not finished.is_set():
            if self._cancel.wait(0.1):
                if not finished.is_set():
                    self._interrupt()
                return

    def _emit(self, event: VerifyEvent) -> None:
        if self._on_event is not None:
            with self._event_lock:
                self._on_event(event)

    def run(self, runs: Sequence[_DatabaseRun]) -> VerifyReport:
        started = time.monotonic()
        self._total = sum(len(run.tables) for run in runs)
        results: list[TableResult] = []
        finished = threading.Event()
        threading.Thread(target=self._watch, args=(finished,), name="pgtide-verify-cancel", daemon=True).start()
        try:
            for run in runs:
                results.extend(self._run_database(run))
        except psycopg.OperationalError:
            if self._cancel.cancelled:  # a query stopped on our behalf, outside any one table
                raise VerifyCancelled() from None
            raise
        finally:
            finished.set()
        return VerifyReport(
            tables=tuple(results),
            seconds=time.monotonic() - started,
            live_databases=tuple(run.name for run in runs if run.live is not None),
        )

    def _new_pair(self, run: _DatabaseRun) -> _Pair:
        _check(self._cancel)
        pair = _Pair(run.source, run.target, self._cancel)
        with self._pairs_lock:
            self._pairs.append(pair)
        return pair

    def _release(self, pair: _Pair) -> None:
        with self._pairs_lock:
            if pair in self._pairs:
                self._pairs.remove(pair)
        pair.close()

    def _run_database(self, run: _DatabaseRun) -> list[TableResult]:
        if not run.tables:
            return []
        pair = self._new_pair(run)
        try:
            source_rel = _read_relations(pair.source, run.tables)
            target_rel = _read_relations(pair.target, run.tables)
            versions = (pair.source.info.server_version, pair.target.info.server_version)
            block = int(pair.source.execute("SHOW wal_block_size").fetchone()[0])  # type: ignore[index]
        except BaseException:
            self._release(pair)
            raise

        def pages(table: TableScope) -> int:
            relation = source_rel.get((table.schema, table.name))
            return relation.pages if relation else 0

        # Largest first, so parallel workers finish together; results keep the scope's order.
        order = sorted(range(len(run.tables)), key=lambda i: -pages(run.tables[i]))
        results: list[TableResult | None] = [None] * len(run.tables)
        idle: queue.SimpleQueue[_Pair] = queue.SimpleQueue()
        idle.put(pair)
        opened = [pair]
        opened_lock = threading.Lock()

        def one(index: int) -> None:
            try:
                current = idle.get_nowait()
            except queue.Empty:
                current = self._new_pair(run)
                with opened_lock:
                    opened.append(current)
            try:
                table = run.tables[index]
                results[index] = self._verify_table(
                    current, run, table, source_rel.get((table.schema, table.name)),
                    target_rel.get((table.schema, table.name)), versions, block,
                )
            finally:
                idle.put(current)

        try:
            jobs = min(self.options.jobs, len(run.tables))
            if jobs <= 1:
                for index in order:
                    _check(self._cancel)
                    one(index)
            else:
                with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="pgtide-verify") as pool:
                    futures = [pool.submit(one, index) for index in order]
                    try:
                        for future in futures:
                            future.result()
                    except BaseException:
                        # Stop the other tables without cancelling the caller's token: it may be shared.
                        for each_future in futures:
                            each_future.cancel()
                        self._interrupt()
                        raise
        finally:
            for each in opened:
                self._release(each)
        return [r for r in results if r is not None]

    def _verify_table(self, pair: _Pair, run: _DatabaseRun, table: TableScope, source: _Relation | None,
                      target: _Relation | None, versions: tuple[int, int], block: int) -> TableResult:
        with self._event_lock:
            self._counter += 1
            index = self._counter
        self._emit(TableStarted(table.database, table.schema, table.name, index, self._total))
        started = time.monotonic()
        where = run.filters.get((table.schema, table.name), table.where) if table.copies_rows else None
        base = TableResult(
            database=table.database, schema=table.schema, name=table.name, status="match", method="none",
            key_columns=table.info.primary_key, where=where, schema_only=not table.copies_rows,
        )
        try:
            result = self._compare(pair, run, table, source, target, versions, block, where, base)
        except psycopg.OperationalError:
            if self._cancel.cancelled:
                raise VerifyCancelled() from None
            raise
        except psycopg.Error as exc:  # this table's problem (privileges, a bad filter): report it
            _rollback(pair)
            message = (exc.diag.message_primary or str(exc)).strip()
            log.info("verify %s failed: %s", base.display, message)
            result = replace(base, status="error", error=message)
        result = replace(result, seconds=time.monotonic() - started)
        self._emit(TableVerified(result))
        return result

    def _compare(self, pair: _Pair, run: _DatabaseRun, table: TableScope, source: _Relation | None,
                 target: _Relation | None, versions: tuple[int, int], block: int, where: str | None,
                 base: TableResult) -> TableResult:
        options = self.options
        if source is None:
            return replace(base, status="error", error="the table no longer exists on the source")
        inherited = source.kind == "p" and table.info.qualified not in run.covered_parents
        if source.kind == "p" and not inherited:
            return replace(base, status="skipped", notes=("partitioned table: its partitions are verified one by one",))
        if target is None:
            return replace(base, status="schema_differs", notes=("the table does not exist on the target",))
        missing_columns = [c for c in source.names if c not in target.names]
        extra_columns = [c for c in target.names if c not in source.names]
        if missing_columns or extra_columns:
            parts = []
            if missing_columns:
                parts.append("missing on the target: " + ", ".join(quote_ident(c) for c in missing_columns))
            if extra_columns:
                parts.append("only on the target: " + ", ".join(quote_ident(c) for c in extra_columns))
            return replace(base, status="schema_differs", notes=("columns differ; " + "; ".join(parts),))
        notes = [
            f"column {quote_ident(c.name)} is {c.type} on the source, {other.type} on the target "
            "(compared by text form)"
            for c in source.columns
            if (other := target.column(c.name)) is not None and other.type != c.type
        ]
        if not table.copies_rows:
            query = sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT 1000001) AS t").format(
                _table_sql(table, inherited=inherited))
            rows = int(pair.target.execute(query).fetchone()[0])  # type: ignore[index]
            if rows:
                shown = str(rows) if rows <= 1_000_000 else "over 1000000"
                notes.append(f"schema-only table holds {shown} row(s) on the target; none expected")
            return replace(base, status="differ" if rows else "match", method="schema only", target_rows=rows,
                           notes=tuple(notes), pinpointed=False)

        key = table.info.primary_key
        bounds = None
        key_column = source.column(key[0]) if len(key) == 1 else None
        target_key = target.column(key[0]) if len(key) == 1 else None
        table_sql = _table_sql(table, inherited=inherited)
        if key_column and target_key and key_column.hash_class == "int" and target_key.hash_class == "int":
            bounds = _key_bounds(pair, table_sql, key[0], where)
        shape = _shape(table, source, target, where, bounds, options, table_sql)
        if inherited:
            notes.append("partitioned table whose partitions are not selected: verified through the parent")
        timeout = min(options.recheck_timeout, _STUCK_TIMEOUT) if run.stuck else options.recheck_timeout
        waiter = _Waiter(pair, run.live if options.live else None, timeout, block)
        verifier = _TableVerifier(shape, pair, waiter, options, self._emit, versions)
        try:
            return self._compare_rows(shape, waiter, verifier, base, notes)
        finally:
            run.stuck = run.stuck or waiter.timed_out

    def _compare_rows(self, shape: _Shape, waiter: _Waiter, verifier: _TableVerifier, base: TableResult,
                      notes: list[str]) -> TableResult:
        options = self.options

        source_buckets, target_buckets, position = verifier.first_pass()
        result = replace(
            base, method=shape.method, buckets=len(set(source_buckets) | set(target_buckets)),
            source_rows=sum(c for c, _ in source_buckets.values()),
            target_rows=sum(c for c, _ in target_buckets.values()),
            pinpointed=shape.method != "row hash",
        )
        differing = _differing(source_buckets, target_buckets)
        persistent, changing = verifier.settle_buckets(source_buckets, target_buckets, position, differing)

        if shape.method == "row hash":
            notes.append("no primary key: rows are compared as a multiset (count and hash per bucket of row "
                         "hashes); differing rows cannot be named")
            if persistent:
                source_count = sum(source_buckets.get(b, _NO_ROWS)[0] for b in persistent)
                target_count = sum(target_buckets.get(b, _NO_ROWS)[0] for b in persistent)
                notes.append(f"{len(persistent)} of {result.buckets} bucket(s) differ ({source_count} row(s) "
                             f"there on the source, {target_count} on the target)")
            return self._finish(result, waiter, verifier, notes, status="differ" if persistent else "match",
                                differing_buckets=len(persistent), still_changing=len(changing))

        # Keyed tables: buckets still changing may hide a real difference too: name their rows.
        to_name = sorted(set(persistent) | set(changing))
        if not to_name:
            return self._finish(result, waiter, verifier, notes, status="match")
        tracked, overflow = verifier.differing_keys(source_buckets, target_buckets, to_name)
        real, still_changing = verifier.settle_keys(tracked)
        counts: dict[DifferenceKind, int] = dict(overflow)
        kinds = []
        for row_key, (source_hash, target_hash) in real.items():
            kind = kind_of(source_hash, target_hash)
            counts[kind] += 1
            kinds.append((_KIND_ORDER[kind], _key_order(row_key), kind, row_key))
        # Up to tracked_keys differ; only max_keys are reported: no need to sort them all.
        differences = [RowDifference(kind, row_key) for _, _, kind, row_key in heapq.nsmallest(options.max_keys, kinds)]
        if any(overflow.values()):
            notes.append(f"more than {options.tracked_keys} differing rows: the first {options.tracked_keys} were "
                         "kept (and re-checked when live), the rest are only counted")
        total = sum(counts.values())
        return self._finish(
            result, waiter, verifier, notes, status="differ" if total else "match",
            missing=counts["missing"], extra=counts["extra"], different=counts["different"],
            differences=tuple(differences), still_changing=still_changing,
        )

    def _finish(self, result: TableResult, waiter: _Waiter, verifier: _TableVerifier, notes: list[str],
                **changes: Any) -> TableResult:
        if changes.get("still_changing"):
            notes.append(f"{changes['still_changing']} row(s) or bucket(s) changed on the source at every "
                         "re-check: treated as changes in flight, not as differences")
        unsettled = waiter.timed_out and changes.get("status") == "differ"
        if unsettled:
            notes.append(f"the target did not catch up within {self.options.recheck_timeout:g} s: the "
                         "differences reported may be changes still in flight")
        return replace(result, resolved_in_flight=verifier.resolved, unsettled=unsettled, notes=tuple(notes),
                       listed_ranges=verifier.listed, dense_ranges=verifier.dense, **changes)


def _rollback(pair: _Pair) -> None:
    for conn in (pair.source, pair.target):
        try:
            if conn.info.transaction_status != TransactionStatus.IDLE:
                conn.rollback()
        except psycopg.Error:
            pass


# -- entry points -------------------------------------------------------------------------------------


def _publication_filters(endpoint: Endpoint, publication: str) -> dict[tuple[str, str], str]:
    """The row filters a publication really uses (PG15+), as the server prints them."""
    with connect(endpoint) as conn:  # pooled: RESET ALL on return undoes the settings pinned here
        if conn.info.server_version < 150000:
            return {}
        conn.execute("SELECT pg_catalog.set_config('search_path', '', false)")
        pin_quoting(conn)
        rows = conn.execute(
            "SELECT schemaname, tablename, rowfilter FROM pg_catalog.pg_publication_tables "
            "WHERE pubname = %s AND rowfilter IS NOT NULL",
            [publication],
        ).fetchall()
    return {(schema, table): rowfilter for schema, table, rowfilter in rows}


def detect_live(source: Endpoint, target: Endpoint, database: str,
                names: ReplicationNames | None = None) -> LiveReplication | None:
    """The database's pgtide subscription on the target, when there is one."""
    names = names or replication_names(source, target, database)
    try:
        with connect(target.with_dbname(database)) as conn:
            row = conn.execute(
                "SELECT subslotname FROM pg_catalog.pg_subscription WHERE subname = %s "
                "AND subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())",
                [names.subscription],
            ).fetchone()
    except psycopg.Error:
        return None
    if row is None:
        return None
    return LiveReplication(slot=row[0] or names.slot, subscription=names.subscription)


def select_tables(scope: Scope, patterns: Sequence[str]) -> list[TableScope]:
    """The scope's tables, restricted to ``patterns`` (table, schema.table, db.table, db.schema.table)."""
    tables = [table for db in scope.databases for table in db.tables]
    if not patterns:
        return tables
    chosen: set[int] = set()
    for text in patterns:
        pattern = parse_table_pattern(text, what="--table name")
        found = [i for i, t in enumerate(tables) if _pattern_matches(pattern, t)]
        if not found:
            raise InputError(
                f"--table {text}: no such table among the migrated ones",
                "Name a table the selection includes: table, schema.table, db.table or db.schema.table "
                "(quote mixed-case names with double quotes).",
                title="Unknown table",
            )
        chosen.update(found)
    return [t for i, t in enumerate(tables) if i in chosen]


def _pattern_matches(pattern: TableRef | UnresolvedName, table: TableScope) -> bool:
    if isinstance(pattern, TableRef):
        return pattern.matches(table.database, table.schema, table.name)
    first, second = pattern.first, pattern.second
    if second != table.name:
        return False
    return first == table.schema or (first == table.database and table.schema == "public")


def verify_scope(
    scope: Scope,
    source: Endpoint,
    target: Endpoint,
    *,
    tables: Sequence[TableScope] | None = None,
    options: VerifyOptions | None = None,
    live: Mapping[str, LiveReplication | None] | None = None,
    on_event: EventCallback | None = None,
    verifier: Verifier | None = None,
    cancel: CancelToken | None = None,
) -> VerifyReport:
    """Verify the scope's tables (or ``tables``) of ``source`` against ``target``.

    Each database is compared with the database of the same name on the target. ``live``
    maps a database to the subscription keeping it in step (None: a static comparison).
    ``cancel``: stops the run with :class:`Cancelled` (ignored when ``verifier`` is given:
    that one's own token applies).
    """
    chosen = list(tables) if tables is not None else [t for db in scope.databases for t in db.tables]
    verifier = verifier or Verifier(options, on_event, cancel=cancel)
    runs = []
    for database in scope.databases:
        members = [t for t in chosen if t.database == database.name]
        if not members:
            continue
        replication = (live or {}).get(database.name)
        filters: dict[tuple[str, str], str] = {}
        if replication is not None and any(t.where for t in members):
            names = replication_names(source, target, database.name)
            filters = _publication_filters(source.with_dbname(database.name), names.publication)
        covered: set[tuple[str, str]] = set()
        for member in members:
            parent = member.info.partition_parent
            while parent is not None and parent not in covered:
                covered.add(parent)
                info = database.catalog.table(*parent)
                parent = info.partition_parent if info is not None else None
        runs.append(_DatabaseRun(database.name, source.with_dbname(database.name),
                                 target.with_dbname(database.name), members, replication, filters, covered))
    return verifier.run(runs)


def verify_plan(
    plan: Plan,
    *,
    tables: Sequence[str] = (),
    options: VerifyOptions | None = None,
    on_event: EventCallback | None = None,
    verifier: Verifier | None = None,
    cancel: CancelToken | None = None,
) -> VerifyReport:
    """Resolve the plan's selection on the source and verify every table it migrates.

    Databases with a pgtide subscription on the target are compared live (in-flight
    changes re-checked after the target caught up); the others statically.
    """
    options = options or (verifier.options if verifier else VerifyOptions())
    scope = build_scope(plan.source, plan.selection, replicate=False)
    chosen = select_tables(scope, tables)
    live: dict[str, LiveReplication | None] = {}
    if options.live:
        for database in sorted({t.database for t in chosen}):
            live[database] = detect_live(plan.source, plan.target, database)
    return verify_scope(scope, plan.source, plan.target, tables=chosen, options=options, live=live,
                        on_event=on_event, verifier=verifier, cancel=cancel)
