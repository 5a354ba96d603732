"""A user's row filter, as the source server understands it.

pgtide's own lexer (``selection.check_predicate_syntax``) is only a fast first check for
friendly messages. The safety boundary is here:

1. The user's text is sent to the server only through the extended query protocol (one
   Parse), which PostgreSQL refuses to hold more than one command, inside a transaction that
   is always rolled back, bounded by statement and lock timeouts, with a pinned search_path.
2. It is first parsed without being planned (a temporary view on a temporary copy of the
   table's columns): pg_depend then shows every function, operator, type and relation it
   uses, and anything PostgreSQL does not ship is refused before it could run — the server
   evaluates immutable functions with constant arguments while planning, so a user's
   "immutable" function must never reach a planner.
3. It is then parsed as a generated column of that copy: PostgreSQL decides that it is one
   immutable boolean expression over the table's columns (no subquery, aggregate, window
   or set-returning function: the rules publications apply).
4. What pgtide uses afterwards — in the COPY, the publication, the FK proof, verify — is the
   server's deparsed text (``pg_get_expr``), printed under :data:`SEARCH_PATH` and
   :data:`QUOTING_SETTINGS`. The checks that follow parse that text again (one Parse each),
   proving it a single expression under those settings, and every session that later runs
   it pins them: a literal in it is lexed exactly as the server printed it.
"""

from __future__ import annotations

import secrets as random_names
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from ..infra.errors import ConnectError, EnvironmentProblem, InputError, PgtideError

#: How long the server may spend on one check of a user predicate.
PREDICATE_CHECK_TIMEOUT = "5s"

#: Settings under which deparsed predicates are printed and later run. Deparsed string
#: literals depend on standard_conforming_strings, date/time constants on DateStyle and
#: intervals on IntervalStyle; pinned everywhere a predicate runs, they mean the same in
#: every session whatever the database's or role's defaults are.
QUOTING_SETTINGS: tuple[tuple[str, str], ...] = (
    ("standard_conforming_strings", "on"),
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
)

#: The search_path of every session that parses or runs a predicate: built-in names can then
#: never resolve to a look-alike someone put in a schema like public (and the server prints
#: every other name schema-qualified). pg_temp last: a temporary object never shadows one.
SEARCH_PATH = "pg_catalog, pg_temp"

FILTER_TITLE = "Invalid row filter"

_MULTIPLE_COMMANDS = "cannot insert multiple commands into a prepared statement"


@dataclass(frozen=True)
class CheckedPredicate:
    """A predicate the server accepted, in the server's own words."""

    #: The server's deparsed expression; valid under :data:`QUOTING_SETTINGS`.
    text: str
    #: The table's columns the expression reads, from the server's dependency records.
    columns: tuple[str, ...]


def execute_parsed(conn: psycopg.Connection[Any], query: str | sql.SQL | sql.Composed,
                   params: Sequence[Any] | None = None) -> psycopg.Cursor[Any]:
    """Run ``query`` through the extended protocol: the server refuses a second command in it.

    psycopg sends a query without parameters through the simple protocol, which runs every
    statement of the string; ``prepare=True`` makes it a Parse/Bind/Execute instead.
    """
    return conn.execute(query, params, prepare=True)  # type: ignore[arg-type]


def deparsed(text: str) -> sql.SQL:
    """A predicate the server printed (:func:`canonical_predicate`, ``pg_publication_tables``), as SQL.

    Only for text that came back from the server's deparser, never for a user's text: that
    goes through :func:`canonical_predicate` first.
    """
    return sql.SQL(text)  # type: ignore[arg-type]


def session_statements() -> tuple[str, ...]:
    """The same pins as plain SET statements, for a psql session (no result rows on stdout)."""
    pins = [sql.SQL("SET {} = {}").format(sql.Identifier(name), sql.Literal(value)).as_string()
            for name, value in QUOTING_SETTINGS]
    # A list, not one quoted string: a quoted value would name a single schema "pg_catalog, pg_temp".
    return (*pins, "SET search_path = " + SEARCH_PATH)


