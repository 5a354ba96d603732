"""The app driven end to end with Pilot, against real throwaway clusters (the harness's).

1. connect → pick two tables → a row filter and a time filter → review → start → the
   dashboard shows streaming with the lag near 0 → verify now: every table matches;
2. choices that fail validation show the failure and its remedy, and Start stays off;
3. save a profile (password to the keyring, never to the file), then load it back.
"""

from __future__ import annotations

from typing import Any

import pytest
from keyring.backend import KeyringBackend
from pgharness import PASSWORD_ROLE, PgCluster
from psycopg import sql
from textual.pilot import Pilot
from textual.widgets import Button, Input, Select, Static
from tui_support import make_app, settle, wait_until

from pgtide.app.tui import PgtideApp
from pgtide.screens.connect import ConnectScreen
from pgtide.screens.dashboard import DashboardScreen
from pgtide.screens.filters import FiltersScreen
from pgtide.screens.pick import PickScreen
from pgtide.screens.review import ReviewScreen
from pgtide.screens.run import RunScreen
from pgtide.screens.start import StartScreen
from pgtide.widgets.endpoint_form import EndpointForm
from pgtide.widgets.modals import ErrorModal, NamePrompt
from pgtide.widgets.table_picker import TablePicker

SECRET = "s3cret-Tide!"


class MemoryKeyring(KeyringBackend):
    """An OS keyring stand-in that lives for one test."""

    priority = 10  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.entries.pop((service, username), None)


def static_text(app: PgtideApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def fill_form(pilot: Pilot[Any], side: str, **values: str) -> None:
    form = pilot.app.screen.query_one(f"#{side}-form", EndpointForm)
    for name, value in values.items():
        form.query_one(f"#{name}", Input).value = value
    await pilot.pause()


async def connect(pilot: Pilot[Any], source: PgCluster, database: str, target: PgCluster) -> None:
    """Start screen → connect form filled (source by pasting a URL) → both tested → pick screen."""
    app = pilot.app
    await settle(pilot)
    assert isinstance(app.screen, StartScreen)
    await pilot.press("n")
    await settle(pilot)
    assert isinstance(app.screen, ConnectScreen)
    form = app.screen.query_one("#source-form", EndpointForm)
    form.query_one("#url", Input).value = source.url(database)
    await settle(pilot)
    assert form.values()["dbname"] == database and form.values()["port"] == str(source.port)
    await fill_form(pilot, "target", host="127.0.0.1", port=str(target.port), user="postgres", dbname="postgres")
    await pilot.press("ctrl+t")
    await settle(pilot)
    for side in ("source", "target"):
        result = str(app.screen.query_one(f"#{side}-form .endpoint-result", Static).render())
        assert "PostgreSQL" in result and "wal_level = logical" in result, result
    await pilot.press("ctrl+n")
    await settle(pilot)
    assert isinstance(app.screen, PickScreen)


async def pick_only(pilot: Pilot[Any], *names: str) -> None:
    """In the table picker: select none, then each named table through the filter box."""
    picker = pilot.app.screen.query_one("#tables", TablePicker)
    picker.table.focus()
    await pilot.press("n")
    for name in names:
        picker.filter_input.value = name
        await pilot.pause()
        picker.table.focus()
        await pilot.press("space")
    picker.filter_input.value = ""
    await pilot.pause()
    assert picker.selected == {f"public.{name}" for name in names}


async def set_filters(pilot: Pilot[Any], database: str) -> None:
    """metrics: the last 90 days of recorded_at; page_views: id > 100. Both checked by the server."""
    screen = pilot.app.screen
    assert isinstance(screen, FiltersScreen)
    screen.show_table((database, "public", "metrics"))
    await pilot.pause()
    screen.query_one("#time-column", Select).value = "recorded_at"
    await settle(pilot)
    assert "accepted by the server" in static_text(pilot.app, "#time-result")
    screen.show_table((database, "public", "page_views"))
    await pilot.pause()
    screen.query_one("#row-filter", Input).value = "id > 100"
    await pilot.click("#check-row")
    await settle(pilot)
    assert "accepted by the server" in static_text(pilot.app, "#row-result")


async def test_connect_pick_filter_start_stream_verify(
    source_cluster: PgCluster, target_cluster: PgCluster, shop_db: str
) -> None:
    app = make_app(poll_seconds=0.5)
    async with app.run_test(size=(120, 34)) as pilot:
        await connect(pilot, source_cluster, shop_db, target_cluster)
        await pick_only(pilot, "metrics", "page_views")
        await pilot.press("ctrl+n")
        await settle(pilot)
        await set_filters(pilot, shop_db)
        await pilot.press("ctrl+n")
        await settle(pilot)
        assert isinstance(app.screen, ReviewScreen)
        assert app.screen.report is not None and app.screen.report.ok, app.screen.report.errors
        assert not app.screen.query_one("#start", Button).disabled
        plan_text = static_text(app, "#plan-words")
        assert "recorded_at" in plan_text and "id > 100" in plan_text

        await pilot.press("g")
        await pilot.pause()
        assert isinstance(app.screen, RunScreen)
        await wait_until(pilot, lambda: app.migration is not None and app.migration.finished, what="init to finish")
        assert app.migration is not None and app.migration.state == "streaming", app.migration.error
        assert {row.name for row in app.migration.tables.values() if row.done} == {"metrics", "page_views"}

        # Changes after the snapshot must arrive too.
        source_cluster.execute("INSERT INTO page_views (path) SELECT '/new/' || g FROM generate_series(1, 50) g",
                               dbname=shop_db)
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)

        def caught_up() -> bool:
            status = app.dashboard.latest.database(shop_db) if app.dashboard and app.dashboard.latest else None
            return status is not None and str(status.state) == "streaming" and (status.lag_bytes or 0) < 64 * 1024

        await wait_until(pilot, caught_up, what="streaming with the lag near 0")
        assert "streaming" in str(app.screen.query_one("DatabasePanel .panel-lines", Static).render())

        await pilot.press("v")
        await wait_until(pilot, lambda: app.dashboard is not None and app.dashboard.verify_state in ("done", "failed"),
                         what="verify")
        assert app.dashboard is not None and app.dashboard.verify_report is not None
        report = app.dashboard.verify_report
        assert report.ok and {t.name for t in report.tables} == {"metrics", "page_views"}, report.summary()
        assert "all 2 table(s) match" in static_text(app, "#verify-status")
        await pilot.press("ctrl+q")
        await pilot.pause()


