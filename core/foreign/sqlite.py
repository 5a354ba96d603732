"""SQLite as a source: the file opened read-only, one read transaction per snapshot.

Opened with ``mode=ro`` through a URI, so nothing pgtide runs can write to the file, and
the sqlite3 module runs one statement per call, so a row filter cannot append another.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..infra.errors import ConnectError, InputError
from .endpoint import ForeignEndpoint
from .source import CaptureCheck, Change, Kind, Row, SourceColumn, SourceForeignKey, SourceIndex, SourceTable

_ID_NAMES = ("id", "rowid", "_id")


def quote_ident(name: str) -> str:
    """An SQLite identifier, quoted (the sqlite3 module has no identifier parameters)."""
    return '"' + name.replace('"', '""') + '"'


class SQLiteSource:
    kind: Kind = "sqlite"

    def __init__(self, endpoint: ForeignEndpoint) -> None:
        self.endpoint = endpoint
        self.path = Path(endpoint.path)
        self._conn = self._open()

    def _open(self) -> sqlite3.Connection:
        uri = "file:" + quote(str(self.path)) + "?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=30)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            raise ConnectError(f"cannot open the SQLite file {self.path}: {exc}",
                               "Check that the file exists, is readable by this user and is an SQLite 3 database.",
                               title="Cannot open source") from None
        # Text that is not UTF-8 comes back as bytes instead of failing the whole table.
        conn.text_factory = _text_or_bytes
        return conn

    # -- catalog -----------------------------------------------------------------------------

    def tables(self) -> list[SourceTable]:
        names = [r[0] for r in self._conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
            "ORDER BY name")]
        sizes = self._sizes()
        return [self._table(name, sizes.get(name, 0)) for name in names]

    def _sizes(self) -> dict[str, int]:
        try:
            return {name: int(size) for name, size in self._conn.execute(
                "SELECT name, sum(pgsize) FROM dbstat GROUP BY name")}
        except sqlite3.Error:  # dbstat is a compile-time option; estimates then come from counts
            return {}

    def _table(self, name: str, size: int) -> SourceTable:
        info = self._conn.execute("SELECT name, type, \"notnull\", dflt_value, pk, hidden "
                                  "FROM pragma_table_xinfo(?)", (name,)).fetchall()
        columns = tuple(SourceColumn(name=str(c[0]), source_type=str(c[1] or ""), nullable=not c[2],
                                     base=str(c[1] or "").split("(")[0].strip().lower(),
                                     default=None if c[3] is None else str(c[3]))
                        for c in info if c[5] in (0, 2, 3))  # 1 = a virtual table's hidden column
        pk = tuple(str(c[0]) for c in sorted((c for c in info if c[4]), key=lambda c: c[4]))
        without_rowid = bool(self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ? AND sql LIKE '%WITHOUT%ROWID%'",
            (name,)).fetchone())
        names = [c.name for c in columns]
        implicit = False
        key = pk
        if not pk and not without_rowid:
            key, implicit = ("rowid",), "rowid" not in names
        id_column = next((n for n in _ID_NAMES if n in names), None)
        if id_column is None and implicit:
            id_column = "rowid"
        rows = int(self._conn.execute(f"SELECT count(*) FROM {quote_ident(name)}").fetchone()[0])
        return SourceTable(name=name, columns=columns, key=key, id_column=id_column, rows=rows, rows_exact=True,
                           size_bytes=size or rows * 64, indexes=self._indexes(name),
                           foreign_keys=self._foreign_keys(name), implicit_rowid=implicit)

    def _indexes(self, table: str) -> tuple[SourceIndex, ...]:
        found: list[SourceIndex] = []
        for _seq, name, unique, origin, _partial in self._conn.execute(
                "SELECT seq, name, \"unique\", origin, partial FROM pragma_index_list(?)", (table,)):
            if origin == "pk" or _partial:
                continue  # the key is made from SourceTable.key; partial indexes' predicates are SQLite SQL
            columns = [r[0] for r in self._conn.execute("SELECT name FROM pragma_index_info(?) ORDER BY seqno",
                                                        (name,))]
            if columns and all(c is not None for c in columns):  # expression indexes have NULL names
                found.append(SourceIndex(str(name), tuple(str(c) for c in columns), bool(unique)))
        return tuple(found)

    def _foreign_keys(self, table: str) -> tuple[SourceForeignKey, ...]:
        groups: dict[int, list[Any]] = {}
        for row in self._conn.execute("SELECT id, seq, \"table\", \"from\", \"to\", on_update, on_delete "
                                      "FROM pragma_foreign_key_list(?) ORDER BY id, seq", (table,)):
            groups.setdefault(int(row[0]), []).append(row)
        keys: list[SourceForeignKey] = []
        for ident, rows in groups.items():
            if any(r[4] is None for r in rows):
                continue  # references the parent's primary key implicitly: resolved below
            keys.append(SourceForeignKey(f"{table}_fk{ident}", tuple(str(r[3]) for r in rows), str(rows[0][2]),
                                         tuple(str(r[4]) for r in rows), on_delete=str(rows[0][6]),
                                         on_update=str(rows[0][5])))
        return tuple(keys)

    def consistency(self) -> str:
        mode = str(self._conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
        if mode == "wal":
            return ("each table is read in one read transaction (WAL mode: writers go on meanwhile); "
                    "--refresh-every re-reads and applies what changed since")
        return (f"each table is read in one read transaction; in {mode} journal mode writers wait until that "
                "table's read ends")

    def check_filter(self, table: SourceTable, where: str) -> str:
        if "\x00" in where:
            raise InputError("the row filter contains a NUL character", "Remove it.", title="Invalid row filter")
        try:
            # One statement per call (sqlite3 refuses a second), on a read-only connection.
            self._conn.execute(f"SELECT 1 FROM {quote_ident(table.name)} WHERE ({where}) LIMIT 0").fetchall()
        except (sqlite3.Error, sqlite3.Warning) as exc:
            raise InputError(f"{table.name}: SQLite refuses the row filter: {exc}",
                             "Write an SQLite expression over the table's columns, e.g. created_at >= '2024-01-01'.",
                             title="Invalid row filter") from None
        return where

    @contextmanager
    def snapshot(self) -> Iterator[_Reader]:
        conn = self._open()
        try:
            conn.execute("BEGIN")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the read transaction starts here
            yield _Reader(conn)
        finally:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            conn.close()

    def capture_check(self) -> CaptureCheck:
        return CaptureCheck(False, "SQLite keeps no change log pgtide can read",
                            "Use --refresh-every INTERVAL to re-read the tables and apply what changed.")

    def changes(self, tables: Sequence[SourceTable], start: str, stop: threading.Event) -> Iterator[Change]:
        raise NotImplementedError("SQLite has no change log: use --refresh-every")

    def close(self) -> None:
        self._conn.close()


def _text_or_bytes(raw: bytes) -> str | bytes:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


class _Reader:
    position: str | None = None

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def _select(self, table: SourceTable, where: str | None, after: Row | None, batch: int) -> tuple[str, list[Any]]:
        columns = ", ".join(quote_ident(c.name) for c in table.columns)
        if table.implicit_rowid:
            columns = "rowid, " + columns if columns else "rowid"
        clauses: list[str] = []
        params: list[Any] = []
        key = table.key
        if where:
            clauses.append(f"({where})")
        if after is not None and key:
            ref = ", ".join(quote_ident(k) if k != "rowid" or not table.implicit_rowid else "rowid" for k in key)
            clauses.append(f"({ref}) > ({', '.join('?' for _ in key)})")
            params += list(after)
        order = (" ORDER BY " + ", ".join(quote_ident(k) if not (k == "rowid" and table.implicit_rowid) else "rowid"
                                          for k in key)) if key else ""
        text = f"SELECT {columns} FROM {quote_ident(table.name)}"
        if clauses:
            text += " WHERE " + " AND ".join(clauses)
        return text + order, params

    def rows(self, table: SourceTable, *, where: str | None = None, after: Row | None = None,
             batch: int = 5000) -> Iterator[list[Row]]:
        """Text is decoded by sqlite3 itself (C, a third faster over a whole table than a
        Python text_factory call per value). A text that is not UTF-8 fails that fetch; the
        read then starts over the old way (such text as bytes), in the same read transaction,
        skipping the rows already given: the same statement over the same snapshot returns
        the same rows in the same order. text_factory is set before every fetch, so readers
        interleaved on this connection each get their own."""
        conn = self._conn
        text, params = self._select(table, where, after, batch)
        given = 0
        try:
            cursor = conn.execute(text, params)
            while True:
                conn.text_factory = str
                try:
                    chunk = cursor.fetchmany(batch)
                except sqlite3.OperationalError as exc:
                    if not str(exc).startswith("Could not decode to UTF-8"):
                        raise
                    break
                if not chunk:
                    return
                given += len(chunk)
                yield [tuple(r) for r in chunk]
            cursor = conn.execute(text, params)
            skipped = 0
            while skipped < given:
                conn.text_factory = bytes  # nothing to decode in rows that are only skipped
                got = cursor.fetchmany(min(batch, given - skipped))
                if not got:
                    raise RuntimeError(f"{table.name}: the second read of the snapshot ended after {skipped} of "
                                       f"the {given} rows the first gave")
                skipped += len(got)
            while True:
                conn.text_factory = _text_or_bytes
                chunk = cursor.fetchmany(batch)
                if not chunk:
                    return
                yield [tuple(r) for r in chunk]
        finally:
            conn.text_factory = _text_or_bytes

    def count(self, table: SourceTable, *, where: str | None = None) -> int:
        text = f"SELECT count(*) FROM {quote_ident(table.name)}" + (f" WHERE ({where})" if where else "")
        return int(self._conn.execute(text).fetchone()[0])


def open_sqlite(endpoint: ForeignEndpoint) -> SQLiteSource:
    return SQLiteSource(endpoint)
