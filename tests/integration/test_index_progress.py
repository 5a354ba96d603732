"""The index phase reports its progress: objects built of the section's total, and the one building.

A real init against real servers. One index is made slow on purpose (its expression sleeps a
few milliseconds a row), so the restore lasts long enough for the half-second polls to see it
being built, and the other objects finished before it.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_support import replication_objects
from pgharness import PgCluster

from pgtide.app.attach_cmd import event_from_record
from pgtide.app.render import EventPrinter
from pgtide.core.engine import index_progress, migrate
from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.infra.errors import PgtideError
from pgtide.core.infra.events import Event, IndexProgress, PhaseFinished, PhaseStarted
from pgtide.core.model.plan import Options, Plan
from pgtide.core.model.selection import Selection

DB = "indexed"
#: customers_pkey, customers_email_key, orders_pkey, items_pkey (CONSTRAINT), orders_customer_idx,
#: items_slow_idx (INDEX), orders_customer_id_fkey (FK CONSTRAINT).
POST_DATA_OBJECTS = 7
SLOW_INDEX = "items_slow_idx"


@pytest.fixture
def indexed(source_cluster: PgCluster, target_cluster: PgCluster) -> Iterator[tuple[PgCluster, PgCluster]]:
    source_cluster.create_database(DB)
    source_cluster.execute(
        """
        CREATE TABLE customers (id int PRIMARY KEY, email text UNIQUE);
        CREATE TABLE orders (id int PRIMARY KEY, customer_id int REFERENCES customers (id), amount numeric);
        CREATE INDEX orders_customer_idx ON orders (customer_id);
        CREATE TABLE items (id int PRIMARY KEY, label text);
        -- Immutable by declaration only: where pgtide_test.slow is on (the target), each call
        -- sleeps, so building this index there takes ~3 s; on the source it is instant.
        CREATE FUNCTION slow_key(v int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
        BEGIN
            IF pg_catalog.current_setting('pgtide_test.slow', true) = 'on' THEN
                PERFORM pg_catalog.pg_sleep(0.005);
            END IF;
            RETURN v;
        END $$;
        INSERT INTO customers SELECT g, 'c' || g || '@example.com' FROM generate_series(1, 50) g;
        INSERT INTO orders SELECT g, 1 + g % 50, g FROM generate_series(1, 300) g;
        INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 600) g;
        CREATE INDEX items_slow_idx ON items (slow_key(id));
        ANALYZE;
        """,
        dbname=DB,
    )
    # Every session of the target's superuser, pg_restore's included (the GUC means nothing else).
    target_cluster.execute("ALTER ROLE postgres SET pgtide_test.slow = 'on'")
    try:
        yield source_cluster, target_cluster
    finally:
        target_cluster.execute("ALTER ROLE postgres RESET pgtide_test.slow")
        target_cluster.clean_replication()
        target_cluster.drop_database(DB)
        source_cluster.clean_replication()
        source_cluster.drop_database(DB)


def _plan(source: PgCluster, target: PgCluster) -> Plan:
    return Plan(Endpoint.parse(source.url(dbname=DB), env={}), Endpoint.parse(target.url(dbname=DB), env={}),
                Selection.from_cli(), Options(jobs=3))


def _pollers_alive() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("pgtide-index-progress")]


def _poller_sessions(target: PgCluster) -> int:
    """Sessions on the target whose last statement was the progress query (idle or not)."""
    return int(target.execute("SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                              "AND query LIKE %s", ["%pg_stat_progress_create_index%"])[0][0])


def _index_phase(events: list[Event]) -> list[Event]:
    """The events from the index phase's start to its end."""
    start = next(i for i, e in enumerate(events) if isinstance(e, PhaseStarted) and e.phase == "indexes")
    end = next(i for i, e in enumerate(events) if isinstance(e, PhaseFinished) and e.phase == "indexes")
    return events[start:end + 1]


