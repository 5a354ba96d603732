"""Key ranges whose row counts differ are settled from their keys: exact whatever else differs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pgharness import PgCluster, wait_for

from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.model.plan import Plan
from pgtide.core.model.selection import Selection
from pgtide.core.verify.compare import RowDifference, VerifyOptions, verify_plan

ROWS = 40_000
#: Keys the source lacks (multiples of 7) and the target lacks (multiples of 10), interleaved in
#: every range: counts a few percent apart, so ranges are bisected once, then listed whole.
MISSING = [k for k in range(1, ROWS + 1) if k % 10 == 0 and k % 7]
EXTRA = [k for k in range(1, ROWS + 1) if k % 7 == 0 and k % 10]


@pytest.fixture
def gappy(source_cluster: PgCluster, target_cluster: PgCluster) -> Iterator[Plan]:
    name = source_cluster.create_database()
    target_cluster.create_database(name)
    for cluster, absent in ((source_cluster, 7), (target_cluster, 10)):
        cluster.execute(f"""
            CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL, note text);
            INSERT INTO items SELECT g, g, md5(g::text) FROM generate_series(1, {ROWS}) g WHERE g % {absent} <> 0;
        """, dbname=name)
        cluster.execute("VACUUM items", dbname=name)  # index-only scans, as on a settled table
    yield Plan(Endpoint.parse(source_cluster.url(name), env={}), Endpoint.parse(target_cluster.url(name), env={}),
               Selection.from_cli(include_databases=name))
    target_cluster.drop_database(name)
    source_cluster.drop_database(name)


def test_missing_and_extra_keys_in_the_same_ranges_are_named_exactly(gappy: Plan) -> None:
    # Fewer keys tracked than differ: the rest are counted, still exactly.
    options = VerifyOptions(max_keys=4, tracked_keys=100, live=False)
    (result,) = verify_plan(gappy, options=options).tables
    assert (result.method, result.status) == ("key ranges", "differ")
    assert (result.missing, result.extra, result.different) == (len(MISSING), len(EXTRA), 0)
    assert result.differences == tuple(RowDifference("missing", (str(k),)) for k in MISSING[:4])
    assert result.dense_ranges >= 1


def test_a_changed_row_among_missing_and_extra_ones_is_found(gappy: Plan, target_cluster: PgCluster) -> None:
    # The keys alone cannot show it: its unit's sums disagree, so that unit (of several: small
    # ones) is compared row by row, the others still by their keys.
    target_cluster.execute("UPDATE items SET note = 'changed' WHERE id = 12345", dbname=gappy.target.dbname)
    options = VerifyOptions(max_keys=100_000, stream_rows=5000, live=False)
    (result,) = verify_plan(gappy, options=options).tables
    assert (result.missing, result.extra, result.different) == (len(MISSING), len(EXTRA), 1)
    assert RowDifference("different", ("12345",)) in result.differences
    assert [d.key[0] for d in result.differences if d.kind == "extra"] == [str(k) for k in EXTRA]
    assert [d.key[0] for d in result.differences if d.kind == "missing"] == [str(k) for k in MISSING]


def test_live_dense_ranges_settled_by_keys_while_the_source_keeps_changing(
    source_cluster: PgCluster, target_cluster: PgCluster
) -> None:
    # Small units: several listings, so the source's lookups run on the second session that
    # imports the listing's snapshot, while a writer keeps changing rows (ids 1..10000 and new
    # ones) that replication carries over.
    import test_verify  # the live-replication helpers of the main verify tests

    name = source_cluster.create_database()
    target_cluster.create_database(name)
    try:
        for cluster in (source_cluster, target_cluster):
            cluster.execute("CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL, note text); "
                            "CREATE TABLE filtered (id int PRIMARY KEY, v int NOT NULL)", dbname=name)
        test_verify.subscribe(source_cluster, target_cluster, name, "items, filtered")
        source_cluster.execute("INSERT INTO items SELECT g, 0, 'n' || g FROM generate_series(1, 40000) g",
                               dbname=name)
        wait_for(lambda: target_cluster.execute("SELECT count(*) FROM items", dbname=name)[0][0] == 40000,
                 what="the initial rows to replicate")
        # Rows the writer never touches, lost on the target only: a tenth of 10001..40000.
        target_cluster.execute("DELETE FROM items WHERE id > 10000 AND id <= 40000 AND id % 10 = 5", dbname=name)
        writer = test_verify.Writer(source_cluster, name)
        writer.start()
        try:
            wait_for(lambda: writer.transactions > 50, what="the writer to get going")
            plan = Plan(Endpoint.parse(source_cluster.url(name), env={}),
                        Endpoint.parse(target_cluster.url(name), env={}), Selection.from_cli(include_databases=name))
            # The writer's new ids (from 1,000,000) stretch the key span: small buckets keep the rows
            # it changes apart from the stable ones, whose units then settle by keys, live.
            report = verify_plan(plan, tables=["items"], options=VerifyOptions(stream_rows=2000, rows_per_bucket=250))
            (items,) = report.tables
            assert report.live_databases == (name,)
            assert (items.missing, items.extra, items.different) == (3000, 0, 0), items.notes
            assert items.differences[:2] == (RowDifference("missing", ("10005",)),
                                             RowDifference("missing", ("10015",)))
            assert not items.unsettled and items.dense_ranges >= 1
        finally:
            writer.stop.set()
            writer.join(timeout=10)
        assert writer.error is None
    finally:
        target_cluster.clean_replication()
        source_cluster.clean_replication()
        target_cluster.drop_database(name)
        source_cluster.drop_database(name)
