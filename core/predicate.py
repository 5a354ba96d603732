"""A user's row filter, as the source server understands it.

pgtide's own lexer (``selection.check_predicate_syntax``) is only a fast first check for
friendly messages. The safety boundary is here:

1. The user's text is sent to the server only through the extended query protocol (one
   Parse), which PostgreSQL refuses to hold more than one command, inside a transaction that
   is always rolled back and bounded by statement and lock timeouts.
2. The text is parsed as the predicate of a partial index on a temporary copy of the table's
   columns (``CREATE TEMP TABLE ... (LIKE t)``). PostgreSQL then decides that it is one
   boolean expression over that table's columns: no subquery, no aggregate, no window or
   set-returning function, only immutable functions (the same rules publications apply).
3. What pgtide uses afterwards — in the COPY, the publication, the FK proof, verify — is the
   server's deparsed text of that predicate (``pg_get_expr``), printed with
   ``search_path = pg_catalog`` (every non-catalog name schema-qualified, so the text means
   the same in any session) and ``standard_conforming_strings = on``.
4. The deparsed text is parsed once more (again one Parse) by the checks that follow it, so
   it is proven to be a single expression under those settings; every session that later
   runs it pins the same settings (:data:`QUOTING_SETTINGS`). A string literal in it is thus
   lexed exactly as the server printed it, whatever the database's own defaults are.
"""

from __future__ import annotations

import secrets as random_names
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from .errors import EnvironmentProblem, InputError

#: How long the server may spend on one check of a user predicate.
PREDICATE_CHECK_TIMEOUT = "5s"

#: Settings under which deparsed predicates are printed and later run. Deparsed string
#: literals depend on standard_conforming_strings; pinning it on everywhere a predicate
#: runs makes them mean the same in every session.
QUOTING_SETTINGS: tuple[tuple[str, str], ...] = (("standard_conforming_strings", "on"),)

FILTER_TITLE = "Invalid row filter"

_MULTIPLE_COMMANDS = "cannot insert multiple commands into a prepared statement"


@dataclass(frozen=True)
class CheckedPredicate:
    """A predicate the server accepted, in the server's own words."""

    #: The server's deparsed expression; valid under :data:`QUOTING_SETTINGS`.
    text: str
    #: The table's columns the expression reads, from the server's dependency records.
    columns: tuple[str, ...]


def execute_parsed(conn: psycopg.Connection[Any], query: str | sql.Composable,
                   params: Sequence[Any] | None = None) -> psycopg.Cursor[Any]:
    """Run ``query`` through the extended protocol: the server refuses a second command in it.

    psycopg sends a query without parameters through the simple protocol, which runs every
    statement of the string; ``prepare=True`` makes it a Parse/Bind/Execute instead.
    """
    return conn.execute(query, params, prepare=True)  # type: ignore[arg-type]


def deparsed(text: str) -> sql.Composable:
    """A predicate the server printed (:func:`canonical_predicate`, ``pg_publication_tables``), as SQL.

    Only for text that came back from the server's deparser, never for a user's text: that
    goes through :func:`canonical_predicate` first.
    """
    return sql.SQL(text)  # type: ignore[arg-type]


def pin_quoting(conn: psycopg.Connection[Any], *, local: bool = False) -> None:
    """Pin the settings deparsed predicates rely on, for this session (or transaction)."""
    for name, value in QUOTING_SETTINGS:
        conn.execute("SELECT pg_catalog.set_config(%s, %s, %s)", [name, value, local])


def limit_transaction(conn: psycopg.Connection[Any], *, read_only: bool, timeout: str = PREDICATE_CHECK_TIMEOUT) -> None:
    """Bound the current (check) transaction in time, and pin the quoting settings in it."""
    if read_only:
        conn.execute("SET TRANSACTION READ ONLY")
    conn.execute("SELECT pg_catalog.set_config('statement_timeout', %s, true)", [timeout])
    conn.execute("SELECT pg_catalog.set_config('lock_timeout', %s, true)", [timeout])


def server_rejection(display: str, given: str, exc: psycopg.Error, *, remedy: str) -> InputError:
    """The server's refusal of a predicate as an InputError that says what to change."""
    # The check parses the text as an index predicate; the user wrote a row filter.
    message = (exc.diag.message_primary or str(exc)).strip().replace("index predicate", "row filter")
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


def canonical_predicate(conn: psycopg.Connection[Any], qualified: tuple[str, str], predicate: str, *,
                        display: str, remedy: Callable[[psycopg.Error], str]) -> CheckedPredicate:
    """Have the server parse ``predicate`` over table ``qualified``; return its deparsed form.

    Changes nothing: the temporary table and its index exist only inside a transaction that
    is rolled back on every path. ``conn`` must be in autocommit mode or idle.
    """
    # The scratch table takes the real table's name (in pg_temp), so that a predicate that
    # names its table ("orders.status = 'open'") reads the same as it would in a publication.
    scratch = qualified[1]
    index = f"pgtide_check_{random_names.token_hex(4)}"
    with conn.transaction(force_rollback=True):
        limit_transaction(conn, read_only=False)
        try:
            execute_parsed(conn, sql.SQL("CREATE TEMPORARY TABLE {} (LIKE {})").format(
                sql.Identifier(scratch), sql.Identifier(*qualified)))
        except psycopg.errors.InsufficientPrivilege as exc:
            raise EnvironmentProblem(
                f"{display}: cannot check the filter: {(exc.diag.message_primary or str(exc)).strip()}",
                "pgtide checks a filter on a temporary copy of the table's columns (rolled back): grant the "
                "migration role TEMPORARY on the database (GRANT TEMPORARY ON DATABASE <db> TO <role>) and "
                "SELECT on the table.",
                title=FILTER_TITLE,
            ) from None
        # The index key is a constant: only the predicate matters, and any column type works.
        statement = sql.SQL("CREATE INDEX {} ON pg_temp.{} ((true)) WHERE (").format(
            sql.Identifier(index), sql.Identifier(scratch)
        ).as_string(conn) + predicate + "\n)"
        try:
            execute_parsed(conn, statement)
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.OperationalError):
                raise
            raise server_rejection(display, predicate, exc, remedy=remedy(exc)) from None
        # Printed for reuse in any session: catalog names bare, every other name qualified.
        conn.execute("SELECT pg_catalog.set_config('search_path', 'pg_catalog', true)")
        pin_quoting(conn, local=True)
        row = conn.execute(
            "SELECT pg_catalog.pg_get_expr(i.indpred, i.indrelid), "
            "       ARRAY(SELECT a.attname::text FROM pg_catalog.pg_depend d "
            "             JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
            "             WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = i.indexrelid "
            "               AND d.refobjid = i.indrelid AND d.refobjsubid > 0 ORDER BY a.attnum), "
            "       (SELECT count(*) FROM pg_catalog.pg_index j WHERE j.indrelid = i.indrelid) "
            "FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = %s AND c.relnamespace = pg_catalog.pg_my_temp_schema()",
            [index],
        ).fetchone()
    if row is None or row[0] is None or row[2] != 1:
        # Only reachable if the text changed the statement's shape, which one Parse of a
        # CREATE INDEX cannot do; refuse rather than guess.
        raise InputError(f"{display}: the filter {predicate!r} is not a single condition",
                         "Give one SQL boolean expression over this table's columns.", title=FILTER_TITLE)
    return CheckedPredicate(text=row[0], columns=tuple(row[1]))
