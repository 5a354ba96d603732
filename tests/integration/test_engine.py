"""The zero-gap protocol, proven against real servers with a live writer, crashes and failures."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from engine_support import Writer, add_slow_table, differences, files_holding, replication_objects, wait_until_identical
from pgharness import HOSTILE_TABLES, PASSWORD_ROLE, PgCluster, create_fixture_schema, wait_for
from psycopg import sql

from pgtide.core.copy import snapshot as snapshot_copy
from pgtide.core.engine import migrate
from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.infra.errors import InputError, PgtideError
from pgtide.core.infra.events import Event, PhaseStarted, TableCopied
from pgtide.core.jobs.store import JobStore
from pgtide.core.model.plan import Options, Plan
from pgtide.core.model.selection import Selection
from pgtide.core.replication import naming

DB = "shop"


def _populate(cluster: PgCluster, *, big_rows: int = 20_000) -> None:
    """The fixture schema plus a big table (split into ranges), a filtered and a time-filtered one."""
    cluster.create_database(DB)
    create_fixture_schema(cluster, DB, rows=300)
    cluster.execute(
        f"""
        CREATE TABLE big (id bigint PRIMARY KEY, payload text, n numeric);
        INSERT INTO big SELECT g, repeat(md5(g::text), 3), g / 7.0 FROM generate_series(1, {big_rows}) g;
        CREATE TABLE events (id int PRIMARY KEY, region text, body jsonb);
        INSERT INTO events SELECT g, (ARRAY['eu','us'])[1 + g % 2], jsonb_build_object('g', g)
            FROM generate_series(1, 500) g;
        CREATE TABLE readings (id bigint PRIMARY KEY, at timestamptz NOT NULL, v float8);
        ALTER TABLE readings REPLICA IDENTITY FULL;
        INSERT INTO readings SELECT g, now() - g * interval '1 day', random() FROM generate_series(1, 300) g;
        ALTER TABLE events_no_pk REPLICA IDENTITY FULL;
        ANALYZE;
        """,
        dbname=DB,
    )


@pytest.fixture
def shop(source_cluster: PgCluster, target_cluster: PgCluster) -> Iterator[tuple[PgCluster, PgCluster]]:
    _populate(source_cluster)
    yield source_cluster, target_cluster
    target_cluster.clean_replication()
    target_cluster.drop_database(DB)
    source_cluster.clean_replication()
    source_cluster.drop_database(DB)


def _plan(source: PgCluster, target: PgCluster, **flags: object) -> Plan:
    return Plan(
        Endpoint.parse(source.url(dbname=DB), env={}),
        Endpoint.parse(target.url(dbname=DB), env={}),
        Selection.from_cli(**flags),  # type: ignore[arg-type]
        Options(jobs=3),
    )


FLAGS: dict[str, object] = {
    "schema_only_tables": ['"has space"'],
    "table_filters": ["events:id % 2 = 0"],
    "time_filters": ["readings:at:30 days"],
}


def test_zero_gap_under_a_live_writer(shop: tuple[PgCluster, PgCluster], monkeypatch: pytest.MonkeyPatch) -> None:
    source, target = shop
    # Small thresholds so this small data set exercises both copy paths and range splitting.
    monkeypatch.setattr(snapshot_copy, "SPLIT_THRESHOLD_BYTES", 256 * 1024)
    monkeypatch.setattr(snapshot_copy, "PIPE_THRESHOLD_BYTES", 48 * 1024)
    monkeypatch.setattr(snapshot_copy, "MIN_CORES_TO_SPLIT", 1)
    ranges: list[str] = []
    real_split = snapshot_copy._split_ranges

    def recording_split(*args: object) -> list[str]:
        found = real_split(*args)  # type: ignore[arg-type]
        ranges.extend(found)
        return found

    monkeypatch.setattr(snapshot_copy, "_split_ranges", recording_split)
    plan = _plan(source, target, **FLAGS)
    events: list[Event] = []
    written = [t for t in HOSTILE_TABLES if t[1] != "has space"] + [
        ("public", "orders"), ("public", "big"), ("public", "events"), ("public", "readings"),
        ("public", "has space")]
    scope = migrate.build_scope(plan.source, plan.selection)
    with Writer(source, DB, written) as writer:
        time.sleep(0.3)
        results = migrate.init(plan, scope=scope, emit=events.append)
        time.sleep(1.0)  # keep writing while streaming
    assert writer.operations > 200
    assert [r.status for r in results] == ["streaming"]
    copied = {(e.schema, e.table) for e in events if isinstance(e, TableCopied)}
    assert ("public", "big") in copied and ("public", "has space") not in copied

    readings = scope.databases[0].table("public", "readings")
    assert readings is not None and readings.where is not None
    expected: dict[tuple[str, str], str | None] = {
        (t.info.schema, t.info.name): t.where for t in scope.databases[0].tables if t.copies_rows
    }
    expected[("public", "readings")] = readings.where
    expected[("public", "has space")] = "false"  # schema-only: the table exists, no rows
    wait_until_identical(source, target, DB, expected)
    # The big table really was split into key ranges, and they add up to the whole table.
    assert len(ranges) >= 2 and any('"id" <' in r for r in ranges)
    assert differences(source, target, DB, {("public", "big"): None}) == {}
    seq = target.execute("SELECT last_value FROM orders_id_seq", dbname=DB)[0][0]
    assert seq >= 600


def _add_slow_table(cluster: PgCluster, rows: int) -> None:
    add_slow_table(cluster, DB, rows)


def _start_cli_init(source: PgCluster, target: PgCluster, env: dict[str, str], *,
                    source_url: str | None = None) -> tuple[subprocess.Popen[str], list[str]]:
    """``pgtide init --json`` in a child process, read until its data phase has begun."""
    args = [str(Path(sys.executable).parent / "pgtide"), "init", "--yes", "--json",
            "--source", source_url or source.url(dbname=DB), "--target", target.url(dbname=DB),
            "--exclude-tables", "events_no_pk"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        if event.get("event") == "PhaseStarted" and event.get("phase") == "data":
            break
    return proc, args


def test_sigterm_mid_copy_exits_4_and_cleans_up(shop: tuple[PgCluster, PgCluster]) -> None:
    source, target = shop
    _add_slow_table(source, 2000)
    proc, args = _start_cli_init(source, target, dict(os.environ))
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 4, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    _assert_clean(source, target)
    rerun = subprocess.run(args, capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stderr
    wait_until_identical(source, target, DB, {("public", "slow_rows"): None, ("public", "orders"): None})


def test_crash_mid_copy_then_rerun(shop: tuple[PgCluster, PgCluster], tmp_path: Path) -> None:
    source, target = shop
    _add_slow_table(source, 2000)
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(private_tmp)}
    proc, args = _start_cli_init(source, target, env)
    time.sleep(1.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.stdout is not None
    proc.stdout.close()
    assert proc.stderr is not None
    proc.stderr.close()
    plan = _plan(source, target)
    store = JobStore(naming.migration_id(plan.source, plan.target))
    assert store.database(DB)["status"] == "copying"  # killed mid-copy, for real
    names = naming.replication_names(plan.source, plan.target, DB)
    assert names.slot in replication_objects(source, target)["slots"]  # the dead run's slot is still there

    rerun = subprocess.run(args, capture_output=True, text=True, env=env, timeout=240)
    assert rerun.returncode == 0, rerun.stderr
    assert JobStore(store.migration_id).database(DB)["status"] == "streaming"
    left = replication_objects(source, target)
    assert left["slots"] == [names.slot] and left["subscriptions"] == [names.subscription]
    assert list(private_tmp.iterdir()) == []  # no passfile left by the killed or the finished run
    source.execute("INSERT INTO slow_rows VALUES (5001, 5001)", dbname=DB)
    wait_until_identical(source, target, DB, {("public", "slow_rows"): None, ("public", "orders"): None,
                                              ("public", "big"): None, ("My Schema", "Order.Items"): None})


# Made per run: a fixed one would be found in this very file when the checkout is under /tmp.
CRASH_PASSWORD = f"kill-9-{secrets.token_hex(8)}:@/%"


def _children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return found


def _running(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False


def test_kill_9_mid_copy_leaves_no_password_on_disk_and_no_child(shop: tuple[PgCluster, PgCluster],
                                                                  tmp_path: Path) -> None:
    source, target = shop
    _add_slow_table(source, 2000)
    # Over the pipe threshold (16 MiB, stored uncompressed), so the copy runs psql children.
    source.execute("SET pgtide_test.fast = 'on'; ALTER TABLE slow_rows ADD COLUMN pad text; "
                   "ALTER TABLE slow_rows ALTER COLUMN pad SET STORAGE EXTERNAL; "
                   "UPDATE slow_rows SET pad = repeat('x', 10000)", dbname=DB)
    role = PASSWORD_ROLE
    source.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
        sql.Identifier(role), sql.Literal(CRASH_PASSWORD)))
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(private_tmp)}
    env.pop("PGPASSWORD", None)
    url = f"postgresql://{role}:{quote(CRASH_PASSWORD, safe='')}@127.0.0.1:{source.port}/{DB}"
    roots = (private_tmp, Path(tempfile.gettempdir()), Path("/var/tmp"), Path("/dev/shm"))
    try:
        proc, args = _start_cli_init(source, target, env, source_url=url)
        # The copy's psql children authenticate with the password: they are what must not outlive us.
        children = wait_for(lambda: [pid for pid in _children(proc.pid)
                                     if b"psql" in Path(f"/proc/{pid}/cmdline").read_bytes()], what="psql children")
        assert source.execute("SELECT 1 FROM pg_stat_activity WHERE usename = %s", [role])
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        for stream in (proc.stdout, proc.stderr):
            assert stream is not None
            stream.close()
        deadline = time.monotonic() + 1.0
        while any(_running(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not [pid for pid in children if _running(pid)], "a psql child outlived pgtide by a second"
        assert files_holding(CRASH_PASSWORD.encode(), *roots) == []

        rerun = subprocess.run(args, capture_output=True, text=True, env=env, timeout=240)
        assert rerun.returncode == 0, rerun.stderr
        assert CRASH_PASSWORD not in rerun.stdout + rerun.stderr
        assert files_holding(CRASH_PASSWORD.encode(), *roots) == []
        source.execute("INSERT INTO slow_rows VALUES (5001, 5001)", dbname=DB)
        wait_until_identical(source, target, DB, {("public", "slow_rows"): None, ("public", "orders"): None})
    finally:
        target.clean_replication()
        source.clean_replication()
        # init copies roles: the role is on the target too.
        for cluster in (source, target):
            cluster.execute(sql.SQL("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = {}")
                            .format(sql.Literal(role)))
            if cluster.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]):
                if cluster.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB]):
                    cluster.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)), dbname=DB)
                cluster.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _assert_clean(source: PgCluster, target: PgCluster) -> None:
    left = replication_objects(source, target)
    assert left == {"slots": [], "publications": [], "subscriptions": []}, left


def test_target_rejects_schema_leaves_nothing_behind(shop: tuple[PgCluster, PgCluster]) -> None:
    source, target = shop
    target.create_database(DB)
    target.execute('CREATE SCHEMA "My Schema"', dbname=DB)  # no tables, so not "non-empty", but pre-data clashes
    events: list[Event] = []
    with pytest.raises(PgtideError) as info:
        migrate.init(_plan(source, target, exclude_tables=["events_no_pk"]), emit=events.append)
    assert "already exists" in info.value.cause
    _assert_clean(source, target)
    assert any("removed replication slot" in getattr(e, "text", "") for e in events)


def test_failing_restore_leaves_nothing_behind(shop: tuple[PgCluster, PgCluster], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk filling up while indexes are built, simulated by a pg_restore that fails for post-data."""
    source, target = shop
    from pgtide.core.infra import tools as pgtools

    real = pgtools.find_tool("pg_restore").path
    fake_dir = tmp_path / "bin"
    fake_dir.mkdir()
    fake = fake_dir / "pg_restore"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--version" ]; then echo "pg_restore (PostgreSQL) 99.0"; exit 0; fi\n'
        'for a in "$@"; do if [ "$a" = "--section=post-data" ]; then\n'
        '  echo "pg_restore: error: could not extend file: No space left on device" >&2; exit 1; fi; done\n'
        f'exec {real} "$@"\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PGTIDE_PG_BINDIR", str(fake_dir))
    pgtools.find_tool.cache_clear()
    try:
        with pytest.raises(PgtideError) as info:
            migrate.init(_plan(source, target, exclude_tables=["events_no_pk"]))
    finally:
        pgtools.find_tool.cache_clear()
    assert "No space left on device" in info.value.cause
    _assert_clean(source, target)


