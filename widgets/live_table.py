"""A DataTable for rows that arrive after the table is on screen (from workers, polls, progress)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.widgets import DataTable
from textual.widgets.data_table import CellKey, RowKey


class LiveTable(DataTable[Any]):
    """DataTable that redraws rows once their columns have been measured.

    Textual (8.2.8, pinned) measures new rows and updated cells when the table is idle, but
    keeps the lines it drew before that in caches whose keys do not include the column
    widths: a table filled after its first paint (rows from a worker) kept drawing its columns
    cut to the header's width. Bumping the update counter, which every render cache key
    includes, makes the next paint use the measured widths.
    """

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        super()._update_dimensions(new_rows)
        self._update_count += 1
        self.refresh()

    def _update_column_widths(self, updated_cells: set[CellKey]) -> None:
        super()._update_column_widths(updated_cells)
        self._update_count += 1
        self.refresh()
