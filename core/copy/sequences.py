"""Target sequences set past every value the source handed out, so the first INSERT on the
target cannot collide with a row that replication brought over.

Logical replication carries rows, not sequence state: while a migration streams, the
target's sequences stay where init left them. Before the application writes to the target
(cutover, or a teardown without one) each sequence that exists on both sides is set to the
highest of

- the source's ``last_value`` (when it was ever called),
- the highest value already in every column that draws from it — owned by it (serial,
  identity) or merely defaulting to ``nextval`` of it — read on the target, and
- the target's own ``last_value`` (a sequence is never moved backwards, so running this
  twice, or after the application wrote to the target, is harmless),

plus a margin, in the direction the sequence counts (descending sequences go down), clamped
to its bounds. Reading the values after writes are fenced and replication drained makes the
margin unnecessary for correctness; it covers a writer the fence did not stop (a session
that overrode ``default_transaction_read_only``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from ..infra.db import connect
from ..infra.endpoint import Endpoint
from ..infra.errors import MigrationFailed

#: The default margin, in increments: small enough not to waste a 32-bit key space, large
#: enough for the writes a leaky fence lets through in the second the switch takes.
DEFAULT_MARGIN = 100

_SOURCE_SQL = """
SELECT n.nspname, c.relname, has_sequence_privilege(c.oid, 'SELECT'),
       CASE WHEN has_sequence_privilege(c.oid, 'SELECT') THEN pg_sequence_last_value(c.oid)::text END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
"""

# Per target sequence: its bounds, its own value, and every integer column that draws from
# it — owned (serial/identity: pg_depend 'a'/'i') or by a column default calling nextval
# (pg_attrdef depending on the sequence).
_TARGET_SQL = """
WITH seqs AS (
    SELECT c.oid, n.nspname, c.relname, s.seqincrement, s.seqmin, s.seqmax, s.seqstart,
           pg_sequence_last_value(c.oid) AS last_value
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_sequence s ON s.seqrelid = c.oid
    WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
), users AS (
    SELECT d.objid AS seq, d.refobjid AS rel, d.refobjsubid AS attnum
    FROM pg_depend d
    WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
      AND d.deptype IN ('a', 'i') AND d.refobjsubid > 0
    UNION
    SELECT d.refobjid, ad.adrelid, ad.adnum
    FROM pg_depend d JOIN pg_attrdef ad ON ad.oid = d.objid
    WHERE d.classid = 'pg_attrdef'::regclass AND d.refclassid = 'pg_class'::regclass
)
SELECT s.nspname, s.relname, s.seqincrement::text, s.seqmin::text, s.seqmax::text, s.seqstart::text,
       s.last_value::text,
       coalesce(json_agg(json_build_array(tn.nspname, t.relname, a.attname))
                FILTER (WHERE a.attname IS NOT NULL), '[]')
FROM seqs s
LEFT JOIN users u ON u.seq = s.oid
LEFT JOIN pg_class t ON t.oid = u.rel AND t.relkind IN ('r', 'p')
LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = u.attnum AND NOT a.attisdropped
     AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype, 'numeric'::regtype)