@pytest.mark.parametrize("phase", ["schema", "data"])
def test_source_disconnect_leaves_nothing_behind(shop: tuple[PgCluster, PgCluster], phase: str) -> None:
    source, target = shop
    events: list[Event] = []

    def emit(event: Event) -> None:
        events.append(event)
        if isinstance(event, PhaseStarted) and event.phase == phase:
            # Runs in init's own thread, right before the phase: the source drops every
            # pgtide connection, the walsender holding the snapshot included.
            killed = source.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                    "WHERE application_name = 'pgtide' AND pid <> pg_backend_pid()")[0][0]
            assert killed >= 1

    with pytest.raises(PgtideError) as info:
        migrate.init(_plan(source, target, exclude_tables=["events_no_pk"]), emit=emit)
    assert "snapshot" in info.value.cause.lower() or "terminat" in info.value.cause.lower(), info.value.cause
    _assert_clean(source, target)
    assert any("the run failed" in getattr(e, "text", "") for e in events)


def test_rerun_after_failure_in_a_database_it_did_not_create(shop: tuple[PgCluster, PgCluster]) -> None:
    """The target database was the user's: the rerun keeps its schema, empties the tables, copies again."""
    source, target = shop
    target.create_database(DB)
    target.execute("COMMENT ON DATABASE shop IS 'made by the user'", dbname=DB)
    plan = _plan(source, target, exclude_tables=["events_no_pk"])

    def kill_at_data(event: Event) -> None:
        if isinstance(event, PhaseStarted) and event.phase == "data":
            source.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE application_name = 'pgtide' AND pid <> pg_backend_pid()")

    with pytest.raises(PgtideError):
        migrate.init(plan, emit=kill_at_data)
    events: list[Event] = []
    results = migrate.init(plan, emit=events.append)
    assert results[0].status == "streaming"
    assert any("continuing an interrupted run" in getattr(e, "text", "") for e in events)
    assert target.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'shop'") \
        == [("made by the user",)]
    source.execute("INSERT INTO orders (customer_id, amount) VALUES (3, 1)", dbname=DB)
    wait_until_identical(source, target, DB, {("public", "orders"): None, ("public", "big"): None,
                                              ("My Schema", "Order.Items"): None})


