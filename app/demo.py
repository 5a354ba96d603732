"""``pgtide demo``: two throwaway local servers, a sample database under a light write load, the app.

Everything the demo creates lives in one temporary folder per run: both servers' data
directories, and the profiles and job state of this session (so the demo never touches the
user's own profiles). Quitting the app, Ctrl-C, SIGTERM or an error all end in the same
``finally``: the write load stops, both servers stop and every file is removed.
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

WELCOME = (
    "Two throwaway PostgreSQL servers are running, with a sample 'shop' database under a light write load. "
    "The 'demo' profile is filled in: go through the steps with Ctrl+N, start, then watch the dashboard. "
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
    saved_env = {name: os.environ.get(name) for name in ("PGTIDE_CONFIG_DIR", "PGTIDE_STATE_DIR")}

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
        os.environ["PGTIDE_CONFIG_DIR"] = str(workspace / "config")
        os.environ["PGTIDE_STATE_DIR"] = str(workspace / "state")
        started = time.monotonic()
        _say(f"starting two throwaway PostgreSQL servers ({bindir})…")
        for label in ("source", "target"):
            cluster = LocalCluster(bindir, label=f"demo-{label}")
            clusters.append(cluster)
            cluster.start()
        source_cluster, target_cluster = clusters
        _say("loading the sample database 'shop'…")
        load = _prepare(source_cluster.url(), target_cluster.url(), scale)
        _say(f"ready in {time.monotonic() - started:.1f} s; opening the app (Ctrl+Q quits and removes everything)")

        from .tui import PgtideApp, run_app

        return run_app(PgtideApp(profile=DEMO_PROFILE, welcome=WELCOME))
    finally:
        clean_up()
        atexit.unregister(clean_up)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _say("stopped both servers and removed their files")


def _prepare(source_url: str, target_url: str, scale: float) -> WriteLoad:
    """Sample data, write load and the demo profile; returns the running write load."""
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
    save_profile(DEMO_PROFILE, Plan(source.with_dbname(DEMO_DATABASE), target, selection))
    return load