def test_init_reports_every_index_and_constraint_built(indexed: tuple[PgCluster, PgCluster]) -> None:
    source, target = indexed
    events: list[Event] = []
    results = migrate.init(_plan(source, target), emit=events.append)
    assert [r.status for r in results] == ["streaming"]

    progress = [e for e in events if isinstance(e, IndexProgress)]
    # Every one of them inside the index phase, for this database, against the dump's count.
    assert progress and all(e in _index_phase(events) for e in progress)
    assert {(e.database, e.total) for e in progress} == {(DB, POST_DATA_OBJECTS)}
    assert progress[0].done == 0 and progress[-1].done == POST_DATA_OBJECTS and progress[-1].current is None
    assert [e.done for e in progress] == sorted(e.done for e in progress)
    # The polls saw the slow index being built, with the server's phase and block counts,
    # while the objects that do not wait for it were already counted as done.
    building = [e for e in progress if e.current == SLOW_INDEX]
    assert building, [(e.done, e.current, e.phase) for e in progress]
    assert any(e.phase and e.phase.startswith("building index") for e in building)
    assert any(e.blocks_total > 0 for e in building)
    assert any(0 < e.done < POST_DATA_OBJECTS for e in building)
    # The half-second polls send only what changed: no flood while one index builds.
    assert len(progress) < 40
    # Phase over: no thread, no session left behind.
    assert _pollers_alive() == []
    assert _poller_sessions(target) == 0
    # The objects really are on the target.
    assert target.execute("SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'", dbname=DB)[0][0] == 6

    # The CLI prints what is to build, then the count as it grows: here replayed at once, so
    # the throttle keeps only the first and the last.
    out = io.StringIO()
    printer = EventPrinter(stream=out)
    for event in events:
        printer(event)
    printed = [line for line in out.getvalue().splitlines() if "index(es)" in line or " built" in line]
    assert printed == [f"[{DB}]   building {POST_DATA_OBJECTS} index(es) and constraint(s)",
                       f"[{DB}]   indexes and constraints: {POST_DATA_OBJECTS}/{POST_DATA_OBJECTS} built"]
    # A worker logs them; `attach` and the app read them back as the same events.
    assert [event_from_record(e.to_dict()) for e in progress] == progress


def test_a_failing_progress_query_does_not_fail_the_init(indexed: tuple[PgCluster, PgCluster],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """The poller's session is ended under it mid-phase: it stops polling, the restore goes on."""
    source, target = indexed
    events: list[Event] = []
    killed: list[int] = []

    def emit(event: Event) -> None:
        events.append(event)
        if isinstance(event, IndexProgress) and event.current == SLOW_INDEX and not killed:
            # Runs on the poller's thread, between two polls: its connection goes away.
            killed.append(target.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                         "WHERE pid <> pg_backend_pid() AND query LIKE %s",
                                         ["%pg_stat_progress_create_index%"])[0][0])

    with caplog.at_level(logging.DEBUG, logger="pgtide.indexes"):
        results = migrate.init(_plan(source, target), emit=emit)
    assert [r.status for r in results] == ["streaming"]
    assert killed == [1]
    assert "index progress stopped" in caplog.text
    progress = [e for e in events if isinstance(e, IndexProgress)]
    seen_building = next(i for i, e in enumerate(progress) if e.current == SLOW_INDEX)
    # After the kill nothing more was polled; the restore's success still says all are built.
    assert [(e.done, e.current) for e in progress[seen_building + 1:]] == [(POST_DATA_OBJECTS, None)]
    assert _pollers_alive() == []
    assert _poller_sessions(target) == 0


