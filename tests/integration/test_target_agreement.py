"""validate and init agree for every recorded state: validate green means init goes ahead.

Each case records a state for the database (as a crash or an earlier run would have left
it), shapes the target accordingly, then asks validate and runs init on the same servers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pgharness import PgCluster
from psycopg import sql

from pgtide.core.engine import migrate
from pgtide.core.engine.validate import validate
from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.infra.errors import InputError
from pgtide.core.jobs.store import JobStore
from pgtide.core.model.plan import Options, Plan
from pgtide.core.model.selection import Selection
from pgtide.core.replication import naming

DB = "agree_db"


def _plan(source: PgCluster, target: PgCluster, **selection: Any) -> Plan:
    return Plan(Endpoint.parse(source.url(dbname=DB), env={}), Endpoint.parse(target.url(dbname=DB), env={}),
                Selection.from_cli(**selection), Options(jobs=1))


def _record(plan: Plan, entry: dict[str, Any]) -> None:
    """Write a record the way an earlier run (or a crash) left it."""
    store = JobStore(naming.migration_id(plan.source, plan.target))
    data = json.loads(store.path.read_text()) if store.path.exists() else {"databases": {}}
    data["databases"][DB] = entry
    store.path.parent.mkdir(parents=True, exist_ok=True)
    store.path.write_text(json.dumps(data))


@pytest.fixture
def pair(source_cluster: PgCluster, target_cluster: PgCluster) -> Iterator[tuple[PgCluster, PgCluster]]:
    source_cluster.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))
    source_cluster.execute("CREATE TABLE orders (id int PRIMARY KEY, item text); "
                           "INSERT INTO orders SELECT g, 'x' FROM generate_series(1, 20) g; "
                           "CREATE TABLE notes (id int PRIMARY KEY, body text)", dbname=DB)
    yield source_cluster, target_cluster
    for cluster in (target_cluster, source_cluster):
        cluster.clean_replication()
        cluster.drop_database(DB)


def _first_run_then(state: dict[str, Any], *, teardown: bool = False, **selection: Any
                    ) -> Callable[[PgCluster, PgCluster], Plan]:
    def setup(source: PgCluster, target: PgCluster) -> Plan:
        plan = _plan(source, target, **selection)
        migrate.init(plan)
        if teardown:
            migrate.teardown(plan)
        if state:
            _record(plan, state)
        return plan
    return setup


def _pre_data_only(state: dict[str, Any]) -> Callable[[PgCluster, PgCluster], Plan]:
    def setup(source: PgCluster, target: PgCluster) -> Plan:
        plan = _plan(source, target)
        target.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))
        target.execute("CREATE TABLE orders (id int NOT NULL, item text); "
                       "CREATE TABLE notes (id int NOT NULL, body text); INSERT INTO orders VALUES (999, 'stale')",
                       dbname=DB)
        _record(plan, state)
        return plan
    return setup


def _foreign_subscription(source: PgCluster, target: PgCluster) -> Plan:
    plan = _plan(source, target)
    migrate.init(plan)
    # Someone else's replication into the same target database.
    source.execute("CREATE PUBLICATION theirs FOR TABLE notes", dbname=DB)
    source.execute("SELECT pg_create_logical_replication_slot('theirs', 'pgoutput')", dbname=DB)
    target.execute(f"CREATE SUBSCRIPTION theirs CONNECTION 'host=127.0.0.1 port={source.port} dbname={DB} "
                   "user=postgres' PUBLICATION theirs WITH (create_slot = false, slot_name = 'theirs', "
                   "copy_data = false)", dbname=DB)
    return plan


CASES: dict[str, tuple[Callable[[PgCluster, PgCluster], Plan], str]] = {
    "nothing recorded, no target": (lambda s, t: _plan(s, t), "ok"),
    "streaming": (_first_run_then({}), "ok"),
    "copied, every table schema-only": (_first_run_then({}, schema_only_tables=["orders", "notes"]), "ok"),
    "failed in a database pgtide created": (_first_run_then({"status": "failed", "created_database": True},
                                                            teardown=True), "ok"),
    "copying, interrupted after the schema": (_pre_data_only({"status": "copying", "created_database": False,
                                                              "schema": "done"}), "ok"),
    "torn down, data kept": (_first_run_then({}, teardown=True), "error"),
    "another live replication into it": (_foreign_subscription, "error"),
    "a record from a newer version": (_first_run_then({"status": "quantum"}, teardown=True), "error"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_validate_and_init_agree(pair: tuple[PgCluster, PgCluster], case: str) -> None:
    source, target = pair
    setup, expected = CASES[case]
    plan = setup(source, target)
    check = next(c for c in validate(plan).checks if c.name == "target database")
    assert check.status == expected, (case, check)
    if check.status == "error":
        with pytest.raises(InputError) as info:
            migrate.init(plan)
        assert info.value.cause.endswith(check.observed), (info.value.cause, check.observed)
    else:
        results = migrate.init(plan)
        assert results[0].status in ("streaming", "copied"), (case, results)
        rows = target.execute("SELECT count(*) FROM orders", dbname=DB)[0][0]
        assert rows == (0 if case.startswith("copied") else 20), case