def pin_quoting(conn: psycopg.Connection[Any], *, local: bool = False, search_path: bool = False) -> None:
    """Pin the settings deparsed predicates rely on, for this session (or transaction)."""
    settings = [*QUOTING_SETTINGS, *((("search_path", SEARCH_PATH),) if search_path else ())]
    for name, value in settings:
        conn.execute("SELECT pg_catalog.set_config(%s, %s, %s)", [name, value, local])


def limit_transaction(conn: psycopg.Connection[Any], *, read_only: bool, timeout: str = PREDICATE_CHECK_TIMEOUT) -> None:
    """Bound the current (check) transaction in time, and pin the quoting settings in it."""
    if read_only:
        conn.execute("SET TRANSACTION READ ONLY")
    conn.execute("SELECT pg_catalog.set_config('statement_timeout', %s, true)", [timeout])
    conn.execute("SELECT pg_catalog.set_config('lock_timeout', %s, true)", [timeout])
    conn.execute("SELECT pg_catalog.set_config('search_path', %s, true)", [SEARCH_PATH])


def server_rejection(display: str, given: str, exc: psycopg.Error, *, remedy: str) -> InputError:
    """The server's refusal of a predicate as an InputError that says what to change."""
    # The check parses the text as a generated column; the user wrote a row filter.
    message = (exc.diag.message_primary or str(exc)).strip()
    for internal in ("column generation expressions", "column generation expression", "generation expression"):
        message = message.replace(internal, "row filter")
    if _MULTIPLE_COMMANDS in message:
        return InputError(
            f"{display}: the filter {given!r} holds more than one SQL statement as the server reads it",
            "A row filter is one condition over the table's columns. Remove the ';' that ends it early "
            "(inside a string it is fine, but check the quoting: with standard_conforming_strings = off "
            "a backslash escapes the quote that follows it).",
            title=FILTER_TITLE,
        )
    return InputError(f"{display}: the filter {given!r} is rejected by the server: {message}", remedy,
                      title=FILTER_TITLE)


def rejection_for(exc: psycopg.Error, conn: psycopg.Connection[Any], display: str, predicate: str,
                        remedy: Callable[[psycopg.Error], str]) -> PgtideError:
    """What to raise for an error while the server checks a predicate.

    Only a broken connection is a connection problem; everything else the server says about
    the text (a syntax error, a timeout, "row is too big", a read-only server) is an answer.
    """
    state = exc.sqlstate or ""
    if conn.closed or state.startswith("08") or not state:
        return ConnectError(f"the connection broke while the server checked a filter: {exc}",
                            "Check that the source is reachable and run the command again.")
    if state == "25006":  # read_only_sql_transaction: a hot standby, or a read-only role/database
        return EnvironmentProblem(
            f"{display}: cannot check the filter on a read-only server: {(exc.diag.message_primary or '').strip()}",
            "pgtide checks a filter on a temporary copy of the table's columns (rolled back), which a "
            "read-only server refuses: point the source at the primary.",
            title=FILTER_TITLE,
        )
    if state == "42501":  # insufficient_privilege
        return EnvironmentProblem(
            f"{display}: cannot check the filter: {(exc.diag.message_primary or str(exc)).strip()}",
            "pgtide checks a filter on a temporary copy of the table's columns (rolled back): grant the "
            "migration role TEMPORARY on the database (GRANT TEMPORARY ON DATABASE <db> TO <role>) and "
            "SELECT on the table.",
            title=FILTER_TITLE,
        )
    return server_rejection(display, predicate, exc, remedy=remedy(exc))


#: Objects a predicate may use: those PostgreSQL itself ships (pinned, so pg_depend records
#: no dependency on them). Anything recorded is the user's or an extension's — the same rule
#: publications apply — and is refused before anything could evaluate it.
_FOREIGN_OBJECTS = """
SELECT pg_catalog.pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid)
FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_rewrite r ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
     AND d.objid = r.oid
WHERE r.ev_class = %s::pg_catalog.regclass
  AND NOT (d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid IN (r.ev_class, %s::pg_catalog.regclass))
ORDER BY 1
"""


