"""The app's one-step fixes and sync-health actions: Review's Fix, the dashboard's drift and apply-error actions."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from test_trust import to_review
from tui_fakes import FakeMonitor, FakeServices, demo_plan
from tui_support import make_app, settle, wait_until

from pgtide.core.monitor.drift import Difference, DriftReport, Statement, TableDrift
from pgtide.core.monitor.state import MigrationStatus
from pgtide.widgets.modals import ConfirmModal


async def test_fix_in_review_lists_the_statements_applies_them_and_checks_again() -> None:
    fake = FakeServices(validation_error=True)
    fake.fixable = True
    async with make_app(services=fake).run_test(size=(120, 34)) as pilot:
        app = await to_review(pilot)
        await pilot.press("f")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        assert 'REPLICA IDENTITY FULL' in app.screen.question and "[source · shop]" in app.screen.question
        await pilot.click("#confirm-no")  # cancelling changes nothing
        await settle(pilot)
        assert fake.fixes_applied == []
        await pilot.press("f")
        await pilot.pause()
        await pilot.click("#confirm-yes")
        await settle(pilot)
        assert [f.check for f in fake.fixes_applied] == ["tables have a primary key or replica identity"]


class DriftingMonitor(FakeMonitor):
    """Streaming, with a column the target lacks and a subscription stopped by an error."""

    def poll(self) -> MigrationStatus:
        status = super().poll()
        (db,) = status.databases
        drift = DriftReport("shop", None, (TableDrift("public", "orders", (Difference(
            "column_missing", "column note only on the source",
            (Statement("target", "shop", 'ALTER TABLE "public"."orders" ADD COLUMN "note" text'),)),)),))
        target = replace(db.target, enabled=False, apply_error_count=1, last_error="duplicate key value",
                         failed_table="public.orders", failed_lsn=0x16B3748)
        return MigrationStatus((replace(db, drift=drift, target=target),), status.polled_at)


async def test_the_dashboard_offers_schema_apply_enable_and_skip_each_after_asking() -> None:
    fake = FakeServices(lag=(0,))
    fake.open_monitor = lambda plan, databases, tables=0: DriftingMonitor(databases, (0,))  # type: ignore[method-assign]
    app = make_app(services=fake, poll_seconds=3600)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.open_dashboard(demo_plan())
        await wait_until(pilot, lambda: app.dashboard is not None and app.dashboard.latest is not None, what="a poll")
        await settle(pilot)
        panel = str(app.screen.query_one(".panel-lines").render())
        assert "schema drift in 1 table(s)" in panel and "apply stopped" in panel
        for key, attribute, expected in (("a", "schema_applied", ["shop"]), ("e", "enabled", ["shop"]),
                                         ("k", "skipped", [("shop", 0x16B3748)])):
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, ConfirmModal), key
            question: Any = app.screen.question
            if key == "a":
                assert 'ADD COLUMN "note" text' in question
            if key == "k":
                assert "thrown away" in question
            await pilot.click("#confirm-yes")
            await settle(pilot)
            assert getattr(fake, attribute) == expected, key
