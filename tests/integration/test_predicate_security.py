"""A row filter is the server's to parse: no crafted predicate can run SQL on the source.

Every test here runs against a source cluster with ``log_statement = all`` and checks two
things around each command: the source's catalog (tables, publications, slots, roles,
settings, the rows of the tables involved) is identical before and after, and the server's
log shows that the user's text never reached it through the simple query protocol (the
one that runs several statements) and that no hidden statement ran.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg
import pytest
import tomlkit
from engine_support import replication_objects
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pgharness import LOGICAL_SETTINGS, PgCluster, running_cluster
from psycopg import sql

from pgtide.core.catalog.discovery import TableInfo, discover_database
from pgtide.core.catalog.scope import TableScope, check_table_filter
from pgtide.core.engine import migrate
from pgtide.core.engine.validate import validate
from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.infra.errors import EnvironmentProblem, InputError, PgtideError
from pgtide.core.model import profiles
from pgtide.core.model.plan import Options, Plan
from pgtide.core.model.selection import Selection

PGTIDE = str(Path(sys.executable).parent / "pgtide")

#: Statements an attacker would hide; each leaves a trace the catalog snapshot sees.
HIDDEN = (
    "DROP TABLE victim",
    "CREATE ROLE pwned SUPERUSER",
    "INSERT INTO victim VALUES (666)",
    "CREATE PUBLICATION pwned FOR ALL TABLES",
    "SELECT pg_create_logical_replication_slot('pwned', 'pgoutput')",
    "ALTER DATABASE postgres SET work_mem = '1MB'",
)

#: The two commands of the issue, verbatim (the second needs standard_conforming_strings = off).
ISSUE_DOLLAR = "orders:note = $€$ ' $€$ ) ; COMMIT; DROP TABLE victim; SELECT 1 --'"
ISSUE_BACKSLASH = "orders:note = '\\' OR note = ' ) ; COMMIT; DROP TABLE victim; SELECT 1 --'"

# Dollar-quote tags of every character class PostgreSQL's lexer knows: ASCII letters,
# underscore, digits after the first character, any byte >= 0x80 (letters or not), and
# strings that look like tags but are not (a leading digit, a space).
TAGS = ("", "a", "Tag", "_", "_x9", "t1", "é", "€", "✓", "日本", "ß9", "\u00a0", "x€y", "1x", "a b", "$")


def _family() -> list[str]:
    """Predicates built from PostgreSQL's lexer rules, each with a statement hidden after it."""
    templates = [f"note = ${tag}$ ' ${tag}$ ) ; COMMIT; {{H}}; SELECT 1 --'" for tag in TAGS]
    templates += [
        "note = E'\\' ) ; COMMIT; {H}; SELECT 1 --'",          # E'' with an escaped quote
        "note = e'\\\\' ) ; COMMIT; {H}; SELECT 1 --'",        # E'' ending in an escaped backslash
        "note = '\\' ) ; COMMIT; {H}; SELECT 1 --'",           # a backslash, read per standard_conforming_strings
        "note = '\\' OR note = ' ) ; COMMIT; {H}; SELECT 1 --'",
        "note = U&'\\0027' ) ; COMMIT; {H}; SELECT 1 --'",     # U&'' with a Unicode escape for a quote
        "note = U&'!0027' UESCAPE '!' ) ; COMMIT; {H}; --'",
        "\"no\"\"te;\" = 'x' ) ; COMMIT; {H}; --",               # quoted identifiers holding quotes, ';'
        "\"note\" = 'a' OR \"x\"\";\" = ')' ; {H}; --'",
        "note = 'a' /* /* */ ) ; COMMIT; {H}; -- */ */",       # nested comments
        "/* */ true ) ; {H}; --",
        "id = 1) ; {H}; SELECT (1",                            # plain statements after the filter
        "true); {H}; --",
        "id = 1 ;{H}",
        "note = 'a'\n'b' ) ; {H}; --",                         # string continuation across lines
        "note = $$ $$ ) ; COMMIT; {H}; SELECT 1 --$$",
        "note = $a$ $b$ $a$ ) ; {H}; -- $b$",
        "note = '' ) ; {H} ; SELECT ''",
        "note = B'0' ) ; {H}; --",
        "note = X'1' ) ; {H}; --",
    ]
    return [template.replace("{H}", HIDDEN[index % len(HIDDEN)]) for index, template in enumerate(templates)]


