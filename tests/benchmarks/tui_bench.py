"""How fast the app feels, each figure next to a baseline measured in the same run.

    python tests/benchmarks/tui_bench.py

1. Process start to first rendered frame of ``pgtide`` (target <= 1.0 s), in a real
   pseudo-terminal: the time until the start screen's text reaches the terminal. Baseline: an
   empty Textual app showing one line, started the same way.
2. Keystroke to rendered frame in the table picker with 10,000 tables (target <= 100 ms):
   from the key event to the first frame composed after the table measured its new rows.
   Baseline: the same keystrokes with an unbounded DataTable (every match shown).
3. Dashboard refresh with 1,000 tables (target <= 50 ms a tick): one poll's worth of changes
   (a tenth of the tables change state, the lag moves) drawn by row key, up to the next
   frame. Baseline: the same ticks drawn by clearing and refilling the DataTable.

No server is needed: the app runs on tests/tui/tui_fakes.py, whose answers are core's own
dataclasses (the servers' speed is what catalog_bench.py and copy_bench.py measure).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "tui"))

KEYS = "tenant_07 events_07"


def _frame_time(command: list[str], marker: bytes, env: dict[str, str], timeout: float = 10.0) -> float:
    """Seconds from spawning ``command`` in a 120x34 pty until ``marker`` is on the terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 34, 120, 0, 0))
    started = time.perf_counter()
    process = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True,
                               start_new_session=True)
    os.close(slave)
    seen = b""
    try:
        while True:
            remaining = timeout - (time.perf_counter() - started)
            if remaining <= 0:
                raise TimeoutError(f"{marker!r} never appeared; last output: {seen[-300:]!r}")
            ready, _, _ = select.select([master], [], [], remaining)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:
                raise TimeoutError(f"the process ended before {marker!r} appeared: {seen[-300:]!r}") from None
            seen += chunk
            if marker in seen:
                return time.perf_counter() - started
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        os.close(master)


def first_frame() -> tuple[float, float]:
    home = tempfile.mkdtemp(prefix="pgtide-bench-")
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "34",
           "PGTIDE_CONFIG_DIR": f"{home}/config", "PGTIDE_STATE_DIR": f"{home}/state", "PGTIDE_LOG_DIR": f"{home}/log",
           "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    empty_app = ("from textual.app import App\nfrom textual.widgets import Static\n"
                 "class Empty(App):\n    def compose(self):\n        yield Static('empty-app-frame')\nEmpty().run()\n")
    pgtide = [sys.executable, "-c", "import sys; from pgtide.app.cli import main; sys.exit(main([]))"]
    baseline = [sys.executable, "-c", empty_app]
    try:
        ours = [_frame_time(pgtide, b"Saved profiles", env) for _ in range(5)]
        theirs = [_frame_time(baseline, b"empty-app-frame", env) for _ in range(5)]
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return statistics.median(ours), statistics.median(theirs)