GROUP BY 1, 2, 3, 4, 5, 6, 7
ORDER BY 1, 2
"""


@dataclass(frozen=True)
class SequenceSet:
    schema: str
    name: str
    #: What the sequence's next nextval() builds on (None: left as it was).
    value: int | None
    #: Where the value came from, for the log: "source" or "column public.t.id".
    reason: str
    clamped: bool = False

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass
class SequenceReport:
    changed: list[SequenceSet] = field(default_factory=list)
    #: Sequences only on the source (their table was not migrated): nothing to set.
    source_only: list[str] = field(default_factory=list)
    #: Clamped to the sequence's bound: the next nextval() fails instead of colliding.
    clamped: list[str] = field(default_factory=list)


def _qualified(schema: str, name: str) -> sql.Composable:
    return sql.Identifier(schema, name)


def _column_extreme(conn: psycopg.Connection[Any], schema: str, table: str, column: str,
                    descending: bool) -> int | None:
    # ceil/floor: a numeric column may hold fractions; the sequence must pass the whole part.
    query = sql.SQL("SELECT {}({}({})::numeric)::text FROM {}").format(
        sql.SQL("floor" if descending else "ceil"), sql.SQL("min" if descending else "max"),
        sql.Identifier(column), _qualified(schema, table))
    row = conn.execute(query).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def plan_value(*, increment: int, minimum: int, maximum: int, candidates: list[tuple[int, str]],
               target_value: int | None, margin: int) -> tuple[int | None, str, bool]:
    """The value to set and why: the furthest candidate in the counting direction, plus
    ``margin`` increments, clamped to the bounds; None when the target's own value is already
    at least that far (so running this twice changes nothing). Pure: unit-tested."""
    if not candidates:
        return None, "never used", False
    descending = increment < 0
    value, reason = (min if descending else max)(candidates, key=lambda c: c[0])
    value += margin * increment
    clamped = False
    if value > maximum:
        value, clamped = maximum, True
    elif value < minimum:
        value, clamped = minimum, True
    if target_value is not None and (target_value <= value if descending else target_value >= value):
        return None, "already ahead on the target", False
    return value, reason, clamped


def sync_sequences(source: Endpoint, target: Endpoint, *, margin: int = DEFAULT_MARGIN) -> SequenceReport:
    """Set every sequence of one database (``source``/``target`` name it) on the target; see
    the module docstring. Raises MigrationFailed naming sequences the source would not show."""
    if margin < 0:
        raise ValueError("margin must not be negative")
    with connect(source) as conn:
        source_rows = conn.execute(_SOURCE_SQL).fetchall()
    unreadable = [f"{schema}.{name}" for schema, name, readable, _ in source_rows if not readable]
    if unreadable:
        raise MigrationFailed(
            "cannot read the value of sequence(s) " + ", ".join(sorted(unreadable)) + " on the source",
            "Grant the migration role SELECT on them (GRANT SELECT ON SEQUENCE ... TO <user>) so the target's "
            "sequences can be set; otherwise they would hand out keys that already exist.",
            title="Sequences unreadable",
        )
    source_values = {(schema, name): (int(value) if value is not None else None)
                     for schema, name, _, value in source_rows}
    report = SequenceReport()
    with connect(target) as conn:
        target_rows = conn.execute(_TARGET_SQL).fetchall()
        on_target = {(row[0], row[1]) for row in target_rows}
        report.source_only = sorted(f"{s}.{n}" for s, n in source_values if (s, n) not in on_target)
        for schema, name, increment, minimum, maximum, _start, last_value, users in target_rows:
            if (schema, name) not in source_values:
                continue  # the target's own sequence: not pgtide's to touch
            step = int(increment)
            candidates: list[tuple[int, str]] = []
            if source_values[(schema, name)] is not None:
                candidates.append((int(source_values[(schema, name)]), "source"))  # type: ignore[arg-type]
            for t_schema, t_name, column in users:
                extreme = _column_extreme(conn, t_schema, t_name, column, step < 0)
                if extreme is not None:
                    candidates.append((extreme, f"column {t_schema}.{t_name}.{column}"))
            if last_value is None:
                # Never called, or set with is_called = false (ALTER SEQUENCE … RESTART): its next
                # value is last_value itself, and a RESTART far ahead must not be moved back.
                row = conn.execute(sql.SQL("SELECT last_value::text, is_called FROM {}").format(
                    _qualified(schema, name))).fetchone()
                if row is not None and not row[1] and int(row[0]) != int(_start):
                    last_value = str(int(row[0]) - step)
            value, reason, clamped = plan_value(increment=step, minimum=int(minimum), maximum=int(maximum),
                                                candidates=candidates,
                                                target_value=None if last_value is None else int(last_value),
                                                margin=margin)
            if value is None:
                continue  # never used anywhere, or already ahead: nothing to move
            conn.execute("SELECT setval(format('%%I.%%I', %s::text, %s::text)::regclass, %s, true)",
                         [schema, name, value])
            entry = SequenceSet(schema, name, value, reason, clamped)
            report.changed.append(entry)
            if clamped:
                report.clamped.append(entry.qualified)
    return report
