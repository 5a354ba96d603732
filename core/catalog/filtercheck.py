"""Checking one table's filter, and a selection's foreign-key safety, while it is being built.

``build_scope`` checks a whole selection against the source at once, which is right before a
migration starts but too coarse for an editor: the TUI's filter editor wants one table's
predicate checked by the server (with the same rules: EXPLAIN, publication validity, replica
identity) and the foreign-key consequences of the selection so far, shown next to the table
that causes them. Both reuse scope's own checks, so the editor and ``build_scope`` can never
disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from ..infra.db import connect
from ..infra.endpoint import Endpoint
from ..infra.errors import InputError, PgtideError
from ..model.selection import TimeFilter, check_predicate_syntax, format_qualified_name
from . import scope as scope_checks
from .discovery import DatabaseCatalog, TableInfo
from .scope import DatabaseScope, ExcludedTable, TableScope

__all__ = ["ChosenTable", "FilterCheck", "check_table_filter", "selection_problem"]


@dataclass(frozen=True)
class FilterCheck:
    """What the server said about one table's filter."""

    #: The predicate copy and publication would use, as the server printed it (time filters
    #: resolved to a literal).
    where: str
    #: The planner's estimate of the rows kept (None when the planner could not say).
    estimated_rows: int | None
    #: Columns the predicate reads, from the server's own parse (empty: unknown).
    filter_columns: tuple[str, ...]
    #: For time filters: the cut as shown to the user (source clock, its time zone).
    cutoff: str | None = None


def check_table_filter(
    source: Endpoint,
    database: str,
    table: TableInfo,
    *,
    predicate: str | None = None,
    time_filter: TimeFilter | None = None,
    replicate: bool = True,
    now: datetime | None = None,
) -> FilterCheck:
    """Have the source check a row filter or a time filter for ``table``; InputError if it fails.

    Nothing is executed or created for good: the predicate is planned (EXPLAIN) and tried in a
    publication inside a transaction that is rolled back.
    """
    if (predicate is None) == (time_filter is None):
        raise ValueError("give exactly one of predicate and time_filter")
    endpoint = source.with_dbname(database)
    cutoff_text: str | None = None
    if predicate is not None:
        check_predicate_syntax(predicate, what=f"row filter for {format_qualified_name(table.qualified)}")
        where = predicate
        literal = None
    else:
        assert time_filter is not None
        column = table.column(time_filter.column)
        if column is None or column not in table.time_columns:
            names = ", ".join(c.name for c in table.time_columns) or "none"
            raise InputError(
                f"{format_qualified_name(table.qualified)} has no timestamp or date column {time_filter.column!r}",
                f"Pick one of this table's timestamp/date columns: {names}.",
                title="Invalid time filter",
            )
        clock = now
        if clock is None:
            with connect(endpoint) as conn:
                clock = conn.execute("SELECT now()", binary=True).fetchone()[0]  # type: ignore[index]
        assert clock is not None
        cutoff = time_filter.window.cutoff(clock)
        literal = scope_checks.cutoff_literal(cutoff, column.type)
        where = scope_checks.time_predicate(column.name, literal)
        cutoff_text = cutoff.isoformat(sep=" ", timespec="seconds")
    candidate = TableScope(
        database=database, info=table, mode="full", row_filter=predicate, time_filter=time_filter,
        time_cutoff=literal, where=where,
    )
    with connect(endpoint) as conn:
        checked = scope_checks.check_table_filter(conn, candidate, replicate=replicate)
    assert checked.where is not None
    return FilterCheck(checked.where, checked.estimated_rows, checked.filter_columns, cutoff_text)


@dataclass(frozen=True)
class ChosenTable:
    """How the user wants one table moved, as far as foreign keys care."""

    mode: Literal["full", "schema_only"] = "full"
    #: The filter as the user wrote it (None: every row).
    filter: str | None = None


def selection_problem(
    catalog: DatabaseCatalog, database: str, chosen: Mapping[tuple[str, str], ChosenTable]
) -> PgtideError | None:
    """The first foreign-key problem of this database's choice of tables, or None. Pure: no server.

    ``chosen`` maps (schema, table) to how it is moved; tables not in it are left out. Filters
    count as filters whatever their text (the server checks the text separately). Built from
    the choices directly rather than from a Selection: asking a Selection about each of
    10,000 tables is too slow to redo on every click.
    """
    tables: list[TableScope] = []
    excluded: list[ExcludedTable] = []
    for info in catalog.tables:
        choice = chosen.get(info.qualified)
        if choice is None:
            excluded.append(ExcludedTable(info.schema, info.name, "not selected"))
            continue
        tables.append(TableScope(database=database, info=info, mode=choice.mode, row_filter=choice.filter,
                                 where=choice.filter if choice.mode == "full" else None))
    try:
        scope_checks.check_fk_safety(DatabaseScope(database, catalog, tuple(tables), tuple(excluded)))
    except InputError as exc:
        return exc
    return None
