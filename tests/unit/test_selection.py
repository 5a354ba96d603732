"""Unit tests for pgtide.core.model.selection (pure: no database)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import tomlkit

from pgtide.core.infra.errors import InputError
from pgtide.core.model.selection import (
    DatabaseRule,
    NameIndex,
    Selection,
    TableRef,
    TableRule,
    TableTreatment,
    TimeFilter,
    TimeWindow,
    UnresolvedName,
    check_predicate_syntax,
    format_qualified_name,
    parse_qualified_name,
    parse_table_filter,
    parse_table_pattern,
    parse_time_filter,
    quote_ident,
    split_outside_quotes,
)

UTC = UTC


# --- qualified names ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("orders", ("orders",)),
        ("Orders", ("orders",)),
        ("  public . Orders ", ("public", "orders")),
        ('App."My Table".x', ("app", "My Table", "x")),
        ('"a.b"."c ""d"""', ("a.b", 'c "d"')),
        ('"select"', ("select",)),
        ("select", ("select",)),
        ('"Ünïcödé tâble"', ("Ünïcödé tâble",)),
        ("straße", ("straße",)),
        # PostgreSQL folds only ASCII letters of bare names in UTF8 databases.
        ("ÄPFEL", ("Äpfel",)),
        ("_x$1", ("_x$1",)),
        ('"1st"', ("1st",)),
        ('"with:colon,comma"', ("with:colon,comma",)),
    ],
)
def test_parse_qualified_name_accepts(text: str, expected: tuple[str, ...]) -> None:
    assert parse_qualified_name(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ('""', "empty name"),
        ("a.", "ends with a dot"),
        ("a..b", "empty part"),
        (".a", "empty part"),
        ('"abc', "never closed"),
        ("a.b.c.d", "4 dot-separated parts"),
        ('ab"c"', "middle"),
        ('"ab"c', "unexpected"),
        ("order-items", "contains '-'"),
        ("1abc", "starts with '1'"),
        ("order items", "unexpected"),
    ],
)
def test_parse_qualified_name_rejects(text: str, fragment: str) -> None:
    with pytest.raises(InputError) as info:
        parse_qualified_name(text)
    assert fragment in info.value.cause


def test_invalid_bare_name_tells_user_to_double_quote() -> None:
    with pytest.raises(InputError) as info:
        parse_qualified_name("order-items", what="--exclude-tables table")
    assert "--exclude-tables table" in info.value.cause
    assert '"order-items"' in info.value.remedy
    assert "double quotes" in info.value.remedy
    # The shell form keeps the double quotes alive.
    assert "'\"order-items\"'" in info.value.remedy


def test_name_length_limit_is_63_bytes() -> None:
    assert parse_qualified_name("a" * 63) == ("a" * 63,)
    assert parse_qualified_name('"' + "é" * 31 + 'a"') == ("é" * 31 + "a",)  # 63 bytes
    for too_long in ("a" * 64, '"' + "A" * 64 + '"', '"' + "é" * 32 + '"'):
        with pytest.raises(InputError) as info:
            parse_qualified_name(too_long)
        assert "64 bytes" in info.value.cause
        assert info.value.title == "Name too long"


def test_max_parts_is_enforced() -> None:
    assert parse_qualified_name("a.b", max_parts=2) == ("a", "b")
    with pytest.raises(InputError, match="at most 1"):
        parse_qualified_name("a.b", max_parts=1)


@pytest.mark.parametrize(
    ("name", "rendered"),
    [
        ("orders", "orders"),
        ("Orders", '"Orders"'),
        ("select", '"select"'),
        ("my table", '"my table"'),
        ('we"ird', '"we""ird"'),
        ("a.b", '"a.b"'),
        ("1st", '"1st"'),
        ("straße", '"straße"'),
        ("x$", '"x$"'),
    ],
)
def test_quote_ident_quotes_only_when_needed(name: str, rendered: str) -> None:
    assert quote_ident(name) == rendered
    # What we show parses back to the same name.
    assert parse_qualified_name(rendered) == (name,)