FAMILY = _family()


# -- the source under watch ---------------------------------------------------------------------


@dataclass
class Watched:
    cluster: PgCluster
    databases: tuple[str, str]  # standard_conforming_strings on, off

    def endpoint(self, database: str) -> Endpoint:
        return Endpoint.parse(self.cluster.url(dbname=database), env={})

    def log_mark(self) -> int:
        return self.cluster.logfile.stat().st_size

    def statements_since(self, mark: int) -> list[tuple[str, str]]:
        """(protocol, text) of every statement logged since ``mark``: 'simple' or 'extended'."""
        with self.cluster.logfile.open("rb") as handle:
            handle.seek(mark)
            text = handle.read().decode(errors="replace")
        entries = re.split(r"^(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \S+ \[\d+\] )", text, flags=re.MULTILINE)
        found = []
        for entry in entries:
            match = re.match(r"\S+ \S+ \S+ \[\d+\] LOG:  (statement|execute [^:]+): (.*)", entry, re.DOTALL)
            if match:
                found.append(("simple" if match.group(1) == "statement" else "extended", match.group(2).rstrip("\n")))
        return found

    def snapshot(self) -> dict[str, list[tuple[str, ...]]]:
        shot: dict[str, list[tuple[str, ...]]] = {
            "roles": self.cluster.execute("SELECT rolname, rolsuper::text, rolcanlogin::text FROM pg_roles ORDER BY 1"),
            "slots": self.cluster.execute("SELECT slot_name, database FROM pg_replication_slots ORDER BY 1"),
            "settings": self.cluster.execute(
                "SELECT setdatabase::text, setrole::text, array_to_string(setconfig, ',') FROM pg_db_role_setting "
                "ORDER BY 1, 2"),
            "databases": self.cluster.execute("SELECT datname FROM pg_database ORDER BY 1"),
        }
        for database in self.databases:
            shot[database] = self.cluster.execute(
                """
                SELECT 'relation', n.nspname || '.' || c.relname || ' ' || c.relkind::text
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname !~ '^pg_(toast_)?temp_'
                UNION ALL SELECT 'publication', pubname FROM pg_publication
                UNION ALL SELECT 'publication table', pubname || ' ' || schemaname || '.' || tablename
                          FROM pg_publication_tables
                UNION ALL SELECT 'function', p.oid::regprocedure::text FROM pg_proc p
                          WHERE p.pronamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
                UNION ALL SELECT 'orders', string_agg(id || ':' || coalesce(note, '<null>'), ',' ORDER BY id) FROM orders
                UNION ALL SELECT 'victim', string_agg(id::text, ',' ORDER BY id) FROM victim
                UNION ALL SELECT 'calls', last_value || ' ' || is_called FROM calls
                ORDER BY 1, 2
                """,
                dbname=database,
            )
        return shot


@pytest.fixture(scope="module")
def watched(pg_bindir: Path) -> Iterator[Watched]:
    # The default log_line_prefix ("%m [%p] ") is what statements_since() parses.
    settings_ = {**LOGICAL_SETTINGS, "log_statement": "all"}
    with running_cluster(pg_bindir, **settings_) as cluster:
        names = ("sec_on", "sec_off")
        for name in names:
            cluster.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            cluster.execute(
                """
                CREATE TABLE orders (id int PRIMARY KEY, note text, status text, tags text[], created timestamp);
                ALTER TABLE orders REPLICA IDENTITY FULL;
                INSERT INTO orders SELECT g, CASE g % 4 WHEN 0 THEN ';' WHEN 1 THEN 'a;b' WHEN 2 THEN 'it''s'
                    ELSE '--x' END, 'open', ARRAY['t' || g], '2024-01-01'::timestamp + g * interval '1 day'
                    FROM generate_series(1, 40) g;
                -- Side effects an "immutable" user function could have: every call advances it.
                CREATE SEQUENCE calls;
                CREATE FUNCTION public.bump(text) RETURNS boolean IMMUTABLE LANGUAGE plpgsql
                    AS $$ BEGIN PERFORM nextval('public.calls'); RETURN true; END $$;
                CREATE TABLE victim (id int PRIMARY KEY);
                INSERT INTO victim VALUES (1), (2);
                """,
                dbname=name,
            )
        cluster.execute("ALTER DATABASE sec_off SET standard_conforming_strings = off")
        yield Watched(cluster, names)


