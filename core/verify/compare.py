"""Prove the target holds the same rows as the source: per table, per key range, per row.

How one table is compared (docs/architecture.md §6):

1. **One pass per side, at the same time.** Source and target each run (on their own
   connection, in parallel threads) one aggregate over the table in a single
   REPEATABLE READ snapshot: rows fall into buckets by primary key, and each bucket
   yields ``count(*)`` and ``sum(row hash)`` — order-independent, so the two servers'
   physical row orders do not matter, and nothing is sorted or concatenated. Large tables
   are read in physical slices (TID ranges, PostgreSQL 14+) so progress can be reported;
   bucket totals from all slices add up, whatever each side's physical layout.
2. **Only mismatching buckets are read again.** With a single integer key, buckets are key
   ranges and a mismatching range is bisected (16 sub-ranges a level, through the primary
   key index) until listing it is cheaper: it holds few rows, or its mismatch is dense
   (one side empty, counts far apart, most sub-ranges differing; see :mod:`.merge`). A
   range only one side has rows in is counted on the server and only the keys kept are
   listed. A range whose row counts differ is listed by its keys alone: each side sends
   its keys, no row hashes, as one binary int8 array per few ranges, both at once; a set
   difference here names the missing and extra keys exactly, and only those rows are
   hashed, looked up by key (the source's on a second session sharing the listing's
   snapshot, while it lists on). The rows both sides hold agree when the source's sum of
   row hashes less its missing rows' equals the target's less its extra rows' (as surely
   as any bucket's sums). Where that fails (a row differs, or a side changed since the
   aggregates) and in ranges whose counts agree, the source packs the range's
   ``(key, row hash)`` pairs, a chunk at a time, into two binary int8 arrays, and the
   target's server joins each chunk with its own rows: it returns exact counts of the keys
   missing, extra and different, and only the first keys kept, so rows never become
   Python objects. Other keys are bucketed by a hash of the key; mismatching buckets are
   re-read in one scan.
3. **Live replication.** When the target is subscribed to the source, a difference may be
   a change still in flight. The source's WAL insert position is recorded with each
   source read; before the matching target read, pgtide waits (bounded) until the target
   has applied past it, and differing buckets and keys are re-checked until they either
   agree or stay different, unchanged, across two reads. Only those are reported.

The row hash is computed over the columns by name, in the source's column order (so a
different physical column order on the target does not matter), in two parts XORed:

- columns of built-in types whose values compare exactly (integers, text and varchar
  under the C collation, char(n), bool, bytea, uuid, jsonb, date/time/timestamp(tz),
  inet, macaddr) go through ``hash_record_extended(ROW(...), 0)``: the types' own
  64-bit hash functions (the ones hash partitioning relies on, stable across versions),
  position-dependent, NULL distinct from every value, no text formatting at all — about
  1.5x cheaper per row than the text form (measured on pgbench_accounts);
- every other column (numeric, floats, interval, json, arrays, enums, composites, ranges,
  geometric types, domains over those, ...) goes through ``hashtextextended(ROW(...)::text,
  0)``: the record's text form, canonical once the session pins every setting that
  changes output (:data:`CANONICAL_SETTINGS`). In it NULL prints as nothing and '' as
  ``""``; values holding separators, quotes or spaces are quoted, so it is unambiguous;
  numeric keeps its scale, floats print shortest-exact, json keeps its text.

A column whose type falls in different classes on the two sides (say numeric against
integer) is compared by text form on both; smallint/integer/bigint form one class.
Values are therefore equal when their type says so for jsonb (key order, whitespace,
1 = 1.0), char(n) (trailing blanks) and timestamptz (the instant); byte-exact otherwise.

Tables without a primary key are compared as a multiset (count and sum of row hashes per
bucket of row hashes): the result cannot name rows. Schema-only tables must exist with
the same columns and hold no rows.
Filtered tables compare only the rows the filter selects, with the publication's own
resolved predicate when the publication exists.

This module is the package's front door (its names are the ones other code imports); the
code, in the order a table goes through it:

- :mod:`.results` — options, per-table results, the report; :mod:`.events` — progress
  events and the cancel;
- :mod:`.shapes` — per-table SQL: hash classes, row and key hashes, bucketing;
- :mod:`.connections` — the pair of pinned read-only sessions, read-ahead, shared snapshots;
- :mod:`.buckets` — the first pass and the live re-check of buckets (:mod:`.live`: waiting
  for the target, when a difference persists);
- :mod:`.bisection` — splitting differing key ranges; :mod:`.merge` — where splitting stops;
- :mod:`.listing` — naming the differing keys of the ranges left;
- :mod:`.table` — one table's steps together: naming keys by hash bucket, live key re-checks;
- :mod:`.runner` — the run over databases and tables, and :func:`verify_plan`.
"""

from __future__ import annotations

from .buckets import Buckets, Key
from .events import (
    ChunkVerified,
    EventCallback,
    RangesListed,
    Rechecking,
    TableStarted,
    TableVerified,
    VerifyCancelled,
    VerifyEvent,
)
from .live import LiveReplication, _persists
from .results import Method, RowDifference, TableResult, TableStatus, VerifyOptions, VerifyReport
from .runner import Verifier, _pattern_matches, detect_live, select_tables, verify_plan, verify_scope
from .shapes import CANONICAL_SETTINGS, _Column, _hash_sql, _Shape, _Side
from .table import _key_order

__all__ = [
    "CANONICAL_SETTINGS",
    "Buckets",
    "ChunkVerified",
    "EventCallback",
    "Key",
    "LiveReplication",
    "Method",
    "RangesListed",
    "Rechecking",
    "RowDifference",
    "TableResult",
    "TableStarted",
    "TableStatus",
    "TableVerified",
    "Verifier",
    "VerifyCancelled",
    "VerifyEvent",
    "VerifyOptions",
    "VerifyReport",
    "_Column",
    "_Shape",
    "_Side",
    "_hash_sql",
    "_key_order",
    "_pattern_matches",
    "_persists",
    "detect_live",
    "select_tables",
    "verify_plan",
    "verify_scope",
]