async def test_validation_errors_show_their_remedy(
    source_cluster: PgCluster, target_cluster: PgCluster, shop_db: str
) -> None:
    app = make_app()
    async with app.run_test(size=(120, 34)) as pilot:
        await connect(pilot, source_cluster, shop_db, target_cluster)
        # Every table stays selected, audit_log (no primary key) included.
        await pilot.press("ctrl+n")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, FiltersScreen)
        # A row filter on a column outside the replica identity: refused in place, with the fix.
        screen.show_table((shop_db, "public", "orders"))
        await pilot.pause()
        screen.query_one("#row-filter", Input).value = "status = 'paid'"
        await pilot.click("#check-row")
        await settle(pilot)
        result = static_text(app, "#row-result")
        assert "replica identity" in result and "REPLICA IDENTITY FULL" in result, result
        row_filter = screen.query_one("#row-filter", Input)
        row_filter.value = ""
        row_filter.focus()
        await pilot.press("enter")  # an empty filter removes it
        await pilot.pause()
        assert app.wizard.row_filters == {}

        await pilot.press("ctrl+n")
        await settle(pilot)
        review = app.screen
        assert isinstance(review, ReviewScreen) and review.report is not None
        assert not review.report.ok
        checks = str(review.query_one("#checks").query(Static).first().render())
        assert "primary key or replica identity" in checks and "REPLICA IDENTITY FULL" in checks, checks
        assert review.query_one("#start", Button).disabled
        await pilot.press("g")  # refused: nothing starts
        await pilot.pause()
        assert app.migration is None and isinstance(app.screen, ReviewScreen)

        # The remedy the checklist offers works: audit_log schema-only, and the plan passes.
        await pilot.press("escape")
        await pilot.pause()
        filters = app.screen
        assert isinstance(filters, FiltersScreen)
        filters.show_table((shop_db, "public", "audit_log"))
        await pilot.pause()
        await pilot.click("#mode-schema")
        await pilot.pause()
        await pilot.press("ctrl+n")
        await settle(pilot)
        review = app.screen
        assert isinstance(review, ReviewScreen) and review.report is not None
        assert review.report.ok, review.report.errors
        assert not review.query_one("#start", Button).disabled