def _assert_nothing_ran(watched: Watched, mark: int, given: str) -> None:
    statements = watched.statements_since(mark)
    raw = given.split(":", 1)[1] if given.startswith("orders:") else given
    for protocol, text in statements:
        # The simple protocol runs every statement of a string: the user's text never goes there.
        assert not (protocol == "simple" and raw in text), f"user text sent as a simple query: {text!r}"
        stripped = text.lstrip("( \n")
        for hidden in HIDDEN:
            assert not stripped.startswith(hidden.split(" (")[0]), f"a hidden statement ran: {text!r}"


def _plan(watched: Watched, database: str, target: PgCluster, predicate: str) -> Plan:
    return Plan(watched.endpoint(database), Endpoint.parse(target.url(dbname=database), env={}),
                Selection.from_cli(table_filters=[predicate]), Options(jobs=1))


# -- the issue's two commands, through the CLI ------------------------------------------------------


# (With standard_conforming_strings on, the backslash one is two harmless string literals:
# the family test below covers it.)
@pytest.mark.parametrize(("database", "flag"), [("sec_on", ISSUE_DOLLAR), ("sec_off", ISSUE_BACKSLASH)])
def test_the_issue_commands_change_nothing(watched: Watched, target_cluster: PgCluster, tmp_path: Path,
                                           database: str, flag: str) -> None:
    source = watched.cluster.url(dbname=database)
    target = target_cluster.url(dbname=database)
    before, target_before = watched.snapshot(), replication_objects(watched.cluster, target_cluster)
    target_dbs = target_cluster.execute("SELECT datname FROM pg_database ORDER BY 1")
    mark = watched.log_mark()

    checked = subprocess.run([PGTIDE, "validate", "--source", source, "--target", target, "--table-filter", flag,
                              "--json"], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 1, checked.stderr
    failed = [json.loads(line) for line in checked.stdout.splitlines()
              if '"selection"' in line and '"error"' in line]
    assert failed and "public.orders" in failed[0]["observed"], checked.stdout
    assert "Traceback" not in checked.stderr

    started = subprocess.run([PGTIDE, "init", "--yes", "--source", source, "--target", target, "--table-filter",
                              flag], capture_output=True, text=True, timeout=120)
    assert started.returncode == 2, started.stderr
    assert "orders" in started.stderr and "Traceback" not in started.stderr

    seed = tmp_path / "seed.toml"
    document = tomlkit.document()
    document["databases"] = {database: {"table_filters": [{"table": "orders", "where": flag.split(":", 1)[1]}]}}
    seed.write_text(tomlkit.dumps(document))
    imported = subprocess.run([PGTIDE, "profile", "import", str(seed), "--as", "crafted", "--source", source,
                               "--target", target], capture_output=True, text=True, timeout=60)
    assert imported.returncode in (0, 2), imported.stderr
    assert "Traceback" not in imported.stderr

    assert watched.snapshot() == before
    assert replication_objects(watched.cluster, target_cluster) == target_before
    assert target_cluster.execute("SELECT datname FROM pg_database ORDER BY 1") == target_dbs
    _assert_nothing_ran(watched, mark, flag)
    # And a crafted profile, once used, is refused by the server just the same.
    if imported.returncode == 0:
        mark = watched.log_mark()
        again = subprocess.run([PGTIDE, "validate", "--profile", "crafted", "--json"], capture_output=True,
                               text=True, timeout=120)
        assert again.returncode == 1, again.stderr
        assert watched.snapshot() == before
        _assert_nothing_ran(watched, mark, flag)


# -- a family of lexer tricks, through every entry point -----------------------------------------


_ORDERS: dict[str, TableInfo] = {}


def _table(watched: Watched, database: str, predicate: str) -> TableScope:
    if database not in _ORDERS:
        catalog = discover_database(watched.endpoint(database))
        _ORDERS[database] = next(t for t in catalog.tables if t.qualified == ("public", "orders"))
    return TableScope(database=database, info=_ORDERS[database], mode="full", row_filter=predicate, where=predicate)


@pytest.mark.parametrize("database", ["sec_on", "sec_off"])
def test_lexer_tricks_are_refused_or_harmless(watched: Watched, target_cluster: PgCluster, database: str) -> None:
    before = watched.snapshot()
    refused = accepted = 0
    for predicate in FAMILY:
        mark = watched.log_mark()
        # Straight to the server check, past pgtide's own lexer: the server is the boundary.
        with psycopg.connect(watched.cluster.url(dbname=database), autocommit=True) as conn:
            try:
                checked = check_table_filter(conn, _table(watched, database, predicate), replicate=True)
            except InputError:
                refused += 1
                checked = None
        try:
            plan: Plan | None = _plan(watched, database, target_cluster, f"orders:{predicate}")
        except InputError:
            plan = None  # pgtide's own lexer refused it already: a friendly first check
        if plan is not None:
            report = validate(plan)
            selection = [c for c in report.checks if c.name == "selection"]
            if checked is None:
                assert selection and selection[0].status == "error", (predicate, selection)
                with pytest.raises(InputError):
                    migrate.init(plan)
        if checked is not None:
            accepted += 1
            # Accepted means the whole text sat inside literals; the server's text of it is
            # what would be used, and it checks again to itself.
            assert checked.where is not None
            with psycopg.connect(watched.cluster.url(dbname=database), autocommit=True) as conn:
                again = check_table_filter(conn, replace(checked, row_filter=checked.where), replicate=True)
            assert again.where == checked.where
        try:
            profiles.import_seed_config(_seed_file(watched, database, predicate), "family",
                                        source=watched.endpoint(database),
                                        target=Endpoint.parse(target_cluster.url(dbname=database), env={}))
        except InputError:
            pass
        assert watched.snapshot() == before, predicate
        _assert_nothing_ran(watched, mark, predicate)
    assert refused >= len(FAMILY) - 6, (refused, accepted)


def _seed_file(watched: Watched, database: str, predicate: str) -> Path:
    path = watched.cluster.logfile.parent / "family.toml"
    document = tomlkit.document()
    document["databases"] = {database: {"table_filters": [{"table": "orders", "where": predicate}]}}
    path.write_text(tomlkit.dumps(document))
    return path


# -- a property test over generated predicates ------------------------------------------------------

_FRAGMENTS = st.sampled_from([
    "'", "''", "\\", "\\'", "E'", "e'", "U&'", "UESCAPE '!'", "$$", "$a$", "$€$", "$é$", "$1$", "$_$", '"', '""',
    ";", "--", "\n", "/*", "*/", "(", ")", " ", "note", "id", "=", "1", "OR", "AND", "COMMIT", "SELECT 1",
    "true", ",", "::text", "B'", "X'",
])


@settings(max_examples=120, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(_FRAGMENTS, min_size=1, max_size=14), st.sampled_from(HIDDEN), st.booleans())
def test_generated_predicates_never_run_sql(watched: Watched, pieces: list[str], hidden: str, off: bool) -> None:
    database = watched.databases[1 if off else 0]
    predicate = "".join(pieces) + f" ) ; {hidden}; --"
    before = watched.snapshot()
    mark = watched.log_mark()
    table = _table(watched, database, predicate)
    with psycopg.connect(watched.cluster.url(dbname=database), autocommit=True) as conn:
        try:
            checked = check_table_filter(conn, table, replicate=True)
        except PgtideError:
            checked = None
        if checked is not None:
            # The server's text is always reusable: checking it again gives the same text.
            assert checked.where is not None
            again = check_table_filter(conn, replace(table, where=checked.where), replicate=True)
            assert again.where == checked.where
    assert watched.snapshot() == before, predicate
    _assert_nothing_ran(watched, mark, predicate)


# -- odd but harmless predicates still work, with the server's text ----------------------------------

HARMLESS = {
    "note = ';'": 10,
    "note = $$a;b$$": 10,
    "note = 'it''s' OR note = $x$--x$x$": 20,
    "note LIKE '%;%' AND id <= 20": 10,
}


@pytest.mark.parametrize("predicate", list(HARMLESS))
def test_odd_predicates_work_end_to_end_with_the_server_text(watched: Watched, target_cluster: PgCluster,
                                                             predicate: str) -> None:
    database = "sec_on"
    plan = _plan(watched, database, target_cluster, f"orders:{predicate}")
    plan = Plan(plan.source, plan.target, Selection.from_cli(table_filters=[f"orders:{predicate}"],
                                                            include_tables=["orders"]), plan.options)
    scope = migrate.build_scope(plan.source, plan.selection)
    where = scope.databases[0].table("public", "orders").where  # type: ignore[union-attr]
    assert where is not None and where != predicate and where.startswith("(")
    mark = watched.log_mark()
    try:
        results = migrate.init(plan, scope=scope)
        assert [r.status for r in results] == ["streaming"]
        copied = target_cluster.execute("SELECT count(*) FROM orders", dbname=database)[0][0]
        assert copied == HARMLESS[predicate]
        statements = watched.statements_since(mark)
        # The COPY and the publication carry the server's text, not the user's.
        assert any(text.startswith("COPY (SELECT") and where in text for _, text in statements), statements
        assert any("CREATE PUBLICATION" in text and where in text for p, text in statements if p == "extended")
        rowfilter = watched.cluster.execute("SELECT rowfilter FROM pg_publication_tables WHERE tablename = 'orders'",
                                            dbname=database)
        assert [r[0] for r in rowfilter] == [where]
    finally:
        migrate.teardown(plan)
        target_cluster.drop_database(database)


# -- what the review found: nothing of the user's may run, and the text means the same everywhere ----


def _check(watched: Watched, database: str, predicate: str) -> TableScope:
    with psycopg.connect(watched.cluster.url(dbname=database), autocommit=True) as conn:
        return check_table_filter(conn, _table(watched, database, predicate), replicate=True)


@pytest.mark.parametrize("predicate", ["public.bump('x')", "note = 'a' OR public.bump(note)",
                                       "bump('x') AND id = 1", "id = 1) UNION SELECT 1 FROM victim WHERE (true"])
def test_user_functions_and_other_tables_are_refused_before_anything_runs(watched: Watched,
                                                                          predicate: str) -> None:
    before = watched.snapshot()
    with pytest.raises(InputError) as info:
        _check(watched, "sec_on", predicate)
    assert "does not ship" in info.value.cause or "rejected by the server" in info.value.cause
    # The sequence the function would advance is untouched: the function never ran, not even
    # while the server folded constants.
    assert watched.snapshot() == before


def test_a_look_alike_in_public_never_runs_in_the_checks_or_the_copy(watched: Watched,
                                                                      target_cluster: PgCluster) -> None:
    database = "sec_on"
    watched.cluster.execute(
        "CREATE FUNCTION public.array_length(text[], integer) RETURNS integer IMMUTABLE LANGUAGE plpgsql "
        "AS $$ BEGIN PERFORM nextval('public.calls'); RETURN 1; END $$", dbname=database)
    try:
        before = watched.snapshot()
        predicate = "array_length(tags, 1) = 1 AND id <= 5"
        plan = Plan(watched.endpoint(database), Endpoint.parse(target_cluster.url(dbname=database), env={}),
                    Selection.from_cli(table_filters=[f"orders:{predicate}"], include_tables=["orders"]),
                    Options(jobs=1))
        scope = migrate.build_scope(plan.source, plan.selection)
        where = scope.databases[0].table("public", "orders").where  # type: ignore[union-attr]
        assert where is not None and "array_length(tags, 1)" in where
        try:
            assert [r.status for r in migrate.init(plan, scope=scope)] == ["streaming"]
            assert target_cluster.execute("SELECT count(*) FROM orders", dbname=database)[0][0] == 5
        finally:
            migrate.teardown(plan)
            target_cluster.drop_database(database)
        assert watched.cluster.execute("SELECT last_value, is_called FROM calls", dbname=database) == [(1, False)]
        assert {k: v for k, v in watched.snapshot().items() if k != database} == \
            {k: v for k, v in before.items() if k != database}
    finally:
        watched.cluster.execute("DROP FUNCTION public.array_length(text[], integer)", dbname=database)


def test_date_literals_are_printed_in_iso_whatever_the_database_datestyle(watched: Watched) -> None:
    watched.cluster.execute("ALTER DATABASE sec_off SET DateStyle = 'SQL, DMY'")
    try:
        checked = _check(watched, "sec_off", "created >= '02/01/2024 03:04:05'")  # DMY: 2 January
        assert checked.where is not None and "'2024-01-02 03:04:05'::timestamp" in checked.where
        assert checked.estimated_rows is not None
    finally:
        watched.cluster.execute("ALTER DATABASE sec_off RESET DateStyle")


def test_a_long_in_list_fits(watched: Watched) -> None:
    ids = ", ".join(str(i) for i in range(1, 1500))
    checked = _check(watched, "sec_on", f"id IN ({ids})")
    assert checked.where is not None and "1499" in checked.where


def test_a_read_only_database_is_an_environment_problem_not_an_internal_error(watched: Watched) -> None:
    watched.cluster.execute("ALTER DATABASE sec_on SET default_transaction_read_only = on")
    try:
        with pytest.raises(EnvironmentProblem) as info:
            _check(watched, "sec_on", "id = 1")
        assert "read-only" in info.value.cause and "primary" in info.value.remedy
    finally:
        watched.cluster.execute("ALTER DATABASE sec_on RESET default_transaction_read_only")


def test_teardown_keeps_a_publication_that_only_looks_like_a_check(watched: Watched,
                                                                   target_cluster: PgCluster) -> None:
    with watched.cluster.connect("sec_on") as conn:
        conn.execute("CREATE PUBLICATION pgtide_check_mine FOR TABLE victim")
        conn.execute("CREATE PUBLICATION pgtide_check_0a1b2c3d FOR TABLE victim")  # what 0.1 could leave
    try:
        plan = _plan(watched, "sec_on", target_cluster, "orders:id < 3")
        migrate.teardown_database(plan, "sec_on")
        left = [r[0] for r in watched.cluster.execute("SELECT pubname FROM pg_publication", dbname="sec_on")]
        assert left == ["pgtide_check_mine"]
    finally:
        watched.cluster.execute("DROP PUBLICATION IF EXISTS pgtide_check_mine", dbname="sec_on")


def test_non_utf8_source_copies_exactly_the_filtered_rows_through_psql(pg_bindir: Path, target_cluster: PgCluster,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from pgtide.core.copy import snapshot as snapshot_copy

    monkeypatch.setattr(snapshot_copy, "PIPE_THRESHOLD_BYTES", 0)  # every table through psql
    with running_cluster(pg_bindir, **LOGICAL_SETTINGS) as cluster:
        cluster.execute("CREATE DATABASE latin ENCODING 'LATIN1' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'")
        cluster.execute("CREATE TABLE names (id int PRIMARY KEY, name text); "
                        "ALTER TABLE names REPLICA IDENTITY FULL; "
                        "INSERT INTO names VALUES (1, 'é'), (2, 'Ã©'), (3, 'e')", dbname="latin")
        plan = Plan(Endpoint.parse(cluster.url(dbname="latin"), env={}),
                    Endpoint.parse(target_cluster.url(dbname="latin"), env={}),
                    Selection.from_cli(table_filters=["names:name = 'é'"]), Options(jobs=1))
        try:
            assert [r.status for r in migrate.init(plan)] == ["streaming"]
            assert target_cluster.execute("SELECT id, name FROM names", dbname="latin") == [(1, "é")]
        finally:
            migrate.teardown(plan)
            target_cluster.drop_database("latin")
