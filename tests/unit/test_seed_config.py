"""Unit tests for pgtide.core.model.seed_config (pure: no database)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pgtide.core.infra.errors import InputError
from pgtide.core.model.seed_config import dump_seed_config, load_seed_config, parse_seed_config
from pgtide.core.model.selection import Selection, TableRef, TimeFilter, TimeWindow

# The example from the seed tool's documentation (docs: "Advanced Replication Configuration").
SEED_EXAMPLE = """\
# replication-config.toml

[databases.kong]
# Tables copied as schema-only (no data)
schema_only = ["evmlog_strides", "price"]

# Arbitrary SQL WHERE predicates
[[databases.kong.table_filters]]
table = "output"
where = "series_time >= NOW() - INTERVAL '6 months'"

[[databases.kong.table_filters]]
table = "transactions"
where = "status IN ('active', 'pending')"

# Time-based shorthand; converted to WHERE column >= NOW() - INTERVAL 'x'
[[databases.kong.time_filters]]
table = "metrics"
column = "created_at"
last = "1 year"
"""


def _err(text: str) -> InputError:
    with pytest.raises(InputError) as info:
        parse_seed_config(textwrap.dedent(text), name="config.toml")
    return info.value


# --- loading -----------------------------------------------------------------------


def test_seed_example_loads() -> None:
    sel = parse_seed_config(SEED_EXAMPLE, name="replication-config.toml")
    assert {r.target for r in sel.schema_only_tables} == {
        TableRef("kong", "public", "evmlog_strides"),
        TableRef("kong", "public", "price"),
    }
    assert sel.treatment("kong", "public", "output").row_filter == "series_time >= NOW() - INTERVAL '6 months'"
    assert sel.treatment("kong", "public", "transactions").row_filter == "status IN ('active', 'pending')"
    assert sel.treatment("kong", "public", "metrics").time_filter == TimeFilter("created_at", TimeWindow(1, "years"))
    assert sel.treatment("kong", "public", "price").mode == "schema_only"
    # Rules are per database: another database is untouched.
    assert sel.treatment("other", "public", "price").mode == "full"


def test_origins_name_file_line_and_key() -> None:
    sel = parse_seed_config(SEED_EXAMPLE, name="replication-config.toml")
    origins = {r.target.table: r.origin for r in sel.rules}  # type: ignore[union-attr]
    assert origins["output"] == "config file replication-config.toml line 8, databases.kong.table_filters[1]"
    assert origins["transactions"] == "config file replication-config.toml line 12, databases.kong.table_filters[2]"
    assert origins["metrics"] == "config file replication-config.toml line 17, databases.kong.time_filters[1]"
    assert origins["price"] == "config file replication-config.toml line 5, databases.kong.schema_only[2]"


def test_schema_key_and_schema_dot_table_entries() -> None:
    sel = parse_seed_config(textwrap.dedent("""\
        [databases.db1]
        schema_only = ["analytics.large_table", '"Sales"."Big One"', "Price"]

        [[databases.db1.table_filters]]
        table = "Mixed.Case Name"
        schema = "Analytics"
        where = "created_at > NOW() - INTERVAL '90 days'"

        [[databases.db1.time_filters]]
        table = "metrics"
        schema = "reporting"
        column = "TimeStamp"
        last = "6 months"
        """))
    assert {r.target for r in sel.schema_only_tables} == {
        TableRef("db1", "analytics", "large_table"),
        TableRef("db1", "Sales", "Big One"),
        TableRef("db1", "public", "price"),  # parsed as an identifier: folded
    }
    # "table"/"schema"/"column" keys are literal names: no dot split, no folding.
    assert sel.row_filters[0].target == TableRef("db1", "Analytics", "Mixed.Case Name")
    assert sel.time_filters[0].target == TableRef("db1", "reporting", "metrics")
    assert sel.time_filters[0].time_filter == TimeFilter("TimeStamp", TimeWindow(6, "months"))


def test_inline_tables_and_odd_keys_are_located() -> None:
    err = _err("""\
        [databases."my.db"]
        time_filters = [ {table = "a", column = "b", last = "2 days"},
           {table = "c", column = "d", tabel = "x"} ]
        """)
    assert err.cause == (
        'config.toml line 3: databases."my.db".time_filters[2]: unknown key \'tabel\' '
        "(expected one of: table, schema, column, last)"
    )


def test_empty_file_and_empty_section_are_empty_selections() -> None:
    assert parse_seed_config("") == Selection()
    assert parse_seed_config("[databases.kong]\n") == Selection()


def test_load_from_file(tmp_path: Path) -> None:
    path = tmp_path / "replication-config.toml"
    path.write_text(SEED_EXAMPLE, encoding="utf-8")
    sel = load_seed_config(path)
    assert sel == parse_seed_config(SEED_EXAMPLE)
    assert str(path) in sel.rules[0].origin


def test_load_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read config file"):
        load_seed_config(tmp_path / "nope.toml")
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[databases.caf\xe9]\n')
    with pytest.raises(InputError, match="not UTF-8"):
        load_seed_config(bad)


# --- errors with line numbers ------------------------------------------------------


def test_unknown_key_in_table_filter() -> None:
    err = _err("""\
        [databases.kong]
        schema_only = ["a"]

        [[databases.kong.table_filters]]
        table = "output"
        where = "x = 1"

        [[databases.kong.table_filters]]
        tabel = "orders"
        where = "y = 2"
        """)
    assert err.cause == (
        "config.toml line 9: databases.kong.table_filters[2]: unknown key 'tabel' "
        "(expected one of: table, schema, where)"
    )
    assert err.title == "Invalid config file"


def test_unknown_key_scheme() -> None:
    err = _err("""\
        [[databases.app.time_filters]]
        table = "m"
        scheme = "x"
        column = "ts"
        last = "1 day"
        """)
    assert err.cause.startswith("config.toml line 3: databases.app.time_filters[1]: unknown key 'scheme'")


def test_unknown_database_level_and_top_level_keys() -> None:
    err = _err("""\
        [databases.kong]
        schema_onyl = ["a"]
        """)
    assert err.cause.startswith("config.toml line 2: databases.kong: unknown key 'schema_onyl'")
    err = _err("""\
        # comment

        [database.kong]
        schema_only = ["a"]
        """)
    assert err.cause.startswith("config.toml line 3: unknown key 'database' (expected one of: databases)")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[databases.kong]\nschema_only = "x"\n',
         "config.toml line 2: databases.kong.schema_only: expected an array of strings, got a string"),
        ('[databases.kong]\nschema_only = [\n  "a",\n  3,\n]\n',
         "config.toml line 4: databases.kong.schema_only[2]: expected a string, got an integer"),
        ('[databases.kong]\ntable_filters = "x"\n',
         "config.toml line 2: databases.kong.table_filters: expected an array of tables"),
        ('[databases]\nkong = 3\n',
         "config.toml line 2: databases.kong: expected a table"),
        ('databases = [1]\n', "config.toml line 1: databases: expected a table of databases, got an array"),
        ('[[databases.kong.table_filters]]\ntable = 5\nwhere = "x"\n',
         "config.toml line 2: databases.kong.table_filters[1].table: expected a string, got an integer"),
        ('[[databases.kong.table_filters]]\ntable = "t"\nwhere = true\n',
         "config.toml line 3: databases.kong.table_filters[1].where: expected a string, got a boolean"),
        ('[[databases.kong.time_filters]]\ntable = "t"\ncolumn = "c"\nlast = 6\n',
         "config.toml line 4: databases.kong.time_filters[1].last: expected a string"),
        ('[[databases.kong.time_filters]]\ntable = "t"\ncolumn = 1979-05-27\nlast = "1 day"\n',
         "config.toml line 3: databases.kong.time_filters[1].column: expected a string, got a date/time"),
    ],
)
def test_wrong_types(text: str, expected: str) -> None:
    err = _err(text)
    assert err.cause.startswith(expected), err.cause


def test_missing_required_key_points_at_the_entry() -> None:
    err = _err("""\
        [databases.kong]

        [[databases.kong.table_filters]]
        table = "t"
        """)
    assert err.cause == "config.toml line 3: databases.kong.table_filters[1]: missing key 'where'"


def test_bad_predicate_window_and_names() -> None:
    err = _err('[[databases.kong.table_filters]]\ntable = "t"\n\nwhere = "1=1; DROP TABLE x"\n')
    assert err.cause.startswith("config.toml line 4: databases.kong.table_filters[1].where: row filter")
    assert "';'" in err.cause
    assert err.title == "Invalid row filter"
    err = _err('[[databases.kong.time_filters]]\ntable = "t"\ncolumn = "c"\nlast = "6 fortnights"\n')
    assert err.cause.startswith("config.toml line 4: databases.kong.time_filters[1].last: time window")
    err = _err('[databases.kong]\nschema_only = ["a.b.c"]\n')
    assert err.cause.startswith("config.toml line 2: databases.kong.schema_only[1]: schema-only table")
    err = _err(f'[[databases.kong.table_filters]]\ntable = "{"x" * 64}"\nwhere = "a = 1"\n')
    assert "longer than 63 bytes" in err.cause and "line 2" in err.cause
    err = _err('[[databases.kong.table_filters]]\ntable = ""\nwhere = "a = 1"\n')
    assert "table name is empty" in err.cause


def test_toml_syntax_error_reports_line_and_column() -> None:
    err = _err('[databases.kong]\nschema_only = ["a"\n\n[x\n')
    assert err.cause.startswith("config.toml: TOML syntax error:")
    assert "line" in err.cause and "column" in err.cause


def test_contradiction_inside_one_file_names_both_entries() -> None:
    err = _err("""\
        [[databases.kong.table_filters]]
        table = "t"
        where = "a = 1"

        [[databases.kong.table_filters]]
        table = "t"
        where = "a = 2"
        """)
    assert err.title == "Contradicting selection rules"
    assert "line 1, databases.kong.table_filters[1]" in err.cause
    assert "line 5, databases.kong.table_filters[2]" in err.cause


def test_schema_only_and_filter_in_file_is_precedence_not_error() -> None:
    sel = parse_seed_config(textwrap.dedent("""\
        [databases.kong]
        schema_only = ["t"]
        [[databases.kong.time_filters]]
        table = "t"
        column = "ts"
        last = "1 day"
        """))
    tr = sel.treatment("kong", "public", "t")
    assert tr.mode == "schema_only" and len(tr.notes) == 1


# --- CLI on top of a config file ---------------------------------------------------


def test_cli_flags_merge_on_top_of_config() -> None:
    config = parse_seed_config(SEED_EXAMPLE, name="c.toml")
    cli = Selection.from_cli(table_filters=["kong.public.output:series_time >= '2025-01-01'"],
                             schema_only_tables=["kong.public.audit"])
    merged = config.merge(cli)
    assert merged.treatment("kong", "public", "output").row_filter == "series_time >= '2025-01-01'"
    assert merged.treatment("kong", "public", "audit").mode == "schema_only"
    assert merged.treatment("kong", "public", "price").mode == "schema_only"


# --- dumping -----------------------------------------------------------------------


def test_seed_example_round_trips() -> None:
    first = parse_seed_config(SEED_EXAMPLE, name="a.toml")
    text = dump_seed_config(first)
    assert "[databases.kong]" in text and "[[databases.kong.time_filters]]" in text
    assert parse_seed_config(text, name="b.toml") == first
    assert dump_seed_config(parse_seed_config(text)) == text


def test_hostile_names_round_trip() -> None:
    sel = Selection.from_cli(
        schema_only_tables=['"my.db"."Sales"."Big ""One"""', '"my.db".public.select', "app.public.plain"],
        table_filters=['"my.db"."Q1".orders:note = \'say "hi"\' AND x::int > 1\n  AND y = $$a\'b$$'],
        time_filters=['app.public."Metrics":"Created At":2 weeks'],
    )
    text = dump_seed_config(sel)
    assert '[databases."my.db"]' in text
    assert parse_seed_config(text) == sel


