"""``pgtide demo``: two throwaway local servers, a sample database under a light write load, the app.

The servers' data directories and the migration records of this session live in one
temporary folder per run. Profiles do not: the "demo" profile, and any profile saved during
the demo, go to the user's real profile folder (the welcome dialog says where), so a profile
saved while trying pgtide is still there afterwards, in the Start list. Quitting the app,
Ctrl-C, SIGTERM or an error all end in the same ``finally``: the write load stops, both
servers stop and their files are removed.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..core.demo.data import WriteLoad

DEMO_PROFILE = "demo"

QUIT_WARNING = ("This is the demo: quitting also stops both throwaway servers and deletes their files — the "
                "migration, its replication and the copied data go with them.")


def welcome(source_url: str, target_url: str, profile_path: Path) -> str:
    """The demo's opening dialog: what runs, where it is, what to do, what quitting does."""
    return (
        "Two throwaway PostgreSQL servers are running, with a sample 'shop' database under a light write load:\n\n"
        f"  source  {source_url}\n"
        f"  target  {target_url}\n\n"
        "(connect with psql to either URL while the demo runs).\n\n"
        f"The 'demo' profile is filled in, saved as {profile_path}; profiles you save go to the same folder and "
        "stay after the demo (the demo's point at servers that will be gone).\n\n"
        "Go through the steps with Ctrl+N (Next), start, then watch the dashboard. ? or F1 explains each screen. "
        "Ctrl+Q quits and removes both servers."
    )


def _say(text: str) -> None:
    print(f"pgtide demo: {text}", file=sys.stderr, flush=True)


def run_demo(*, scale: float = 1.0) -> int:
    """Start the servers, load the sample, open the app; always clean up. Returns the exit code."""
    from ..core.infra.localcluster import LocalCluster, find_server_binaries

    # Before anything is started: without server binaries, say how to get them (exit code 3).
    bindir = find_server_binaries()
    workspace = Path(tempfile.mkdtemp(prefix="pgtide-demo-"))
    clusters: list[LocalCluster] = []
    load: WriteLoad | None = None
    saved_env = {name: os.environ.get(name) for name in ("PGTIDE_STATE_DIR",)}

    def clean_up() -> None:
        if load is not None:
            load.stop()
        for cluster in clusters:
            cluster.destroy()
        clusters.clear()
        shutil.rmtree(workspace, ignore_errors=True)

    # If the interpreter is torn down some other way, the servers must still go.
    atexit.register(clean_up)
    try:
        # The records of migrations between servers that are about to vanish go with them.
        os.environ["PGTIDE_STATE_DIR"] = str(workspace / "state")
        started = time.monotonic()
        _say(f"starting two throwaway PostgreSQL servers ({bindir})…")
        for label in ("source", "target"):
            cluster = LocalCluster(bindir, label=f"demo-{label}")
            clusters.append(cluster)
            cluster.start()
        source_cluster, target_cluster = clusters
        _say("loading the sample database 'shop'…")
        load, profile_path = _prepare(source_cluster.url(), target_cluster.url(), scale)
        _say(f"ready in {time.monotonic() - started:.1f} s; opening the app (Ctrl+Q quits and removes everything)")
        _say(f"source {source_cluster.url('shop')}  target {target_cluster.url()}  profile {profile_path}")

        from .tui import PgtideApp, run_app

        text = welcome(source_cluster.url("shop"), target_cluster.url(), profile_path)
        from ..screens.services import CoreServices

        # In this process, not a worker: the demo's servers end with the app, so must its migration.
        return run_app(PgtideApp(profile=DEMO_PROFILE, welcome=text, quit_warning=QUIT_WARNING,
                                 services=CoreServices(detached=False)))
    finally:
        clean_up()
        atexit.unregister(clean_up)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _say("stopped both servers and removed their files")


def _prepare(source_url: str, target_url: str, scale: float) -> tuple[WriteLoad, Path]:
    """Sample data, write load and the demo profile; returns the running write load and the profile's file."""
    from ..core.demo.data import DEMO_DATABASE, WriteLoad, load_sample
    from ..core.infra.endpoint import Endpoint
    from ..core.model.plan import Plan
    from ..core.model.profiles import save_profile
    from ..core.model.selection import Selection

    source = Endpoint.parse(source_url)
    target = Endpoint.parse(target_url)
    load_sample(source, scale=scale)
    load = WriteLoad(source)
    load.start()
    selection = Selection.from_cli(
        include_databases=DEMO_DATABASE,
        time_filters=f"{DEMO_DATABASE}.public.metrics:recorded_at:90 days",
        schema_only_tables=f"{DEMO_DATABASE}.public.audit_log",
    )
    profile = save_profile(DEMO_PROFILE, Plan(source.with_dbname(DEMO_DATABASE), target, selection))
    return load, profile.path

