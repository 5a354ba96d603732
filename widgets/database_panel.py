"""One database's replication at a glance: state, lag (with a sparkline), retained WAL, tables, errors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Sparkline, Static

from .formatting import human_bytes

if TYPE_CHECKING:
    from ..core.monitor.poll import DatabaseStatus

STATE_STYLES = {
    "streaming": "bold green",
    "catching up": "bold cyan",
    "copying": "bold cyan",
    "stalled": "bold yellow",
    "broken": "bold red",
    "not set up": "dim",
}
WARNING_STYLES = {"ok": "", "warning": "bold yellow", "critical": "bold red"}


def lag_text(status: DatabaseStatus) -> Text:
    text = Text.assemble(("Lag ", "bold"))
    text.append(human_bytes(status.lag_bytes) if status.lag_bytes is not None else "unknown")
    if status.lag_seconds is not None:
        text.append(f" · {status.lag_seconds:.1f} s")
    if status.eta_seconds not in (None, 0.0):
        text.append(f" · caught up in ~{status.eta_seconds:.0f} s", style="dim")
    return text


def status_lines(status: DatabaseStatus | None, *, torn_down: bool = False) -> Text:
    if torn_down:
        return Text("torn down: subscription, slot and publication removed", style="dim")
    if status is None:
        return Text("waiting for the first poll…", style="dim")
    state = str(status.state)
    text = Text.assemble(("● " + state, STATE_STYLES.get(state, "")))
    if status.reason:
        text.append("  " + status.reason, style="dim" if state == "streaming" else "")
    text.append("\n")
    text.append_text(lag_text(status))
    text.append("\nRetained WAL ", style="bold")
    text.append(human_bytes(status.retained_wal_bytes) if status.retained_wal_bytes is not None else "none")
    if status.retained_warning != "ok":
        text.append("  ▲ " + status.retained_reason, style=WARNING_STYLES[status.retained_warning])
    target = status.target
    text.append("\nTables ", style="bold")
    text.append(f"{target.tables_ready}/{target.tables_total} ready")
    errors = (target.apply_error_count or 0) + (target.sync_error_count or 0)
    text.append(" · errors ", style="bold")
    text.append(str(errors), style="bold red" if errors else "")
    if target.last_error:
        text.append("\n✖ " + target.last_error, style="red")
        if target.failed_table:
            text.append(f" (table {target.failed_table})", style="red")
    if target.exists and not target.enabled and (target.apply_error_count or target.last_error):
        text.append("\n  apply stopped: fix the cause, then e enables it again; k skips the failing "
                    "transaction (its rows are lost on the target)", style="yellow")
    drift = status.drift
    if drift is not None and drift.drifted:
        text.append(f"\n▲ schema drift in {len(drift.tables)} table(s): ", style="bold yellow")
        text.append("; ".join(f"{t.display} ({t.summary()})" for t in drift.tables[:3])
                    + (" …" if len(drift.tables) > 3 else ""), style="yellow")
        if drift.statements:
            text.append("\n  a applies the additive statement(s) on the target", style="yellow")
        if drift.recopy_tables:
            text.append("\n  re-copy needed: " + ", ".join(drift.recopy_tables)
                        + " (`pgtide sync --recopy TABLE`)", style="yellow")
    return text


class DatabasePanel(Vertical):
    """Bordered panel titled with the database name; ``show()`` redraws it from one poll."""

    DEFAULT_CSS = """
    DatabasePanel { height: auto; border: round $primary-darken-1; padding: 0 1; }
    DatabasePanel > Horizontal { height: auto; }
    DatabasePanel .panel-lines { width: 1fr; height: auto; }
    DatabasePanel .panel-graph { width: 41; height: auto; }
    DatabasePanel Sparkline { width: 40; height: 3; margin-left: 1; }
    DatabasePanel .panel-sparkline-label { width: 40; color: $text-muted; margin-left: 1; }
    """

    def __init__(self, database: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.database = database
        self.border_title = database
        self._shown: tuple[DatabaseStatus | None, list[float], bool] = (None, [], False)
        self._ready = False

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Static(status_lines(None), classes="panel-lines", markup=False)
            with Vertical(classes="panel-graph"):
                yield Static("lag, last minutes", classes="panel-sparkline-label", markup=False)
                yield Sparkline([], summary_function=max)

    def on_mount(self) -> None:
        self._ready = True
        self._draw()

    def show(self, status: DatabaseStatus | None, samples: Sequence[float], *, torn_down: bool = False) -> None:
        """Draw one poll; before the panel is mounted, it is kept and drawn on mount."""
        self._shown = (status, list(samples), torn_down)
        if self._ready:
            self._draw()

    def _draw(self) -> None:
        status, samples, torn_down = self._shown
        self.query_one(".panel-lines", Static).update(status_lines(status, torn_down=torn_down))
        peak = max(samples) if samples else 0.0
        # A sparkline scales to its own range: all-zero samples would draw as full bars.
        self.query_one(Sparkline).data = samples if peak > 0 else []
        if not samples:
            label = "lag, last minutes"
        elif peak > 0:
            # The bars' scale: 0 at the bottom, the peak at the top.
            label = f"lag, last {len(samples)} polls: 0 … {human_bytes(peak)} (top = peak)"
        else:
            label = f"lag, last {len(samples)} polls: always 0"
        self.query_one(".panel-sparkline-label", Static).update(label)
