"""``pgtide demo``: throwaway servers that always go away, and a clear word when there are none."""

from __future__ import annotations

import glob
import tempfile
from pathlib import Path
from typing import Any

import pytest

from pgtide.app import cli
from pgtide.core.infra import localcluster
from pgtide.core.infra import tools as pgtools
from pgtide.core.infra.localcluster import LocalCluster


def demo_leftovers() -> set[str]:
    return set(glob.glob(str(Path(tempfile.gettempdir()) / "pgtide-demo-*")))


def test_without_server_binaries_it_says_how_to_get_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(pgtools, "DEBIAN_ROOT", tmp_path / "nothing-here")
    monkeypatch.setattr(localcluster.shutil, "which", lambda name: None)
    monkeypatch.delenv("PGTIDE_PG_BINDIR", raising=False)
    before = demo_leftovers()
    assert cli.main(["demo"]) == 3
    err = capsys.readouterr().err
    assert "no PostgreSQL server binaries" in err and "apt-get install postgresql" in err
    assert demo_leftovers() == before  # nothing was started


def test_demo_runs_the_app_on_its_servers_then_removes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from pgtide.app import demo, tui
    from pgtide.core.catalog.server import probe
    from pgtide.core.model.profiles import load_profile

    seen: dict[str, Any] = {}

    def fake_run_app(app: tui.PgtideApp) -> int:
        # What the app would open: the demo profile, pointing at two live servers.
        plan = load_profile(demo.DEMO_PROFILE).plan
        seen["source"] = probe(plan.source).wal_level
        seen["target"] = probe(plan.target).wal_level
        seen["shop"] = plan.source.dbname
        seen["time_filters"] = len(plan.selection.time_filters)
        seen["leftovers"] = demo_leftovers()
        return 0

    monkeypatch.setattr(tui, "run_app", fake_run_app)
    before = demo_leftovers()
    assert demo.run_demo(scale=0.02) == 0
    assert seen["source"] == seen["target"] == "logical"
    assert seen["shop"] == "shop" and seen["time_filters"] == 1
    assert len(seen["leftovers"] - before) == 3  # the workspace and two data directories
    assert demo_leftovers() == before


def test_a_local_cluster_is_gone_after_destroy() -> None:
    cluster = LocalCluster(localcluster.find_server_binaries(), label="test")
    try:
        cluster.start()
        from pgtide.core.catalog.server import probe
        from pgtide.core.infra.endpoint import Endpoint

        assert probe(Endpoint.parse(cluster.url())).wal_level == "logical"
    finally:
        cluster.destroy()
    assert not cluster.root.exists()
    cluster.destroy()  # twice is fine