def test_format_qualified_name_round_trips() -> None:
    parts = ("My DB", "sales.eu", 'x"y')
    text = format_qualified_name(parts)
    assert text == '"My DB"."sales.eu"."x""y"'
    assert parse_qualified_name(text) == parts


def test_split_outside_quotes() -> None:
    assert split_outside_quotes('a, "b,c" ,d,,') == ["a", '"b,c"', "d"]
    assert split_outside_quotes('"x""," , y') == ['"x"","', "y"]
    assert split_outside_quotes("  ") == []


# --- table patterns and two-part names ---------------------------------------------


def test_parse_table_pattern_forms() -> None:
    assert parse_table_pattern("Orders") == TableRef(None, "public", "orders")
    assert parse_table_pattern('app."Sales".orders') == TableRef("app", "Sales", "orders")
    assert parse_table_pattern("x.y") == UnresolvedName("x", "y")


INDEX = NameIndex(
    databases=frozenset({"app", "kong", "shared", "MyApp"}),
    schemas={
        "app": frozenset({"public", "sales", "shared"}),
        "kong": frozenset({"public", "audit"}),
    },
)


def _resolve(text: str) -> TableRef:
    sel = Selection.from_cli(exclude_tables=[text]).resolve(INDEX)
    (rule,) = sel.rules
    assert isinstance(rule.target, TableRef)
    return rule.target


def test_two_part_name_matching_a_database_is_db_dot_table() -> None:
    assert _resolve("kong.orders") == TableRef("kong", "public", "orders")


def test_two_part_name_matching_a_schema_is_schema_dot_table_everywhere() -> None:
    assert _resolve("sales.orders") == TableRef(None, "sales", "orders")


def test_two_part_name_matching_both_is_an_error_showing_both_readings() -> None:
    with pytest.raises(InputError) as info:
        _resolve("shared.orders")
    err = info.value
    assert err.title == "Ambiguous table name"
    assert "--exclude-tables shared.orders" in err.cause
    assert "shared.public.orders" in err.remedy
    assert "app.shared.orders" in err.remedy


def test_two_part_name_matching_nothing_suggests_the_closest_name() -> None:
    with pytest.raises(InputError) as info:
        _resolve("kongg.orders")
    assert "no database or schema named kongg" in info.value.cause
    assert "database kong" in info.value.remedy
    assert "kong.orders" in info.value.remedy
    with pytest.raises(InputError) as info:
        _resolve("audti.orders")
    assert "schema audit" in info.value.remedy


def test_two_part_name_suggestion_restores_case() -> None:
    # The user typed MyApp unquoted, which folds to myapp; the database is "MyApp".
    with pytest.raises(InputError) as info:
        _resolve("MyApp.orders")
    assert '"MyApp".orders' in info.value.remedy


def test_two_part_name_with_no_close_name_lists_known_names() -> None:
    with pytest.raises(InputError) as info:
        _resolve("zzzzzz.orders")
    assert "Databases:" in info.value.remedy and "audit" in info.value.remedy


def test_treatment_needs_resolved_names() -> None:
    sel = Selection.from_cli(exclude_tables=["kong.orders"])
    assert not sel.is_resolved
    assert sel.unresolved_names() == (UnresolvedName("kong", "orders"),)
    with pytest.raises(ValueError, match="resolve"):
        sel.treatment("kong", "public", "orders")
    resolved = sel.resolve(INDEX)
    assert resolved.is_resolved
    assert resolved.rules[0].origin == "--exclude-tables kong.orders"
    assert resolved.treatment("kong", "public", "orders").mode == "excluded"
    assert resolved.treatment("app", "public", "orders").mode == "full"


# --- time windows ------------------------------------------------------------------

UNIT_FORMS = {
    "seconds": ["1 second", "2 seconds", "5 s", "5 sec", "5 secs"],
    "minutes": ["1 minute", "30 minutes", "5 min", "5 mins"],
    "hours": ["1 hour", "12 hours", "3 h", "3 hr", "3 hrs"],
    "days": ["1 day", "90 days", "90days", "7 d"],
    "weeks": ["1 week", "2 weeks", "2 w", "2 wk", "2 wks"],
    "months": ["1 month", "6 months", "6 mon", "6 mons", "  6   Months "],
    "years": ["1 year", "2 years", "2 y", "2 yr", "2 yrs", "1 YEAR"],
}