def test_dump_refuses_what_the_seed_format_cannot_say() -> None:
    for sel in (
        Selection.from_cli(table_filters=["t:a = 1"]),  # every database
        Selection.from_cli(include_databases="app"),
        Selection.from_cli(exclude_tables=["app.public.t"]),
        Selection.from_cli(schema_only_tables=["app.t"]),  # unresolved
    ):
        with pytest.raises(InputError) as info:
            dump_seed_config(sel)
        assert info.value.title == "Cannot write seed config"
        assert "profile" in info.value.remedy


def test_line_scanner_survives_tricky_toml() -> None:
    # Brackets, quotes, '#' and '=' inside strings, multi-line strings, CRLF, escaped keys.
    text = (r'''# [databases.fake] in a comment
[databases."we.ird \u0064b"]  # quoted key with an escape
schema_only = [ '"lit]eral"', # ] [
  "\"x#y\"" ]
[[databases."we.ird db".table_filters]]
table = "t"
where = """a = '[{#' and
 b = ""x"""""
[[databases."we.ird db".table_filters]]
table = 'u' # comment = 1
''' + r"""where = '''c = '='
  and d = 1'''
wher = "oops"
""").replace("\n", "\r\n")
    import tomllib

    data = tomllib.loads(text)["databases"]["we.ird db"]
    assert data["schema_only"] == ['"lit]eral"', '"x#y"']
    assert data["table_filters"][0]["where"].endswith('b = ""x""')
    err = _err(text)
    assert err.cause.startswith(
        'config.toml line 13: databases."we.ird db".table_filters[2]: unknown key \'wher\''
    ), err.cause


def test_dotted_keys_under_a_parent_table() -> None:
    err = _err("""\
        [databases]
        kong.schema_only = ["a"]
        kong.tabel_filters = []
        """)
    assert err.cause.startswith("config.toml line 3: databases.kong: unknown key 'tabel_filters'")


def test_scanner_failure_degrades_to_messages_without_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from pgtide.core.model import seed_config

    def broken(self: object) -> None:
        raise IndexError("scanner out of sync")

    monkeypatch.setattr(seed_config._Positions, "_scan", broken)
    err = _err('[databases.kong]\nschema_onyl = ["a"]\n')
    assert err.cause.startswith("config.toml: databases.kong: unknown key 'schema_onyl'")
    # A valid file still loads.
    assert len(parse_seed_config(SEED_EXAMPLE).rules) == 5
