"""Fixtures shared by every test: real throwaway PostgreSQL clusters, never the machine's own."""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pgharness import LOGICAL_SETTINGS, BinariesMissing, PgCluster, bindir_for, machine_bindir

_all_clusters: list[PgCluster] = []
# If pytest dies without running finalizers, still stop what we started.
atexit.register(lambda: [cluster.destroy() for cluster in _all_clusters])


def _start(bindir: Path, **settings: str) -> PgCluster:
    cluster = PgCluster(bindir, {**LOGICAL_SETTINGS, **settings})
    _all_clusters.append(cluster)
    try:
        cluster.start()
    except BaseException:
        cluster.destroy()
        raise
    return cluster


@pytest.fixture(autouse=True)
def private_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own config/state/log dirs and no OS keyring, never the user's."""
    root = tmp_path_factory.mktemp("pgtide-home")
    for var, sub in (("PGTIDE_CONFIG_DIR", "config"), ("PGTIDE_STATE_DIR", "state"), ("PGTIDE_LOG_DIR", "log")):
        monkeypatch.setenv(var, str(root / sub))
    # Child processes (CLI tests) inherit this: a deterministic "no keyring" machine.
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    # Migration ids resolved in an earlier test belong to its state directory.
    from pgtide.core.replication.identity import forget_resolved

    forget_resolved()
    yield root
    _stop_workers(root / "state" / "jobs")


def _stop_workers(jobs: Path) -> None:
    """A migration worker a test started (the app's Start, init --detach) ends with the test."""
    import json
    import signal
    import time

    from pgtide.core.jobs.worker import lock_held

    for directory in jobs.glob("*/worker.json") if jobs.is_dir() else ():
        migration = directory.parent.name
        if not lock_held(migration):
            continue
        pid = json.loads(directory.read_text()).get("pid")
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + 20
            while lock_held(migration) and time.monotonic() < deadline:
                time.sleep(0.1)
            if not lock_held(migration):
                break


@pytest.fixture(autouse=True)
def pooled_connections() -> Iterator[None]:
    """Every test runs with the per-command connection pools the CLI uses, so a helper that
    leaves a session changed for the next borrower shows up here, not at a user's."""
    from pgtide.core.infra.db import connection_pools

    with connection_pools():
        yield


@pytest.fixture
def use_keyring() -> Iterator[Callable[..., Any]]:
    """Install a keyring backend for one test; the previous one is put back afterwards."""
    import keyring

    previous = keyring.get_keyring()

    def install(backend: Any) -> Any:
        keyring.set_keyring(backend)
        return backend

    yield install
    keyring.set_keyring(previous)


@pytest.fixture(scope="session")
def pg_bindir() -> Path:
    try:
        return machine_bindir()
    except BinariesMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def source_cluster(pg_bindir: Path) -> Iterator[PgCluster]:
    """The migration source: wal_level=logical, plenty of slots and senders."""
    cluster = _start(pg_bindir)
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def target_cluster(pg_bindir: Path) -> Iterator[PgCluster]:
    """The migration target (same settings: it may also act as a source in some tests)."""
    cluster = _start(pg_bindir)
    yield cluster
    cluster.destroy()


@pytest.fixture
def source_db(source_cluster: PgCluster) -> Iterator[str]:
    """A fresh, empty database on the source; dropped (with its slots and publications) afterwards."""
    name = source_cluster.create_database()
    yield name
    source_cluster.clean_replication()
    source_cluster.drop_database(name)


@pytest.fixture
def target_db(target_cluster: PgCluster, source_cluster: PgCluster) -> Iterator[str]:
    """A fresh, empty database on the target; its subscriptions are dropped before the source's slots."""
    name = target_cluster.create_database()
    yield name
    target_cluster.clean_replication()
    target_cluster.drop_database(name)


@pytest.fixture
def cluster_factory() -> Iterator[Callable[..., PgCluster]]:
    """Start extra clusters with special settings or versions: ``cluster_factory(major=16, wal_level="replica")``."""
    started: list[PgCluster] = []

    def make(major: int | None = None, **settings: str) -> PgCluster:
        try:
            bindir = machine_bindir() if major is None else bindir_for(major)
        except BinariesMissing as exc:
            pytest.skip(str(exc))
        cluster = _start(bindir, **settings)
        started.append(cluster)
        return cluster

    yield make
    for cluster in started:
        cluster.destroy()


@pytest.fixture
def pgbouncer_factory() -> Iterator[Callable[..., Any]]:
    """Start throwaway PgBouncers (tests/pgbouncer_harness.py): ``pgbouncer_factory({"app": (cluster, dbname)})``;
    skipped when pgbouncer is not installed. Stopped and removed afterwards."""
    from pgbouncer_harness import PgBouncer, PgBouncerMissing

    started: list[PgBouncer] = []

    def make(databases: Any = None, **options: Any) -> PgBouncer:
        try:
            bouncer = PgBouncer(databases, **options)
        except PgBouncerMissing as exc:
            pytest.skip(str(exc))
        started.append(bouncer)
        bouncer.start()
        return bouncer

    yield make
    for bouncer in started:
        bouncer.destroy()