@pytest.mark.parametrize(
    ("text", "unit"), [(text, unit) for unit, texts in UNIT_FORMS.items() for text in texts]
)
def test_time_window_units(text: str, unit: str) -> None:
    window = TimeWindow.parse(text)
    assert window.unit == unit
    assert window.amount == int("".join(c for c in text if c.isdigit()))
    assert TimeWindow.parse(str(window)) == window


def test_time_window_str_is_singular_for_one() -> None:
    assert str(TimeWindow.parse("1 months")) == "1 month"
    assert str(TimeWindow.parse("6 month")) == "6 months"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("0 days", "positive"),
        ("-1 day", "positive"),
        ("+3 days", "positive"),
        ("1.5 days", "not 'N unit'"),
        ("6", "not 'N unit'"),
        ("six months", "not 'N unit'"),
        ("6 fortnights", "unknown unit"),
        ("6 m", "minutes or months"),
        ("", "not 'N unit'"),
    ],
)
def test_time_window_rejects(text: str, fragment: str) -> None:
    with pytest.raises(InputError) as info:
        TimeWindow.parse(text)
    assert fragment in info.value.cause


@pytest.mark.parametrize(
    ("now", "window", "expected"),
    [
        (datetime(2024, 1, 31, 10, 0, tzinfo=UTC), "1 month", datetime(2023, 12, 31, 10, 0, tzinfo=UTC)),
        (datetime(2024, 3, 31, 10, 0, tzinfo=UTC), "1 month", datetime(2024, 2, 29, 10, 0, tzinfo=UTC)),
        (datetime(2023, 3, 31, 10, 0, tzinfo=UTC), "1 month", datetime(2023, 2, 28, 10, 0, tzinfo=UTC)),
        (datetime(2024, 5, 31, 0, 0, tzinfo=UTC), "3 months", datetime(2024, 2, 29, 0, 0, tzinfo=UTC)),
        (datetime(2024, 7, 15, 0, 0, tzinfo=UTC), "18 months", datetime(2023, 1, 15, 0, 0, tzinfo=UTC)),
        (datetime(2024, 2, 29, 12, 0, tzinfo=UTC), "1 year", datetime(2023, 2, 28, 12, 0, tzinfo=UTC)),
        (datetime(2024, 3, 1, 0, 0, tzinfo=UTC), "1 day", datetime(2024, 2, 29, 0, 0, tzinfo=UTC)),
        (datetime(2024, 3, 1, 0, 0, tzinfo=UTC), "2 weeks", datetime(2024, 2, 16, 0, 0, tzinfo=UTC)),
        (datetime(2024, 3, 1, 0, 0, tzinfo=UTC), "90 minutes", datetime(2024, 2, 29, 22, 30, tzinfo=UTC)),
        (datetime(2024, 3, 1, 0, 0, tzinfo=UTC), "30 seconds", datetime(2024, 2, 29, 23, 59, 30, tzinfo=UTC)),
    ],
)
def test_cutoff_arithmetic(now: datetime, window: str, expected: datetime) -> None:
    assert TimeWindow.parse(window).cutoff(now) == expected


def test_cutoff_keeps_time_zone_and_rejects_naive() -> None:
    plus2 = timezone(timedelta(hours=2))
    cut = TimeWindow.parse("1 month").cutoff(datetime(2024, 3, 31, 1, 0, tzinfo=plus2))
    assert cut == datetime(2024, 2, 29, 1, 0, tzinfo=plus2)
    assert cut.utcoffset() == timedelta(hours=2)
    with pytest.raises(ValueError, match="timezone-aware"):
        TimeWindow.parse("1 day").cutoff(datetime(2024, 1, 1))


def test_cutoff_days_are_calendar_days_hours_are_elapsed_across_dst() -> None:
    paris = ZoneInfo("Europe/Paris")
    now = datetime(2024, 3, 31, 12, 0, tzinfo=paris)  # CEST, the day DST started
    day = TimeWindow.parse("1 day").cutoff(now)
    assert (day.day, day.hour) == (30, 12)
    hours = TimeWindow.parse("24 hours").cutoff(now)
    assert (hours.day, hours.hour) == (30, 11)
    # Python subtracts same-zone datetimes on the wall clock; compare real instants.
    assert now.astimezone(UTC) - hours.astimezone(UTC) == timedelta(hours=24)
    assert now.astimezone(UTC) - day.astimezone(UTC) == timedelta(hours=23)