def test_rerun_is_idempotent_and_no_resume_refuses_a_non_empty_target(shop: tuple[PgCluster, PgCluster]) -> None:
    source, target = shop
    plan = _plan(source, target, exclude_tables=["events_no_pk"])
    migrate.init(plan)
    events: list[Event] = []
    again = migrate.init(plan, emit=events.append)
    assert again[0].status == "streaming"
    assert any("already streaming" in getattr(e, "text", "") for e in events)
    # A live replica is never to be dropped, nor advised to be: teardown comes first.
    with pytest.raises(InputError) as info:
        migrate.init(plan.with_options(resume=False))
    assert "live replica" in info.value.cause and "Pass --drop-existing" not in info.value.remedy
    with pytest.raises(InputError) as info:
        migrate.init(plan.with_options(resume=False, drop_existing=True))
    assert "refusing to drop it" in info.value.cause and "teardown" in info.value.remedy
    assert len(migrate.teardown(plan)) == 3
    with pytest.raises(InputError) as info:
        migrate.init(plan.with_options(resume=False))
    assert "not empty" in info.value.cause and "--drop-existing" in info.value.remedy
    # After teardown the target is a plain non-empty database: --drop-existing starts over cleanly.
    results = migrate.init(plan.with_options(resume=False, drop_existing=True))
    assert results[0].status == "streaming"
    names = naming.replication_names(plan.source, plan.target, DB)
    assert replication_objects(source, target)["slots"] == [names.slot]
    removed = migrate.teardown(plan)
    assert len(removed) == 3 and migrate.teardown(plan) == []
    _assert_clean(source, target)


