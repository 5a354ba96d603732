"""The app's foreign-wizard services against real servers: an SQLite file built here into a
PostgreSQL target; what the Pick, Filters, Review and Run screens call."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from pgtide.core.infra.errors import InputError
from pgtide.core.infra.events import CancelToken, CheckReported, Event, TableCopied
from pgtide.screens.services import CoreServices


def test_tables_filter_validate_and_init(tmp_path: Path, target_cluster: Any, target_db: str) -> None:
    path = tmp_path / "shop.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT NOT NULL);"
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, amount REAL, placed TEXT);"
        "CREATE TABLE audit (at TEXT, detail TEXT);"
        "INSERT INTO customers VALUES (1, 'a@x'), (2, 'b@x'), (3, 'c@x');"
        "INSERT INTO orders VALUES (1, 1, 9.5, '2023-12-01'), (2, 1, 20, '2024-02-01'), (3, 2, 31.25, '2024-03-01');"
        "INSERT INTO audit VALUES ('2024-01-01', 'x');")
    conn.commit()
    conn.close()
    services = CoreServices()
    source = services.parse_foreign(str(path))
    target = services.parse_endpoint(target_cluster.url())

    tables, capture = services.foreign_source_tables(source)
    by_name = {t.name: t for t in tables}
    assert set(by_name) == {"customers", "orders", "audit"}
    assert by_name["orders"].rows == 3 and by_name["orders"].key == ("id",)
    assert not capture.ok  # SQLite has no change log: the Review says a refresh is needed

    with pytest.raises(InputError, match="SQLite refuses the row filter") as refused:
        services.foreign_check_filter(source, by_name["orders"], "nosuch > 1")
    assert "nosuch" in refused.value.cause and refused.value.remedy
    assert services.foreign_check_filter(source, by_name["orders"], "placed >= '2024-01-01'") \
        == "placed >= '2024-01-01'"

    plan = services.build_foreign_plan(source, target, {
        "layout": "typed", "include": ("customers", "orders"), "schema_only": ("customers",),
        "filters": {"orders": "placed >= '2024-01-01'"}, "target_database": target_db})
    assert plan.target.dbname == target_db
    seen: list[Event] = []
    report = services.foreign_validate(plan, seen.append)
    checks = {c.name: c for c in report.checks}
    assert not [c for c in report.checks if c.status == "error"], report.checks
    assert checks["consistency"].status == "ok" and "read transaction" in checks["consistency"].observed.lower()
    assert checks["change capture"].status == "warning"
    assert checks["filter orders"].status == "ok"
    assert [e.name for e in seen if isinstance(e, CheckReported)] == [c.name for c in report.checks]

    events: list[Event] = []
    copied = services.foreign_init(plan, events.append, CancelToken())
    assert sorted(copied) == ["customers", "orders"]
    assert target_cluster.execute("SELECT id, amount FROM orders ORDER BY id", dbname=target_db) \
        == [(2, 20.0), (3, 31.25)]
    assert target_cluster.execute("SELECT count(*) FROM customers", dbname=target_db) == [(0,)]
    assert any(isinstance(e, TableCopied) and e.table == "orders" and e.rows == 2 for e in events)

    # The same target tables are now this migration's: a second validate has no clash; a plan
    # refusing a typed MongoDB layout is the user's error, said by core.
    assert not [c for c in services.foreign_validate(plan, lambda _e: None).checks if c.status == "error"]
    mongo = services.parse_foreign("mongodb://127.0.0.1:1/shop")
    with pytest.raises(InputError, match="no columns to type"):
        services.build_foreign_plan(mongo, target, {"layout": "typed", "target_database": target_db})