class FrameClock:
    """When the screen composed a frame, and when a table finished measuring new rows.

    Pilot's own waits sleep until the process looks idle, which adds tens of milliseconds of
    its own; these hooks time the app's work instead: a frame counts once it is composed.
    """

    def __init__(self, app: Any, table: Any) -> None:
        self.frames: list[float] = []
        self.measured: list[float] = []
        screen = app.screen
        compose_frame = screen._compositor_refresh
        measure_rows = table._update_dimensions

        def frame() -> None:
            compose_frame()
            self.frames.append(time.perf_counter())

        def measured(rows: Any) -> None:
            measure_rows(rows)
            self.measured.append(time.perf_counter())

        screen._compositor_refresh = frame
        table._update_dimensions = measured

    def reset(self) -> None:
        self.frames.clear()
        self.measured.clear()

    async def next_frame(self, *, after_measuring: bool, timeout: float = 5.0) -> float:
        """Time of the first frame composed after the table measured its rows (or after now)."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            since = self.measured[-1] if after_measuring and self.measured else None
            if not after_measuring or since is not None:
                frames = [t for t in self.frames if since is None or t > since]
                if frames:
                    return frames[0]
            await asyncio.sleep(0.0005)
        raise TimeoutError("no frame")


async def picker_keystrokes() -> tuple[float, float, float, float]:
    from textual import events
    from tui_fakes import FakeServices, wide_catalog, wizard_state
    from tui_support import make_app, open_pick, settle

    from pgtide.widgets.table_picker import TablePicker

    fake = FakeServices(catalogs={"shop": wide_catalog("shop", 10_000)})
    app = make_app(services=fake)
    timings: list[float] = []
    baseline: list[float] = []
    async with app.run_test(size=(120, 34)) as pilot:
        await open_pick(pilot, wizard_state())
        picker = app.screen.query_one("#tables", TablePicker)
        picker.filter_input.focus()
        await settle(pilot)
        clock = FrameClock(app, picker.table)
        for key in KEYS:
            clock.reset()
            started = time.perf_counter()
            event = events.Key("space" if key == " " else key, key)
            event.set_sender(app)
            app._driver.send_message(event)
            timings.append(await clock.next_frame(after_measuring=True) - started)
            await settle(pilot)
        # Baseline: every match shown, as a plain DataTable rebuild per keystroke would.
        rows = list(picker._rows)
        table = picker.table
        typed = ""
        for key in KEYS:
            typed += key
            terms = typed.lower().split()
            clock.reset()
            started = time.perf_counter()
            matching = [row for row in rows if all(term in row.search for term in terms)]
            table.clear()
            for row in matching:
                table.add_row(" ", *row.cells, key=row.key)
            baseline.append(await clock.next_frame(after_measuring=True) - started)
            await settle(pilot)
    return statistics.median(timings), max(timings), statistics.median(baseline), max(baseline)


async def dashboard_ticks(ticks: int = 20) -> tuple[float, float, float]:
    from tui_fakes import FakeServices, demo_plan, wide_catalog
    from tui_support import make_app, settle, wait_until

    from pgtide.core.monitor.poll import TableSyncState
    from pgtide.screens.dashboard import DashboardScreen, table_cells
    from pgtide.screens.state import table_key_text

    catalog = replace(wide_catalog("shop", 1_000, schemas=5), database="shop")
    fake = FakeServices(catalogs={"shop": catalog}, lag=(0,))
    app = make_app(services=fake, poll_seconds=3600)
    timings: list[float] = []
    baseline: list[float] = []
    async with app.run_test(size=(120, 34)) as pilot:
        await settle(pilot)
        app.open_dashboard(demo_plan())
        await wait_until(pilot, lambda: app.dashboard is not None and app.dashboard.latest is not None, what="a poll")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, DashboardScreen) and app.dashboard is not None
        model = app.dashboard
        monitor = fake.monitors[-1]
        statuses = []
        for tick in range(ticks):
            # One poll's worth of change: a tenth of the tables in another state, the lag moving.
            status = monitor.poll()
            pending = tuple(TableSyncState(t.schema, t.name, "data copy" if tick % 2 else "sync")
                            for i, t in enumerate(model.tables) if (i + tick) % 10 == 0)
            db = status.databases[0]
            changed = replace(db, lag_bytes=1024 * (1 + tick % 7), target=replace(db.target, pending_tables=pending))
            statuses.append(replace(status, databases=(changed,)))
        table = screen.query_one("#dashboard-tables")
        clock = FrameClock(app, table)
        for status in statuses:
            clock.reset()
            started = time.perf_counter()
            model.record(status)
            screen.redraw()
            timings.append(await clock.next_frame(after_measuring=False) - started)
            await settle(pilot)
        # Baseline: the same ticks, the table cleared and refilled each time.
        for status in statuses:
            clock.reset()
            started = time.perf_counter()
            model.record(status)
            table.clear()
            for entry in model.tables:
                table.add_row(*table_cells(model, entry, False), key=table_key_text(entry.key))
            baseline.append(await clock.next_frame(after_measuring=True) - started)
            await settle(pilot)
    return statistics.median(timings), max(timings), statistics.median(baseline)


def main() -> int:
    import pgtide.app.tui  # noqa: F401 - warm imports for the in-process measurements only

    ours, baseline = first_frame()
    print(f"first frame, process start to start screen:    {ours * 1000:7.0f} ms   (target <= 1000 ms; "
          f"empty Textual app: {baseline * 1000:.0f} ms)")
    median, worst, rebuild, rebuild_worst = asyncio.run(picker_keystrokes())
    print(f"picker, 10,000 tables, keystroke to frame:     {median * 1000:7.1f} ms median, {worst * 1000:.1f} ms worst "
          f"(target <= 100 ms; unbounded DataTable rebuild: {rebuild * 1000:.1f} ms median, "
          f"{rebuild_worst * 1000:.0f} ms worst)")
    median, worst, rebuild = asyncio.run(dashboard_ticks())
    print(f"dashboard, 1,000 tables, one refresh tick:     {median * 1000:7.1f} ms median, {worst * 1000:.1f} ms worst "
          f"(target <= 50 ms; DataTable clear + refill: {rebuild * 1000:.1f} ms median)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
