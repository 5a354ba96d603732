"""The Run screen during the index phase: how many indexes and constraints are built, and the one
building now (from core's IndexProgress events), then how many were built once it is over."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import ProgressBar, Static
from textual.widgets._progress_bar import Bar
from tui_fakes import FIXED_NOW, FakeServices, wizard_state
from tui_support import make_app, open_pick, settle, wait_until

from pgtide.app.tui import PgtideApp
from pgtide.core.catalog.scope import Scope
from pgtide.core.engine.migrate import DatabaseResult
from pgtide.core.infra.events import (
    CancelToken,
    Emit,
    IndexProgress,
    PhaseFinished,
    PhaseStarted,
    TableCopied,
)
from pgtide.core.model.plan import Plan
from pgtide.screens.run import RunScreen

Snap = Callable[..., bool]

BUILDING = IndexProgress("shop", 3, 7, current="orders_pkey", phase="building index: scanning table",
                         blocks_done=42, blocks_total=100, building=2, at=FIXED_NOW.timestamp())


class IndexPhaseServices(FakeServices):
    """init copies every table at once, then stays in the index phase until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.in_indexes = threading.Event()
        self.release = threading.Event()

    def init(self, plan: Plan, scope: Scope | None, emit: Emit, cancel: CancelToken) -> list[DatabaseResult]:
        assert scope is not None
        at = FIXED_NOW.timestamp()
        emit(PhaseStarted(None, "globals", at=at))
        emit(PhaseFinished(None, "globals", 0.1, at=at))
        for db in scope.databases:
            for phase in ("target", "publication", "schema"):
                emit(PhaseStarted(db.name, phase, at=at))
                emit(PhaseFinished(db.name, phase, 0.1, at=at))
            emit(PhaseStarted(db.name, "data", at=at))
            for table in db.tables:
                if table.copies_rows:
                    emit(TableCopied(db.name, table.schema, table.name, table.info.row_estimate or 0,
                                     table.estimated_bytes, 0.5, at=at))
            emit(PhaseFinished(db.name, "data", 1.0, at=at))
            emit(PhaseStarted(db.name, "indexes", at=at))
            emit(IndexProgress(db.name, 0, 7, at=at))
            emit(BUILDING)
            self.in_indexes.set()
            while not self.release.wait(0.05):
                cancel.check()  # the app cancels a running init when it exits
            emit(IndexProgress(db.name, 7, 7, at=at))
            emit(PhaseFinished(db.name, "indexes", 2.0, at=at))
            emit(PhaseStarted(db.name, "sync", at=at))
            emit(PhaseFinished(db.name, "sync", 0.1, at=at))
        return [DatabaseResult(db.name, "streaming", len(db.tables), 0, 0, 1.0) for db in scope.databases]


async def to_review(pilot: Pilot[Any]) -> PgtideApp:
    """Review with every check passed (the table without a key copied as schema only)."""
    app = await open_pick(pilot, wizard_state())
    app.show_filters()
    await settle(pilot)
    app.wizard.set_mode(("shop", "public", "audit_log"), "schema_only")
    app.show_review()
    await settle(pilot)
    return app


async def start_run(pilot: Pilot[Any], fake: IndexPhaseServices) -> PgtideApp:
    app = await to_review(pilot)
    await settle(pilot)
    await pilot.press("g")
    await wait_until(pilot, lambda: fake.in_indexes.is_set() and app.migration is not None
                     and app.migration.index_progress.get("shop") == BUILDING, timeout=20, what="the index phase")
    await pilot.pause()
    return app


def shown(app: PgtideApp) -> str:
    line = app.screen.query_one("#run-indexes", Static)
    assert line.display and line.region.height == 1, "the index line is not on screen"
    return str(line.visual)


async def test_run_screen_shows_the_index_phase() -> None:
    fake = IndexPhaseServices()
    app = make_app(services=fake, poll_seconds=3600)
    try:
        async with app.run_test(size=(120, 34)) as pilot:
            await start_run(pilot, fake)
            assert isinstance(app.screen, RunScreen)
            text = shown(app)
            assert text == "indexes 3/7 · building orders_pkey (scanning table 42 %) and 1 more"
            # Not cut: it fits in one line even at 80 columns (the pane is 76 wide there).
            assert len(text) <= 76 <= app.screen.query_one("#run-indexes", Static).content_size.width
            fake.release.set()
            await wait_until(pilot, lambda: app.migration is not None and app.migration.state == "streaming",
                             what="streaming")
            await pilot.pause()
            assert shown(app) == "indexes 7/7 built"
    finally:
        fake.release.set()


async def test_the_index_line_is_hidden_before_the_index_phase() -> None:
    fake = FakeServices(hold_init=True)  # held in the data phase
    app = make_app(services=fake, poll_seconds=3600)
    try:
        async with app.run_test(size=(120, 34)) as pilot:
            await to_review(pilot)
            await pilot.press("g")
            await wait_until(pilot, lambda: isinstance(app.screen, RunScreen) and app.migration is not None
                             and any(r.done for r in app.migration.tables.values()), timeout=20,
                             what="the data phase")
            assert not app.screen.query_one("#run-indexes", Static).display
    finally:
        fake.hold.set()


@pytest.mark.parametrize("size", [(80, 24), (120, 34), (160, 48)], ids=lambda size: f"{size[0]}x{size[1]}")
def test_run_in_the_index_phase(snap_compare: Snap, size: tuple[int, int]) -> None:
    fake = IndexPhaseServices()

    async def run_before(pilot: Pilot[Any]) -> None:
        app = await start_run(pilot, fake)
        assert app.migration is not None
        # A pinned clock, as the data-phase picture has: 20 s into the run, 5 s into indexes.
        app.migration.data_started_at = 100.0
        app.migration.started_at = 95.0
        app.migration.phase_started_at = dict.fromkeys(app.migration.phase_started_at, 110.0)
        app.migration.clock = lambda: 115.0
        app.migration.finished_at = None
        app.screen.redraw()  # type: ignore[attr-defined]
        progress = app.screen.query_one(ProgressBar)
        progress.query_one(Bar).percentage = progress.percentage
        await pilot.pause()

    app = make_app(services=fake, poll_seconds=3600)
    try:
        assert snap_compare(app, terminal_size=size, run_before=run_before)
    finally:
        fake.release.set()
