"""What a foreign source is made of, and the interface every source adapter implements.

An adapter (sqlite.py, mysql.py, mongo.py) turns its server's catalog into
:class:`SourceTable` values and its rows into tuples in ``SourceTable.columns`` order. A
document source (MongoDB) has one pseudo-column, ``document``, holding the whole document
(``SourceTable.document`` is True). Everything downstream — layouts, copy, change apply,
verify — is written against these types only, never against a driver.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Kind = Literal["sqlite", "mysql", "mongodb"]
Row = tuple[Any, ...]
Op = Literal["insert", "update", "delete"]


@dataclass(frozen=True)
class SourceColumn:
    """One column as the source declares it, with the facts the cast rules read."""

    name: str
    #: The declared type exactly as the source reports it ("bigint(20) unsigned", "TEXT", "").
    source_type: str
    nullable: bool = True
    #: Lower-case base type name without width or attributes ("tinyint", "decimal", "enum").
    base: str = ""
    unsigned: bool = False
    #: Display width / character length / numeric precision, where the source has one.
    length: int | None = None
    scale: int | None = None
    #: ENUM / SET members, in declaration order.
    values: tuple[str, ...] = ()
    auto_increment: bool = False
    #: The column's default as the source's own expression text (shown, never executed).
    default: str | None = None


@dataclass(frozen=True)
class SourceIndex:
    name: str
    columns: tuple[str, ...]
    unique: bool = False


@dataclass(frozen=True)
class SourceForeignKey:
    name: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]
    on_delete: str = "NO ACTION"
    on_update: str = "NO ACTION"


@dataclass(frozen=True)
class SourceTable:
    """One table (or collection) of the source."""

    name: str
    columns: tuple[SourceColumn, ...]
    #: Primary key columns (a unique key when there is no primary key); () when neither.
    key: tuple[str, ...] = ()
    #: The column the ``jsonb`` layout takes the row id from (the seed's rule:
    #: ``id``/``Id``/``ID`` for MySQL, ``id``/``rowid``/``_id`` or the rowid for SQLite,
    #: ``_id`` for MongoDB); None when the table has none.
    id_column: str | None = None
    rows: int = 0
    #: False when ``rows`` is the source's estimate (InnoDB, MongoDB's metadata count).
    rows_exact: bool = False
    size_bytes: int = 0
    indexes: tuple[SourceIndex, ...] = ()
    foreign_keys: tuple[SourceForeignKey, ...] = ()
    #: A document collection: each row is ``(document_dict,)``.
    document: bool = False
    #: SQLite only: the table has an implicit rowid that ``rows()`` returns as the first value
    #: when ``id_column == "rowid"`` and no column of that name exists.
    implicit_rowid: bool = False

    def column(self, name: str) -> SourceColumn:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


@dataclass(frozen=True)
class Change:
    """One row change read from the source's change log, in commit order.

    A change whose ``table`` is "" is a checkpoint: no row, only a ``position`` the stream has
    read up to while the watched tables were quiet (the apply records it, so a restart does
    not need change-log history older than that)."""

    table: str
    op: Op
    #: insert/update: the row after the change (``SourceTable.columns`` order, or
    #: ``(document,)``); delete: the row before it (at least its key values filled in).
    row: Row
    #: update only: the row before, when the source gives it (a key may have changed).
    before: Row | None = None
    #: Where to resume *after* this change's transaction, as the adapter spells positions
    #: (binlog "file:pos", a change stream's resume token as JSON). Set on the last change of
    #: each transaction; None on the others.
    position: str | None = None
    #: When the source committed it (seconds since the epoch), for lag.
    committed_at: float | None = None


@dataclass(frozen=True)
class CaptureCheck:
    """Whether the source can stream its changes, and what to change when it cannot."""

    ok: bool
    #: One sentence: what was observed ("binlog_format is STATEMENT").
    observed: str
    #: What to do about it, exactly ("SET GLOBAL binlog_format = ROW, or binlog_format=ROW in
    #: my.cnf and a restart; one-shot copies and --refresh-every work without it").
    remedy: str = ""
    #: The server settings seen, for the record and Review.
    settings: dict[str, str] = field(default_factory=dict)


class SnapshotReader(Protocol):
    """Reads one consistent view of the source (where the source offers one)."""

    #: Where change capture starts so that nothing between the snapshot and the stream is
    #: missed or applied twice; None when the source has no change log.
    position: str | None

    def rows(self, table: SourceTable, *, where: str | None = None, after: Row | None = None,
             batch: int = 5000) -> Iterator[list[Row]]:
        """The table's rows in key order (rowid / _id / primary key; natural order when keyless),
        in batches of at most ``batch``, never the whole table in memory. ``after`` resumes
        past that key (``table.key`` values). ``where`` is a row filter in the source's own
        language, already checked by ``check_filter``."""
        ...

    def count(self, table: SourceTable, *, where: str | None = None) -> int:
        """Exact row count inside the snapshot."""
        ...


class SourceAdapter(Protocol):
    kind: Kind

    def tables(self) -> list[SourceTable]:
        """Every table/collection the user may pick, with its columns, keys and sizes."""
        ...

    def consistency(self) -> str:
        """One sentence for Review: what consistency the copy gets from this source."""
        ...

    def check_filter(self, table: SourceTable, where: str) -> str:
        """``where`` as the source will apply it; InputError with the source's own message
        when it does not parse or names something unknown. Changes nothing on the source."""
        ...

    def snapshot(self) -> AbstractContextManager[SnapshotReader]:
        ...

    def capture_check(self) -> CaptureCheck:
        """Whether ``changes`` can work on this server, read without changing anything."""
        ...

    def changes(self, tables: Sequence[SourceTable], start: str, stop: threading.Event) -> Iterator[Change]:
        """Every change to ``tables`` after ``start``, in commit order, until ``stop`` is set
        (the iterator then ends at a transaction boundary). NotImplementedError for a source
        without a change log (SQLite)."""
        ...

    def close(self) -> None:
        ...