def test_cutoff_too_far_back_is_an_input_error() -> None:
    with pytest.raises(InputError, match="before year 1"):
        TimeWindow.parse("3000 years").cutoff(datetime(2024, 1, 1, tzinfo=UTC))


# --- predicate safety --------------------------------------------------------------


@pytest.mark.parametrize(
    "predicate",
    [
        "status IN ('active', 'pending')",
        "x::text = 'a:b'",
        "created_at::date >= '2024-01-01'::date",
        "note = ';'",
        "note = 'it''s; fine -- really /* yes */'",
        "body = $$;$$",
        "body = $tag$ -- ; /* $tag$",
        "body <> $a$$b$ ; $b$$a$",
        r"x = E'it\'s; ok'",
        r"x = e'\\'",
        '"weird;col--name" = 1',
        '"a""b" = 1',
        "a$b = 1 and price$ > 0",
        "(a = 1) AND (b = 2 OR (c = 3))",
        "tags @> ARRAY['x', 'y']",
        "a = $1",
        "series_time >= NOW() - INTERVAL '6 months'",
        "x / 2 > 1 and y - 1 < 0",
    ],
)
def test_predicate_accepted(predicate: str) -> None:
    assert check_predicate_syntax(predicate) is None


@pytest.mark.parametrize(
    ("predicate", "fragment"),
    [
        ("1=1; DROP TABLE x", "';' outside a string"),
        ("1=1 -- ;", "comment"),
        ("/* ; */ 1=1", "comment"),
        ("a = 1 --", "comment"),
        # Standard strings take no backslash escapes: the string ends at the second quote.
        (r"x = '\'; DROP TABLE t; --'", "';' outside a string"),
        ("name = 'unterminated", "never closed"),
        ('"unterminated = 1', "never closed"),
        ("x = $$abc", "never closed"),
        ("x = $t$abc$u$", "never closed"),
        ("(a = 1", "never closed"),
        ("a = 1)", "no matching"),
        ("1=1) OR (1=1", "no matching"),
        ("a[1 = 2)", "no matching"),
        ("a = 1\x00", "NUL"),
        ("", "empty"),
        ("   ", "empty"),
    ],
)
def test_predicate_rejected(predicate: str, fragment: str) -> None:
    with pytest.raises(InputError) as info:
        check_predicate_syntax(predicate)
    assert fragment in info.value.cause
    assert info.value.remedy


def test_escape_string_hides_semicolon_but_plain_string_does_not() -> None:
    check_predicate_syntax(r"x = E'\'; DROP TABLE t; --'")
    with pytest.raises(InputError):
        check_predicate_syntax(r"x = '\'; DROP TABLE t; --'")


def test_semicolon_error_explains_strings_are_fine() -> None:
    with pytest.raises(InputError) as info:
        check_predicate_syntax("1=1; DROP TABLE x")
    assert "position 4" in info.value.cause
    assert "inside a quoted string" in info.value.remedy


# --- CLI syntaxes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "target", "predicate"),
    [
        ("orders:status = 'a:b'", TableRef(None, "public", "orders"), "status = 'a:b'"),
        ("app.public.orders:x::date > '2024-01-01'", TableRef("app", "public", "orders"), "x::date > '2024-01-01'"),
        ('"my:table":a = 1', TableRef(None, "public", "my:table"), "a = 1"),
        ('app."Sales"."Q1: Orders": amount > 0', TableRef("app", "Sales", "Q1: Orders"), "amount > 0"),
        ("app.orders:x = '::'", UnresolvedName("app", "orders"), "x = '::'"),
        ("orders:status IN ('a','b')", TableRef(None, "public", "orders"), "status IN ('a','b')"),
    ],
)
def test_parse_table_filter(text: str, target: object, predicate: str) -> None:
    assert parse_table_filter(text) == (target, predicate)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("orders", "no ':'"),
        ("orders:", "empty"),
        ("orders:   ", "empty"),
        (":x = 1", "empty"),
        ("orders:1=1; DROP TABLE x", "';'"),
        ("bad-name:x = 1", "contains '-'"),
    ],
)
def test_parse_table_filter_rejects(text: str, fragment: str) -> None:
    with pytest.raises(InputError) as info:
        parse_table_filter(text)
    assert fragment in info.value.cause


