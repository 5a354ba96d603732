"""Connect with a foreign source: a MariaDB URL or an SQLite file path pasted into the source's
URL box is accepted (its password moved into the masked field), tested by listing its tables,
and Next goes on to its Pick."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Static
from tui_fakes import FakeServices, wizard_state
from tui_support import make_app, settle, wait_until

from pgtide.app.tui import PgtideApp
from pgtide.core.foreign.source import CaptureCheck
from pgtide.screens.connect import ConnectScreen
from pgtide.screens.foreign_pick import ForeignPickScreen

SECRET = "s3cret-never-shown"


def result(app: PgtideApp, side: str) -> str:
    return str(app.screen.query_one(f"#{side}-form").query_one(".endpoint-result", Static).content)


async def paste_source(pilot: Pilot[Any], text: str) -> PgtideApp:
    app = pilot.app
    assert isinstance(app, PgtideApp)
    await settle(pilot)
    app.open_wizard(wizard_state(), ())
    await settle(pilot)
    assert isinstance(app.screen, ConnectScreen)
    url = app.screen.query_one("#source-form").query_one("#url", Input)
    url.value = text
    await pilot.press()  # let the change event through
    url.focus()
    await pilot.press("enter")
    await settle(pilot)
    return app


async def test_a_mariadb_url_is_accepted_and_tested_by_listing_its_tables() -> None:
    fake = FakeServices()
    app = make_app(services=fake)
    async with app.run_test(size=(120, 34)) as pilot:
        await paste_source(pilot, f"mariadb://app:{SECRET}@old-db:3306/shop")
        source = app.screen.query_one("#source-form")
        assert source.query_one("#password", Input).value == SECRET
        assert source.query_one("#url", Input).value == "mariadb://app@old-db/shop"
        assert source.query_one("#host", Input).value == ""
        assert app.wizard.foreign_source is not None and app.wizard.foreign_source.password is None
        assert "MariaDB source mariadb://app@old-db/shop: Test connection lists its tables" in result(app, "source")
        await pilot.press("ctrl+t")
        await settle(pilot)
        shown = result(app, "source")
        assert "MariaDB · 3 tables · binlog on, ROW format, FULL row images (MariaDB 11.4) (change capture ready)" \
            in shown, shown
        assert "about 23,200 rows · 1 without a key" in shown
        assert fake.foreign_tested[-1].password == SECRET  # the masked field's password reached the test
        assert SECRET not in app.export_screenshot()


async def test_a_source_that_cannot_stream_shows_what_was_seen_and_the_remedy() -> None:
    fake = FakeServices()
    fake.foreign_capture = CaptureCheck(False, "binlog_format is STATEMENT",
                                        "SET GLOBAL binlog_format = 'ROW'; one-shot copies and --refresh-every "
                                        "work without it.")
    app = make_app(services=fake)
    async with app.run_test(size=(120, 34)) as pilot:
        await paste_source(pilot, "mariadb://app@old-db/shop")
        await pilot.press("ctrl+t")
        await settle(pilot)
        shown = result(app, "source")
        assert "▲ MariaDB · 3 tables" in shown and "change capture: binlog_format is STATEMENT" in shown
        assert "Fix: SET GLOBAL binlog_format = 'ROW'" in shown


async def test_an_sqlite_path_is_accepted_and_a_postgres_url_takes_the_source_back(tmp_path: Path) -> None:
    path = tmp_path / "shop.db"
    sqlite3.connect(path).close()
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    conn.close()
    app = make_app(services=FakeServices())
    async with app.run_test(size=(120, 34)) as pilot:
        await paste_source(pilot, str(path))
        foreign = app.wizard.foreign_source
        assert foreign is not None and foreign.kind == "sqlite" and foreign.path == str(path.resolve())
        assert "SQLite source sqlite://" in result(app, "source")
        url = app.screen.query_one("#source-form").query_one("#url", Input)
        url.value = "postgresql://app@old-db/shop"
        await pilot.press("enter")
        await settle(pilot)
        assert app.wizard.foreign_source is None
        assert app.screen.query_one("#source-form").query_one("#host", Input).value == "old-db"


async def test_next_with_a_foreign_source_tests_both_sides_and_opens_its_pick() -> None:
    fake = FakeServices()
    app = make_app(services=fake)
    async with app.run_test(size=(120, 34)) as pilot:
        await paste_source(pilot, "mariadb://app@old-db/shop")
        await pilot.press("ctrl+n")
        await wait_until(pilot, lambda: isinstance(app.screen, ForeignPickScreen), what="the foreign Pick")
        assert app.wizard.target is not None
        choices = app.wizard.foreign
        assert choices is not None and choices.source.redacted() == "mariadb://app@old-db/shop"
        assert [t.name for t in choices.tables] == ["audit_log", "customers", "orders"]
        assert choices.target_database == "shop"  # the target form named postgres: the source's name instead


async def test_next_is_blocked_when_the_foreign_source_does_not_answer() -> None:
    app = make_app(services=FakeServices())
    async with app.run_test(size=(120, 34)) as pilot:
        await paste_source(pilot, "mariadb://app@unreachable/shop")
        await pilot.press("ctrl+n")
        await settle(pilot)
        assert isinstance(app.screen, ConnectScreen)
        assert "✖ Cannot connect" in result(app, "source")


@pytest.mark.parametrize("size", [(80, 24), (120, 34)], ids=lambda size: f"{size[0]}x{size[1]}")
def test_snapshot_connect_with_a_tested_mariadb_source(snap_compare: Any, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await paste_source(pilot, f"mariadb://app:{SECRET}@old-db:3306/shop")
        await pilot.press("ctrl+t")
        await settle(pilot)

    assert snap_compare(make_app(services=FakeServices()), terminal_size=size, run_before=run_before)