def canonical_predicate(conn: psycopg.Connection[Any], qualified: tuple[str, str], predicate: str, *,
                        display: str, remedy: Callable[[psycopg.Error], str]) -> CheckedPredicate:
    """Have the server parse ``predicate`` over table ``qualified``; return its deparsed form.

    Changes nothing: every object exists only inside a transaction that is rolled back on
    every path. ``conn`` must be in autocommit mode or idle.

    Three statements see the user's text, each one extended-protocol Parse:
    1. ``CREATE TEMP VIEW ... WHERE (<text>)`` — parse analysis only: nothing is planned or
       evaluated, so pg_depend can show every function, operator, type or relation the text
       uses before any of them runs. Only built-in ones are accepted.
    2. ``ALTER TABLE ... ADD COLUMN ... GENERATED ALWAYS AS (<text>) STORED`` — the server
       then decides it is one immutable boolean expression over the table's columns (no
       subquery, aggregate, window or set-returning function). Its stored text is TOASTed,
       so long IN lists fit (an index predicate would not).
    3. ``pg_get_expr`` of that column's expression is the text pgtide uses from then on.
    """
    # The scratch table takes the real table's name (in pg_temp), so that a predicate that
    # names its table ("orders.status = 'open'") reads the same as it would in a publication.
    scratch = qualified[1]
    marker = f"pgtide_check_{random_names.token_hex(4)}"
    relation = sql.SQL("pg_temp.{}").format(sql.Identifier(scratch))
    with conn.transaction(force_rollback=True):
        limit_transaction(conn, read_only=False)
        try:
            execute_parsed(conn, sql.SQL("CREATE TEMPORARY TABLE {} (LIKE {})").format(
                sql.Identifier(scratch), sql.Identifier(*qualified)))
            view = sql.SQL("CREATE TEMPORARY VIEW {} AS SELECT 1 FROM {} WHERE (").format(
                sql.Identifier(marker), relation).as_string(conn) + predicate + "\n)"
            execute_parsed(conn, view)
            foreign = [row[0] for row in conn.execute(
                _FOREIGN_OBJECTS, [f"pg_temp.{sql.Identifier(marker).as_string(conn)}",
                                   relation.as_string(conn)]).fetchall()]
            if foreign:
                raise InputError(
                    f"{display}: the filter {predicate!r} uses " + ", ".join(foreign[:5])
                    + (" and more" if len(foreign) > 5 else "") + ", which PostgreSQL does not ship",
                    "A row filter may only use this table's columns, constants and built-in operators and "
                    "functions (as publications require); user-defined or extension functions, operators, "
                    "types and other tables are refused before anything runs.",
                    title=FILTER_TITLE,
                )
            column = sql.SQL("ALTER TABLE {} ADD COLUMN {} boolean GENERATED ALWAYS AS (").format(
                relation, sql.Identifier(marker)).as_string(conn) + predicate + "\n) STORED"
            execute_parsed(conn, column)
        except psycopg.Error as exc:
            raise rejection_for(exc, conn, display, predicate, remedy) from None
        # Printed for reuse in any session: catalog names bare, every other name qualified,
        # literals in the pinned styles.
        conn.execute("SELECT pg_catalog.set_config('search_path', %s, true)", [SEARCH_PATH])
        pin_quoting(conn, local=True)
        row = conn.execute(
            "SELECT pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), "
            "       ARRAY(SELECT a.attname::text FROM pg_catalog.pg_depend d "
            "             JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
            "             WHERE d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND d.objid = ad.oid "
            "               AND d.refobjid = ad.adrelid AND d.refobjsubid NOT IN (0, ad.adnum) ORDER BY a.attnum) "
            "FROM pg_catalog.pg_attrdef ad JOIN pg_catalog.pg_attribute col "
            "     ON col.attrelid = ad.adrelid AND col.attnum = ad.adnum "
            "WHERE ad.adrelid = %s::pg_catalog.regclass AND col.attname = %s",
            [relation.as_string(conn), marker],
        ).fetchone()
    if row is None or row[0] is None:
        raise InputError(f"{display}: the filter {predicate!r} is not a single condition",
                         "Give one SQL boolean expression over this table's columns.", title=FILTER_TITLE)
    return CheckedPredicate(text=row[0], columns=tuple(row[1]))