def test_server_copy_sync_and_publication_kept_in_step(shop: tuple[PgCluster, PgCluster]) -> None:
    source, target = shop
    plan = _plan(source, target, exclude_tables=["events_no_pk"], table_filters=["events:id <= 100"])
    results = migrate.init(plan.with_options(copy_mode="server"))
    assert results[0].status == "streaming"
    wait_until_identical(source, target, DB, {("public", "events"): "id <= 100", ("public", "big"): None}, timeout=90)
    # Changing the filter and running sync again updates the publication, not a stale copy of it.
    wider = _plan(source, target, exclude_tables=["events_no_pk"], table_filters=["events:id <= 200"])
    migrate.sync(wider, copy_data=False)
    names = naming.replication_names(plan.source, plan.target, DB)
    row = source.execute("SELECT rowfilter FROM pg_publication_tables WHERE pubname = %s AND tablename = 'events'",
                         [names.publication], dbname=DB)
    assert row and "200" in row[0][0]
    migrate.teardown(plan)
    _assert_clean(source, target)


@pytest.mark.crossversion
@pytest.mark.parametrize(("source_major", "target_major"), [(15, 16), (16, 18)])
def test_zero_gap_across_versions(cluster_factory, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                  source_major: int, target_major: int) -> None:
    from pgtide.core.infra import tools as pgtools

    source = cluster_factory(major=source_major)
    target = cluster_factory(major=target_major)
    if source_major > pgtools.find_tool("pg_dump").major:
        # pg_dump must be at least as new as the source: use the tools shipped with its binaries.
        monkeypatch.setenv("PGTIDE_PG_BINDIR", str(source.bindir))
    pgtools.find_tool.cache_clear()
    _populate(source, big_rows=5000)
    plan = _plan(source, target, **{**FLAGS, "exclude_tables": ["events_no_pk"]})
    with Writer(source, DB, [("public", "orders"), ("public", "big"), ("public", "MixedCase")]):
        migrate.init(plan)
        time.sleep(0.5)
    wait_until_identical(source, target, DB, {("public", "orders"): None, ("public", "big"): None,
                                              ("public", "MixedCase"): None, ("public", "events"): "id % 2 = 0"})
    migrate.teardown(plan)
    _assert_clean(source, target)
    pgtools.find_tool.cache_clear()