@pytest.fixture
def password_role(target_cluster: PgCluster) -> Any:
    target_cluster.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
        sql.Identifier(PASSWORD_ROLE), sql.Literal(SECRET)))
    yield PASSWORD_ROLE
    target_cluster.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(PASSWORD_ROLE)))


async def test_save_then_reload_a_profile(
    source_cluster: PgCluster, target_cluster: PgCluster, shop_db: str, password_role: str, use_keyring: Any,
    private_dirs: Any,
) -> None:
    keyring = use_keyring(MemoryKeyring())
    app = make_app()
    async with app.run_test(size=(120, 34)) as pilot:
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        await fill_form(pilot, "source", host="127.0.0.1", port=str(source_cluster.port), user="postgres",
                        dbname=shop_db)
        await fill_form(pilot, "target", host="127.0.0.1", port=str(target_cluster.port), user=password_role,
                        dbname="postgres", password=SECRET)
        app.screen.query_one("#target-form", EndpointForm).remember = True
        await pilot.press("ctrl+t")
        await settle(pilot)
        target_result = str(app.screen.query_one("#target-form .endpoint-result", Static).render())
        assert "PostgreSQL" in target_result, target_result
        assert SECRET in keyring.entries.values()
        assert SECRET not in app.export_screenshot()
        await pilot.press("ctrl+n")
        await settle(pilot)
        await pick_only(pilot, "metrics", "page_views")
        await pilot.press("ctrl+n")
        await settle(pilot)
        await set_filters(pilot, shop_db)
        await pilot.press("ctrl+n")
        await settle(pilot)
        assert isinstance(app.screen, ReviewScreen)
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, NamePrompt)
        app.screen.query_one(Input).value = "tui-flow"
        await pilot.press("enter")
        await settle(pilot)
        assert app.wizard.profile_name == "tui-flow"

    profile_file = private_dirs / "config" / "profiles" / "tui-flow.toml"
    text = profile_file.read_text()
    assert SECRET not in text and "recorded_at" in text and "id > 100" in text

    # A new session: the profile is listed, and loading it restores every choice.
    app = make_app()
    async with app.run_test(size=(120, 34)) as pilot:
        await settle(pilot)
        start = app.screen
        assert isinstance(start, StartScreen) and [p.name for p in start.profiles] == ["tui-flow"]
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ConnectScreen)
        target_form = app.screen.query_one("#target-form", EndpointForm)
        assert target_form.values()["user"] == password_role
        assert target_form.values()["password"] == SECRET  # from the keyring, shown masked
        assert SECRET not in app.export_screenshot()
        await pilot.press("ctrl+n")
        await settle(pilot)
        assert isinstance(app.screen, PickScreen)
        picker = app.screen.query_one("#tables", TablePicker)
        assert picker.selected == {"public.metrics", "public.page_views"}
        await pilot.press("ctrl+n")
        await settle(pilot)
        assert app.wizard.row_filters == {(shop_db, "public", "page_views"): "id > 100"}
        assert {key: (c.column, c.window) for key, c in app.wizard.time_filters.items()} == {
            (shop_db, "public", "metrics"): ("recorded_at", "90 days")}
        assert not any(isinstance(screen, ErrorModal) for screen in app.screen_stack)

    log_text = (private_dirs / "log" / "pgtide.log").read_text() if (private_dirs / "log" / "pgtide.log").exists() else ""
    assert SECRET not in log_text