def test_a_failing_restore_leaves_no_poller(indexed: tuple[PgCluster, PgCluster], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """pg_restore fails a second into post-data (a full disk): the error is init's, and the
    poller's thread and session end with the phase, without claiming the indexes were built."""
    source, target = indexed
    from pgtide.core.infra import tools as pgtools

    real = pgtools.find_tool("pg_restore").path
    fake_dir = tmp_path / "bin"
    fake_dir.mkdir()
    fake = fake_dir / "pg_restore"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--version" ]; then echo "pg_restore (PostgreSQL) 99.0"; exit 0; fi\n'
        'for a in "$@"; do if [ "$a" = "--list" ]; then exec ' + f"{real}" + ' "$@"; fi; done\n'
        'for a in "$@"; do if [ "$a" = "--section=post-data" ]; then sleep 1.2\n'
        '  echo "pg_restore: error: could not extend file: No space left on device" >&2; exit 1; fi; done\n'
        f'exec {real} "$@"\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PGTIDE_PG_BINDIR", str(fake_dir))
    pgtools.find_tool.cache_clear()
    events: list[Event] = []
    try:
        with pytest.raises(PgtideError) as info:
            migrate.init(_plan(source, target), emit=events.append)
    finally:
        pgtools.find_tool.cache_clear()
    assert "No space left on device" in info.value.cause
    progress = [e for e in events if isinstance(e, IndexProgress)]
    assert progress and progress[0].total == POST_DATA_OBJECTS
    assert all(e.done < POST_DATA_OBJECTS for e in progress)
    assert _pollers_alive() == []
    assert _poller_sessions(target) == 0
    assert replication_objects(source, target) == {"slots": [], "publications": [], "subscriptions": []}


def test_an_unreadable_dump_listing_means_no_progress_not_a_failure(indexed: tuple[PgCluster, PgCluster],
                                                                    tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    source, target = indexed
    from pgtide.core.infra import tools as pgtools

    real = pgtools.find_tool("pg_restore").path
    fake_dir = tmp_path / "bin"
    fake_dir.mkdir()
    fake = fake_dir / "pg_restore"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--version" ]; then echo "pg_restore (PostgreSQL) 99.0"; exit 0; fi\n'
        'for a in "$@"; do if [ "$a" = "--list" ]; then echo "pg_restore: error: out of memory" >&2; exit 1; fi; done\n'
        f'exec {real} "$@"\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PGTIDE_PG_BINDIR", str(fake_dir))
    pgtools.find_tool.cache_clear()
    events: list[Event] = []
    try:
        with caplog.at_level(logging.DEBUG, logger="pgtide.indexes"):
            results = migrate.init(_plan(source, target), emit=events.append)
    finally:
        pgtools.find_tool.cache_clear()
    assert [r.status for r in results] == ["streaming"]
    assert not [e for e in events if isinstance(e, IndexProgress)]
    assert "cannot count the post-data objects" in caplog.text


def test_the_listing_counts_what_post_data_builds() -> None:
    listing = """;
; Archive created at 2026-03-14 09:26:53 UTC
;
3218; 2606 16399 CONSTRAINT odd schema t x pk x postgres
3210; 2606 16419 CHECK CONSTRAINT public a chk postgres
3216; 1259 16405 INDEX odd schema idx with space postgres
3225; 0 0 INDEX ATTACH public p1_k_idx postgres
3209; 0 0 TABLE ATTACH public p1 postgres
3227; 2606 16400 FK CONSTRAINT odd schema t x t x_a_id_fkey postgres
3230; 2620 16401 TRIGGER public a audit postgres
"""
    assert index_progress.count_toc(listing) == 4
    assert index_progress.built_name('ALTER TABLE ONLY "odd schema"."t x"\n    ADD CONSTRAINT "pk ""x""" '
                                     "PRIMARY KEY (id);") == 'pk "x"'
    assert index_progress.built_name("CREATE UNIQUE INDEX a_b ON public.a USING btree (b);") == "a_b"
    assert index_progress.built_name("SELECT 1") is None


def test_the_cli_prints_a_line_per_object_at_most_once_a_second() -> None:
    now = [1000.0]
    out = io.StringIO()
    printer = EventPrinter(stream=out, clock=lambda: now[0])
    printer(IndexProgress("shop", 0, 500))
    for done in range(1, 501):
        now[0] += 0.25  # four objects a second: a line for one in four
        printer(IndexProgress("shop", done, 500, current=f"idx_{done}", phase="building index: scanning table",
                              blocks_done=1, blocks_total=2))
    lines = out.getvalue().splitlines()
    assert lines[0] == "[shop]   building 500 index(es) and constraint(s)"
    assert lines[1] == "[shop]   indexes and constraints: 4/500 built"
    assert lines[-1] == "[shop]   indexes and constraints: 500/500 built"
    assert len(lines) == 1 + 125


def test_at_a_terminal_the_object_building_now_shows_on_the_progress_line() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    now = [1000.0]
    out = Terminal()
    printer = EventPrinter(stream=out, clock=lambda: now[0])
    printer(IndexProgress("shop", 0, 7))
    now[0] += 0.5
    printer(IndexProgress("shop", 0, 7, current="orders_pkey", phase="building index: scanning table",
                          blocks_done=42, blocks_total=100, building=2))
    assert out.getvalue().endswith("\r\033[K  0/7 built · building orders_pkey (scanning table 42 %) and 1 more")
    now[0] += 1.5
    printer(IndexProgress("shop", 7, 7))
    # The permanent line clears the progress line first.
    assert out.getvalue().endswith("\r\033[K[shop]   indexes and constraints: 7/7 built\n")