def test_parse_time_filter() -> None:
    target, tf = parse_time_filter("metrics:created_at:6 months")
    assert target == TableRef(None, "public", "metrics")
    assert tf == TimeFilter("created_at", TimeWindow(6, "months"))
    target, tf = parse_time_filter('kong.public."Metrics":"CreatedAt":90days')
    assert target == TableRef("kong", "public", "Metrics")
    assert tf == TimeFilter("CreatedAt", TimeWindow(90, "days"))
    _, tf = parse_time_filter('m:"a:b":1 year')
    assert tf.column == "a:b"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("metrics", "TABLE:COLUMN:WINDOW"),
        ("metrics:created_at", "TABLE:COLUMN:WINDOW"),
        ("metrics:a.b:1 day", "at most 1"),
        ("metrics:ts:1 fortnight", "unknown unit"),
        ("metrics:ts:0 days", "positive"),
    ],
)
def test_parse_time_filter_rejects(text: str, fragment: str) -> None:
    with pytest.raises(InputError) as info:
        parse_time_filter(text)
    assert fragment in info.value.cause


def test_from_cli_splits_name_lists_on_commas_outside_quotes() -> None:
    sel = Selection.from_cli(
        include_databases="app, kong",
        exclude_tables=['a,b', '"c,d"'],
        schema_only_tables="app.public.big",
    )
    assert [r.name for r in sel.include_databases] == ["app", "kong"]
    assert [r.target.table for r in sel.exclude_tables] == ["a", "b", "c,d"]  # type: ignore[union-attr]
    assert sel.schema_only_tables[0].target == TableRef("app", "public", "big")
    assert sel.exclude_tables[2].origin == "--exclude-tables '\"c,d\"'"


def test_from_cli_filters_are_not_split_on_commas() -> None:
    sel = Selection.from_cli(table_filters=["orders:status IN ('a','b')"])
    (rule,) = sel.row_filters
    assert rule.predicate == "status IN ('a','b')"
    assert rule.origin == "--table-filter \"orders:status IN ('a','b')\""


def test_from_cli_database_names_are_single_identifiers() -> None:
    assert Selection.from_cli(include_databases='"My.DB"').include_databases[0].name == "My.DB"
    with pytest.raises(InputError, match="at most 1"):
        Selection.from_cli(include_databases="my.db")


def test_include_and_exclude_databases_conflict_names_both_flags() -> None:
    with pytest.raises(InputError) as info:
        Selection.from_cli(include_databases="a", exclude_databases="b")
    assert "--include-databases a" in info.value.cause
    assert "--exclude-databases b" in info.value.cause
    assert info.value.title == "Contradicting selection rules"


def test_include_and_exclude_tables_conflict() -> None:
    with pytest.raises(InputError) as info:
        Selection.from_cli(include_tables=["a"], exclude_tables=["b"])
    assert "--include-tables a" in info.value.cause
    assert "--exclude-tables b" in info.value.cause


# --- precedence --------------------------------------------------------------------


def test_schema_only_beats_row_filter_beats_time_filter_with_notes() -> None:
    sel = Selection.from_cli(
        schema_only_tables=["t"], table_filters=["t:id > 5"], time_filters=["t:ts:1 day"]
    )
    tr = sel.treatment("db", "public", "t")
    assert tr.mode == "schema_only"
    assert tr.row_filter is None and tr.time_filter is None
    assert len(tr.notes) == 2
    assert "row filter 'id > 5'" in tr.notes[0] and "ignored" in tr.notes[0]
    assert "time filter" in tr.notes[1]
    assert any("--schema-only-tables t" in r for r in tr.rules)


