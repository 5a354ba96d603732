"""The Cutover screen: preflight first, a typed confirmation gates the run, steps live, the result.

With the fixed answers of tui_fakes (the gate and the flow), then once against real
clusters (a migration streams, the screen cuts it over, the target takes writes).
"""

from __future__ import annotations

from typing import Any

import pytest
from pgharness import PgCluster
from textual.widgets import Button, Checkbox, Input, Static
from tui_fakes import FakeServices, demo_plan
from tui_support import make_app, settle, wait_until

from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.model.plan import Options, Plan
from pgtide.core.model.selection import Selection
from pgtide.core.session import MigrationSession
from pgtide.screens.cutover import CutoverScreen


def _text(app: Any, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def test_the_cutover_waits_for_a_clean_preflight_and_the_typed_name() -> None:
    services = FakeServices()
    app = make_app(services=services)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.push_screen(CutoverScreen(demo_plan(), ("shop",)))
        await settle(pilot)
        go = app.screen.query_one("#go", Button)
        assert go.disabled  # nothing runs before a preflight
        await pilot.press("p")
        await settle(pilot)
        checks = _text(app, "#checks")
        assert "no password on the target: shop_app" in checks and "--copy-role-passwords" in checks
        assert "1 check(s) stop the cutover" in checks
        assert go.disabled and app.screen.query_one("#confirm", Input).disabled
        # The remedy, from the screen: copy the verifiers, then the preflight again.
        app.screen.query_one("#copy-passwords", Checkbox).value = True
        await settle(pilot)
        assert "run the preflight again" in _text(app, "#checks")
        await pilot.press("p")
        await settle(pilot)
        assert "Ready. Type 'shop'" in _text(app, "#checks")
        confirm = app.screen.query_one("#confirm", Input)
        confirm.value = "sho"
        await settle(pilot)
        assert go.disabled  # the name, exactly
        confirm.value = "shop"
        await settle(pilot)
        assert not go.disabled
        await pilot.click("#go")
        await settle(pilot)
        await wait_until(pilot, lambda: "cut over: write downtime 0.64 s" in _text(app, "#result"),
                         what="the result")
        steps = _text(app, "#steps")
        assert all(name in steps for name in ("fence", "drain", "sequences", "final verify", "switch"))
        assert app.screen.query_one("#go", Button).disabled  # once is enough
        assert app.screen.query_one("#abort", Button).disabled


async def test_back_while_running_is_refused_and_abort_cancels() -> None:
    services = FakeServices()
    app = make_app(services=services)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = CutoverScreen(demo_plan(), ("shop",))
        app.push_screen(screen)
        await settle(pilot)
        screen.running = True  # as during a run: Back must not leave a fenced source behind
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is screen
        screen.running = False
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is not screen


@pytest.mark.timeout(300)
async def test_the_screen_cuts_a_real_migration_over(source_cluster: PgCluster, target_cluster: PgCluster) -> None:
    db = source_cluster.create_database()
    source_cluster.execute("CREATE TABLE t (id serial PRIMARY KEY, v text); "
                           "INSERT INTO t (v) SELECT 'x' FROM generate_series(1, 300)", dbname=db)
    plan = Plan(Endpoint.parse(source_cluster.url(db), env={}), Endpoint.parse(target_cluster.url(db), env={}),
                Selection.from_cli(include_databases=db), Options(jobs=1))
    try:
        session = MigrationSession.open(plan, selection_given=False)
        assert [r.status for r in session.init()] == ["streaming"]
        assert session.verify().ok
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            app.push_screen(CutoverScreen(plan, (db,)))
            await settle(pilot)
            await pilot.press("p")
            await wait_until(pilot, lambda: "Ready." in _text(app, "#checks"), timeout=120, what="the preflight")
            app.screen.query_one("#confirm", Input).value = db
            await settle(pilot)
            await pilot.click("#go")
            await wait_until(pilot, lambda: _text(app, "#result").strip() not in ("", "Aborting: lifting the fence…"),
                             timeout=120, what="the cutover")
            assert "cut over: write downtime" in _text(app, "#result"), _text(app, "#result")
        new = target_cluster.execute("INSERT INTO t (v) VALUES ('on the target') RETURNING id", dbname=db)[0][0]
        assert new > 300
        assert target_cluster.execute("SELECT count(*) FROM pg_subscription") == [(0,)]
    finally:
        for cluster in (target_cluster, source_cluster):
            cluster.clean_replication()
            cluster.drop_database(db)


@pytest.mark.parametrize("size", [(80, 24), (120, 34), (160, 48)], ids=lambda size: f"{size[0]}x{size[1]}")
def test_snapshot_after_a_failed_preflight(snap_compare: Any, size: tuple[int, int]) -> None:
    async def run_before(pilot: Any) -> None:
        await settle(pilot)
        pilot.app.push_screen(CutoverScreen(demo_plan(), ("shop",)))
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)

    assert snap_compare(make_app(services=FakeServices(), poll_seconds=3600), terminal_size=size,
                        run_before=run_before)
