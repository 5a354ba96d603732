"""The pure parts of monitor and verify: LSN arithmetic, buckets, re-check rules, log parsing."""

from __future__ import annotations

import random
from collections import deque
from typing import Any

import pytest
from psycopg import sql

from pgtide.core.catalog.discovery import TableInfo
from pgtide.core.catalog.scope import TableScope
from pgtide.core.infra.errors import InputError
from pgtide.core.model.selection import parse_table_pattern
from pgtide.core.monitor.poll import (
    extract_worker_error,
    format_lsn,
    lsn_reached,
    parse_lsn,
)
from pgtide.core.monitor.state import lag_eta as _eta
from pgtide.core.verify.compare import (
    RowDifference,
    TableResult,
    VerifyOptions,
    VerifyReport,
    _Column,
    _hash_sql,
    _key_order,
    _pattern_matches,
    _persists,
    _Shape,
    _Side,
)


def test_lsn_round_trip_and_page_boundary() -> None:
    assert parse_lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert format_lsn(parse_lsn("0/1549B50")) == "0/1549B50"
    assert parse_lsn(None) is None and format_lsn(None) is None
    assert lsn_reached(100, 100) and lsn_reached(101, 100) and not lsn_reached(99, 100)
    assert not lsn_reached(None, 1)
    # A position just past a page header counts as reached once the page start is.
    assert lsn_reached(8192 * 5, 8192 * 5 + 24) and not lsn_reached(8192 * 5 - 8, 8192 * 5 + 24)


def _shape(low: int, width: int) -> _Shape:
    side = _Side(sql.SQL("0"), sql.SQL("0"), 0)
    return _Shape(table=None, method="key ranges", table_sql=sql.SQL("t"), where=sql.SQL("true"),  # type: ignore[arg-type]
                  key=("id",), key_types=("bigint",), source=side, target=side, low=low, width=width)


@pytest.mark.parametrize(("low", "width"), [(1, 10), (-50, 7), (1000, 1), (0, 10_000)])
def test_bucket_bounds_match_sql_integer_division(low: int, width: int) -> None:
    shape = _shape(low, width)
    rng = random.Random(1)
    for key in [low, low - 1, low - width, low - width - 1, low + width, *(rng.randint(low - 5 * width, low + 50 * width)
                                                                          for _ in range(500))]:
        difference = key - low
        bucket = abs(difference) // width * (1 if difference >= 0 else -1)  # SQL truncates toward zero
        first, last = shape.bucket_bounds(bucket)
        assert first <= key <= last, (key, bucket, first, last)


def test_persistence_rules() -> None:
    absent = None
    # Missing: on the source both times, never on the target, whatever the source values did.
    assert _persists((1, absent), (2, absent), absent)
    # Extra: never on the source, on the target both times.
    assert _persists((absent, 5), (absent, 6), absent)
    # Different and steady: real. Different but the source moved on: in flight.
    assert _persists((1, 2), (1, 2), absent)
    assert not _persists((1, 2), (3, 2), absent)
    assert not _persists((1, 2), (1, 3), absent)
    # Appeared on the source in between: not a steady "extra".
    assert not _persists((absent, 5), (5, 6), absent)


def test_eta_from_a_falling_lag() -> None:
    samples = deque((float(t), 1000 - 100 * t) for t in range(6))
    assert _eta(samples, 5.0, 60.0, 500) == pytest.approx(5.0)
    assert _eta(deque([(0.0, 10), (1.0, 20), (3.0, 30)]), 3.0, 60.0, 30) is None  # growing
    assert _eta(deque([(0.0, 10)]), 0.0, 60.0, 10) is None  # too few samples
    assert _eta(deque(), 0.0, 60.0, 0) == 0.0


def test_worker_error_from_the_server_log() -> None:
    log = """\
2026-01-01 10:00:00.000 UTC [4242] LOG:  logical replication apply worker for subscription "s" has started
2026-01-01 10:00:00.100 UTC [4242] ERROR:  duplicate key value violates unique constraint "beta_pkey"
2026-01-01 10:00:00.100 UTC [4242] DETAIL:  Key (id)=(7) already exists.
2026-01-01 10:00:00.100 UTC [4242] CONTEXT:  processing remote data for replication origin "pg_16390" during message type "INSERT" for replication target relation "public.beta" in transaction 740, finished at 0/1A2B3C4
2026-01-01 10:00:00.101 UTC [100] LOG:  background worker "logical replication worker" (PID 4242) exited with exit code 1
"""
    assert extract_worker_error(log, 16390) == (
        'duplicate key value violates unique constraint "beta_pkey" (Key (id)=(7) already exists.)'
    )
    assert extract_worker_error(log, 99999) is None


def test_key_order_and_table_patterns() -> None:
    keys = [("10",), ("9",), ("-1",), ("b",), ("a",)]
    assert sorted(keys, key=_key_order) == [("-1",), ("9",), ("10",), ("a",), ("b",)]
    info = TableInfo("sales", "Orders", 1, "r", 0, 0, ("id",), "d", ("id",), None, False, False, ())
    table = TableScope(database="shop", info=info, mode="full")
    assert _pattern_matches(parse_table_pattern('sales."Orders"'), table)
    assert _pattern_matches(parse_table_pattern('shop.sales."Orders"'), table)
    assert not _pattern_matches(parse_table_pattern("Orders"), table)  # folds to lower case
    assert not _pattern_matches(parse_table_pattern('shop."Orders"'), table)  # db.table means public


def test_hash_expression_splits_value_and_text_columns() -> None:
    columns = [
        (_Column("id", "integer", "int", "int4"), True),
        (_Column("name", "text", "text", "text"), True),
        (_Column("amount", "numeric", None, None), False),
    ]
    text = _hash_sql(columns).as_string()
    assert 'hash_record_extended(ROW("t"."id"::pg_catalog.int8, "t"."name"::pg_catalog."text" COLLATE "C"), 0)' in text
    assert 'hashtextextended(ROW("t"."amount")::text, 0)' in text
    assert _hash_sql(columns[2:]).as_string() == 'pg_catalog.hashtextextended(ROW("t"."amount")::text, 0)'


def test_options_are_checked() -> None:
    with pytest.raises(InputError):
        VerifyOptions(jobs=0)
    with pytest.raises(InputError):
        VerifyOptions(max_keys=-1)
    with pytest.raises(InputError):
        VerifyOptions(recheck_timeout=-1)


def test_report_rendering_lists_keys_up_to_the_limit() -> None:
    from pgtide.app.watch_cmd import render_report

    differences = tuple(RowDifference("missing", (str(i),)) for i in range(30))
    result = TableResult(database="shop", schema="public", name="items", status="differ", method="key ranges",
                         key_columns=("id",), source_rows=100, target_rows=70, missing=30, differences=differences)
    ok = TableResult(database="shop", schema="public", name="other", status="match", method="key hash",
                     source_rows=5, target_rows=5)
    text = render_report(VerifyReport((result, ok), 1.5), max_keys=20)
    assert "missing: id=0" in text and "missing: id=19" in text and "id=20" not in text
    assert "... and 10 more" in text
    assert text.splitlines()[-1].startswith("DIFFERENCES FOUND: 2 table(s): 1 match, 1 differ; rows missing 30")
    summary: dict[str, Any] = VerifyReport((ok,), 0.1).summary()
    assert summary["ok"] is True and summary["match"] == 1