def test_row_filter_beats_time_filter() -> None:
    sel = Selection.from_cli(table_filters=["t:id > 5"], time_filters=["t:ts:1 day"])
    tr = sel.treatment("db", "public", "t")
    assert (tr.mode, tr.row_filter, tr.time_filter) == ("full", "id > 5", None)
    assert len(tr.notes) == 1 and "row filter wins" in tr.notes[0]


def test_time_filter_alone() -> None:
    tr = Selection.from_cli(time_filters=["t:ts:6 months"]).treatment("db", "public", "t")
    assert tr.mode == "full"
    assert tr.time_filter == TimeFilter("ts", TimeWindow(6, "months"))
    assert tr.copies_rows


def test_database_specific_rule_beats_all_databases_rule() -> None:
    sel = Selection.from_cli(table_filters=["t:a = 1", "app.public.t:a = 2"])
    here = sel.treatment("app", "public", "t")
    assert here.row_filter == "a = 2"
    assert len(here.notes) == 1 and "'a = 1'" in here.notes[0]
    elsewhere = sel.treatment("other", "public", "t")
    assert elsewhere.row_filter == "a = 1"
    assert elsewhere.notes == ()


def test_precedence_across_kinds_ignores_scope() -> None:
    sel = Selection.from_cli(schema_only_tables=["t"], table_filters=["app.public.t:a = 2"])
    tr = sel.treatment("app", "public", "t")
    assert tr.mode == "schema_only"
    assert "ignored" in tr.notes[0]


def test_untouched_table_is_full_copy_with_no_rules() -> None:
    tr = Selection.from_cli(table_filters=["t:a = 1"]).treatment("db", "public", "other")
    assert tr == TableTreatment("full")


def test_schema_is_part_of_the_match() -> None:
    sel = Selection.from_cli(exclude_tables=["t"])
    assert sel.treatment("db", "public", "t").mode == "excluded"
    assert sel.treatment("db", "other", "t").mode == "full"


def test_include_tables_excludes_everything_else() -> None:
    sel = Selection.from_cli(include_tables=["keep", "app.public.only_app"])
    assert sel.treatment("db", "public", "keep").mode == "full"
    assert sel.treatment("app", "public", "only_app").mode == "full"
    out = sel.treatment("kong", "public", "only_app")
    assert out.mode == "excluded" and out.rules == ("not in the tables to include",)
    assert sel.treatment("db", "public", "other").mode == "excluded"


def test_included_by_default_false() -> None:
    sel = Selection.from_cli(schema_only_tables=["big"])
    assert sel.treatment("db", "public", "x", included_by_default=False).mode == "excluded"
    assert sel.treatment("db", "public", "x").mode == "full"
    assert sel.treatment("db", "public", "big", included_by_default=False).mode == "schema_only"


def test_database_selection() -> None:
    inc = Selection.from_cli(include_databases="app")
    assert inc.includes_database("app") and not inc.includes_database("kong")
    tr = inc.treatment("kong", "public", "t")
    assert tr.mode == "excluded" and "--include-databases app" in tr.rules[0]
    exc = Selection.from_cli(exclude_databases="kong")
    assert exc.includes_database("app") and not exc.includes_database("kong")
    assert exc.treatment("kong", "public", "t").rules == ("--exclude-databases kong",)
    assert Selection().includes_database("anything")


def test_notes_for_rules_that_cannot_apply() -> None:
    sel = Selection.from_cli(include_databases="app", table_filters=["kong.public.t:a = 1", "app.public.t:a = 1"])
    notes = sel.notes()
    assert len(notes) == 1 and "database kong is not selected" in notes[0]
    sel = Selection.from_cli(include_tables=["a"], schema_only_tables=["b"])
    assert len(sel.notes()) == 1 and "not in the include list" in sel.notes()[0]


# --- contradictions ----------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"exclude_tables": ["t"], "table_filters": ["t:a = 1"]},
        {"exclude_tables": ["t"], "time_filters": ["t:ts:1 day"]},
        {"exclude_tables": ["t"], "schema_only_tables": ["t"]},
        {"exclude_tables": ["t"], "schema_only_tables": ["app.public.t"]},
        {"exclude_tables": ["app.public.t"], "table_filters": ["t:a = 1"]},
    ],
)
def test_excluded_and_shaped_is_a_contradiction(kwargs: dict[str, list[str]]) -> None:
    with pytest.raises(InputError) as info:
        Selection.from_cli(**kwargs)
    err = info.value
    assert err.title == "Contradicting selection rules"
    assert "--exclude-tables" in err.cause
    other_flag = {"table_filters": "--table-filter", "time_filters": "--time-filter",
                  "schema_only_tables": "--schema-only-tables"}
    assert any(other_flag[k] in err.cause for k in kwargs if k in other_flag)


def test_exclusion_in_another_database_is_no_contradiction() -> None:
    sel = Selection.from_cli(exclude_tables=["app.public.t"], table_filters=["kong.public.t:a = 1"])
    assert sel.treatment("app", "public", "t").mode == "excluded"
    assert sel.treatment("kong", "public", "t").row_filter == "a = 1"


def test_two_different_row_filters_same_scope_conflict() -> None:
    with pytest.raises(InputError) as info:
        Selection.from_cli(table_filters=["t:a = 1", "public.t:a = 2"]).resolve(INDEX)
    assert "two different row filters" in info.value.cause
    assert "'a = 1'" in info.value.cause and "'a = 2'" in info.value.cause


def test_two_different_time_filters_same_scope_conflict() -> None:
    with pytest.raises(InputError, match="two different time filters"):
        Selection.from_cli(time_filters=["t:ts:1 day", "t:ts:2 days"])


def test_identical_rules_are_merged_not_conflicting() -> None:
    sel = Selection.from_cli(table_filters=["t:a = 1", "T:a = 1"], exclude_tables=["x", "X"])
    assert len(sel.row_filters) == 1
    assert len(sel.exclude_tables) == 1


def test_contradiction_found_after_resolving_two_part_name() -> None:
    sel = Selection.from_cli(exclude_tables=["kong.t"], table_filters=["kong.public.t:a = 1"])
    with pytest.raises(InputError, match="is excluded and also has a row filter"):
        sel.resolve(INDEX)


# --- merge -------------------------------------------------------------------------


def test_merge_later_overrides_same_key_and_unions_sets() -> None:
    config = Selection.from_cli(
        include_databases="app",
        schema_only_tables=["big"],
        table_filters=["app.public.orders:a = 1", "t:x = 1"],
        time_filters=["m:ts:1 day"],
    )
    cli = Selection.from_cli(
        include_databases="kong",
        schema_only_tables=["huge"],
        table_filters=["app.public.orders:a = 2"],
        time_filters=["m:ts:2 days"],
    )
    merged = config.merge(cli)
    assert [r.name for r in merged.include_databases] == ["app", "kong"]
    assert {r.target.table for r in merged.schema_only_tables} == {"big", "huge"}  # type: ignore[union-attr]
    assert merged.treatment("app", "public", "orders").row_filter == "a = 2"
    assert merged.treatment("app", "public", "t").row_filter == "x = 1"
    assert merged.treatment("app", "public", "m").time_filter == TimeFilter("ts", TimeWindow(2, "days"))
    # The inputs are untouched values.
    assert config.treatment("app", "public", "orders").row_filter == "a = 1"


def test_merge_keeps_rules_of_different_scope() -> None:
    merged = Selection.from_cli(table_filters=["app.public.t:a = 1"]).merge(
        Selection.from_cli(table_filters=["t:a = 2"])
    )
    assert len(merged.row_filters) == 2
    assert merged.treatment("app", "public", "t").row_filter == "a = 1"
    assert merged.treatment("kong", "public", "t").row_filter == "a = 2"


def test_merge_chain_last_wins() -> None:
    a, b, c = (Selection.from_cli(table_filters=[f"t:a = {n}"]) for n in (1, 2, 3))
    assert a.merge(b).merge(c).treatment("d", "public", "t").row_filter == "a = 3"
    assert a.merge(b.merge(c)).treatment("d", "public", "t").row_filter == "a = 3"


def test_merge_override_survives_later_resolution() -> None:
    config = Selection.from_cli(table_filters=["kong.public.t:a = 1"])
    cli = Selection.from_cli(table_filters=["kong.t:a = 2"])  # two-part: unresolved yet
    merged = config.merge(cli).resolve(INDEX)
    assert merged.treatment("kong", "public", "t").row_filter == "a = 2"


def test_merge_can_create_a_contradiction() -> None:
    with pytest.raises(InputError, match="include"):
        Selection.from_cli(include_databases="a").merge(Selection.from_cli(exclude_databases="b"))
    with pytest.raises(InputError, match="is excluded"):
        Selection.from_cli(schema_only_tables=["t"]).merge(Selection.from_cli(exclude_tables=["t"]))


# --- equality and serialisation ----------------------------------------------------


def test_equality_ignores_origin_and_order() -> None:
    a = Selection(
        (DatabaseRule("b", "x"), DatabaseRule("a", "y")), (),
        (TableRule("exclude", TableRef(None, "public", "z"), origin="one"),
         TableRule("exclude", TableRef("d", "public", "a"), origin="two")),
    )
    b = Selection.from_cli(include_databases="a,b", exclude_tables=["d.public.a", "z"])
    assert a == b


def _rich_selection() -> Selection:
    return Selection.from_cli(
        include_databases='app,"My DB"',
        schema_only_tables=['app."Sales"."Big Table"', "kong.t"],
        table_filters=["orders:note = 'a;b' AND x::int > 1", 'app.public."we""ird":"Col" = $$x$$'],
        time_filters=['app.public.metrics:"CreatedAt":6 months', "m:ts:1 day"],
    ).merge(Selection.from_cli(table_filters=["orders:note = 'c'"]))


def test_to_dict_is_plain_primitives_and_round_trips_through_json_and_toml() -> None:
    sel = _rich_selection()
    data = sel.to_dict()
    assert Selection.from_dict(json.loads(json.dumps(data))) == sel
    assert Selection.from_dict(tomlkit.parse(tomlkit.dumps(data)).unwrap()) == sel
    # No None anywhere (TOML has no null); all-databases rules simply omit "database".
    assert "None" not in json.dumps(data) and "null" not in json.dumps(data)
    again = Selection.from_dict(data)
    assert [r.origin for r in again.rules] == [r.origin for r in sel.rules]
    assert [r.layer for r in again.rules] == [r.layer for r in sel.rules]


def test_dict_round_trip_keeps_unresolved_names() -> None:
    sel = Selection.from_cli(exclude_tables=["kong.t"])
    data = sel.to_dict()
    assert data["tables"][0]["name"] == ["kong", "t"]
    assert Selection.from_dict(data) == sel


def test_from_dict_accepts_plain_database_names_and_default_origin() -> None:
    sel = Selection.from_dict({"include_databases": ["app"], "tables": [
        {"rule": "row_filter", "table": "t", "where": "a = 1"}]}, source="profile prod")
    assert sel.include_databases[0].origin == "profile prod"
    assert sel.row_filters[0].target == TableRef(None, "public", "t")
    assert sel.row_filters[0].origin == "profile prod"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"tabels": []}, "unknown key"),
        ({"tables": [{"rule": "row_filter", "table": "t", "wher": "a = 1"}]}, "unknown key 'wher'"),
        ({"tables": [{"rule": "nope", "table": "t"}]}, "unknown rule"),
        ({"tables": [{"rule": "exclude", "table": 5}]}, "tables[1].table: expected a string"),
        ({"tables": [{"rule": "row_filter", "table": "t", "where": "1; x"}]}, "';'"),
        ({"tables": [{"rule": "time_filter", "table": "t", "column": "c", "last": "soon"}]}, "not 'N unit'"),
        ({"include_databases": "app"}, "expected a list"),
    ],
)
def test_from_dict_rejects_bad_input(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(InputError) as info:
        Selection.from_dict(data, source="p.toml")
    assert fragment in info.value.cause


def test_table_rule_payload_must_match_kind() -> None:
    with pytest.raises(ValueError):
        TableRule("row_filter", TableRef(None, "public", "t"))
    with pytest.raises(ValueError):
        TableRule("exclude", TableRef(None, "public", "t"), predicate="a = 1")
    with pytest.raises(ValueError):
        TimeWindow(0, "days")
