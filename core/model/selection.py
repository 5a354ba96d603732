"""The selection model: one immutable value that says what a migration copies.

A ``Selection`` is built from CLI flags (``Selection.from_cli``), from a seed-compatible
config file (``seed_config``), from a saved profile (``Selection.from_dict``) or by the
TUI's table picker, and every later phase asks it one question per table:
``treatment(database, schema, table)``.

Everything here is pure: no database access. Names the user typed are parsed the way
PostgreSQL parses identifiers, so what we compare against the catalogs later is the
name the server stores. Two-part names (``x.y``) are ambiguous in the seed tools (their
help says database.table, their code does schema.table), so they stay unresolved until
``Selection.resolve`` is given the real database and schema names.
"""

from __future__ import annotations

import calendar
import difflib
import re
import shlex
import string
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from types import MappingProxyType
from typing import Any, Literal

from ..infra.errors import InputError

__all__ = [
    "DEFAULT_SCHEMA",
    "MAX_NAME_BYTES",
    "DatabaseRule",
    "NameIndex",
    "RuleKind",
    "Selection",
    "TableRef",
    "TableRule",
    "TableTreatment",
    "TimeFilter",
    "TimeWindow",
    "UnresolvedName",
    "check_predicate_syntax",
    "format_qualified_name",
    "parse_qualified_name",
    "parse_table_filter",
    "parse_table_pattern",
    "parse_time_filter",
    "quote_ident",
    "split_outside_quotes",
]

#: PostgreSQL's NAMEDATALEN is 64 including the terminator. Longer names are silently
#: truncated by the server, which could make a rule hit a different object: reject them.
MAX_NAME_BYTES = 63
DEFAULT_SCHEMA = "public"

# ---------------------------------------------------------------------------------------
# Identifiers
# ---------------------------------------------------------------------------------------

# Keywords PostgreSQL cannot take as a bare table/column name (reserved and
# type/function-name keywords). Used only when rendering a name back, so that what we
# show can be pasted into SQL unchanged.
_KEYWORDS = frozenset(
    ["all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric", "both", "case", "cast", "check", "collate", "column", "constraint", "create", "current_catalog", "current_date", "current_role", "current_time", "current_timestamp", "current_user", "default", "deferrable", "desc", "distinct", "do", "else", "end", "except", "false", "fetch", "for", "foreign", "from", "grant", "group", "having", "in", "initially", "intersect", "into", "lateral", "leading", "limit", "localtime", "localtimestamp", "not", "null", "offset", "on", "only", "or", "order", "placing", "primary", "references", "returning", "select", "session_user", "some", "symmetric", "system_user", "table", "then", "to", "trailing", "true", "union", "unique", "user", "using", "variadic", "when", "where", "window", "with", "authorization", "binary", "collation", "concurrently", "cross", "current_schema", "freeze", "full", "ilike", "inner", "is", "isnull", "join", "left", "like", "natural", "notnull", "outer", "overlaps", "right", "similar", "tablesample", "verbose"]
)

_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_]*")
# PostgreSQL folds only ASCII letters of unquoted names in multibyte encodings (UTF8),
# so "ÄPFEL" becomes "Äpfel" on the server; do exactly the same or rules miss tables.
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

_QUOTE_REMEDY = (
    "Put the name in double quotes to use it exactly as written (case, spaces, dots and "
    "any character are then kept; write a double quote inside it as \"\"). In a shell, "
    "wrap the whole argument in single quotes so the double quotes survive."
)


def quote_ident(name: str) -> str:
    """Render one name the way a user can type it back (quotes only when needed).

    Follows PostgreSQL's ``quote_ident``: lower-case ASCII names that are not keywords
    stay bare, everything else is double-quoted, so the output is also valid SQL.
    """
    if _PLAIN_NAME.fullmatch(name) and name not in _KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


def format_qualified_name(parts: Iterable[str]) -> str:
    """Join names with dots, quoting each one only when needed."""
    return ".".join(quote_ident(p) for p in parts)


def _is_ident_start(ch: str) -> bool:
    return ch == "_" or ch.isalpha()


def _is_ident_char(ch: str) -> bool:
    # Combining marks count so that decomposed accents ("e" + U+0301) stay one name.
    return ch in "_$" or ch.isalnum() or unicodedata.category(ch).startswith("M")


def _check_name_length(value: str, text: str, what: str) -> None:
    size = len(value.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        raise InputError(
            f"{what} {text!r}: the name {quote_ident(value)} is {size} bytes long; "
            f"PostgreSQL names are at most {MAX_NAME_BYTES} bytes",
            "PostgreSQL would silently cut it to 63 bytes, which could name another "
            "object; use the name exactly as the server lists it.",
            title="Name too long",
        )


def _name_error(text: str, what: str, problem: str, suggestion: str | None = None) -> InputError:
    remedy = _QUOTE_REMEDY
    if suggestion is not None:
        remedy = f"Write it as {suggestion} (shell: {shlex.quote(suggestion)}). " + remedy
    return InputError(f"{what} {text!r}: {problem}", remedy, title="Invalid name")


def _whole_text_suggestion(text: str) -> str | None:
    # Only when the text has no dot or quote is "quote the whole thing" surely right.
    stripped = text.strip()
    if stripped and "." not in stripped and '"' not in stripped:
        return '"' + stripped + '"'
    return None


def parse_qualified_name(text: str, *, what: str = "name", max_parts: int = 3) -> tuple[str, ...]:
    """Split ``a.b.c`` into names the way PostgreSQL reads identifiers.

    Dots inside double quotes do not split; ``"..."`` keeps case and any character,
    ``""`` inside quotes is a literal quote; unquoted names fold ASCII to lower case and
    must be valid bare identifiers. Returns 1..max_parts names.
    """
    parts: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            if not parts:
                raise InputError(f"{what} is empty", "Give a name.", title="Invalid name")
            raise _name_error(text, what, "ends with a dot")
        if text[i] == '"':
            buf: list[str] = []
            j = i + 1
            while True:
                if j >= n:
                    raise _name_error(text, what, f"the double quote at position {i + 1} is never closed")
                if text[j] == '"':
                    if j + 1 < n and text[j + 1] == '"':
                        buf.append('"')
                        j += 2
                        continue
                    break
                buf.append(text[j])
                j += 1
            value = "".join(buf)
            if not value:
                raise _name_error(text, what, '"" is an empty name')
            i = j + 1
        else:
            j = i
            while j < n and text[j] not in '."' and not text[j].isspace():
                j += 1
            raw = text[i:j]
            if not raw:
                raise _name_error(text, what, "has an empty part (two dots in a row, or a leading dot)")
            if not _is_ident_start(raw[0]):
                raise _name_error(
                    text, what,
                    f"{raw!r} cannot be a bare name: it starts with {raw[0]!r} "
                    "(bare names start with a letter or _)",
                    _whole_text_suggestion(text),
                )
            bad = next((c for c in raw if not _is_ident_char(c)), None)
            if bad is not None:
                raise _name_error(
                    text, what,
                    f"{raw!r} cannot be a bare name: it contains {bad!r} "
                    "(bare names hold letters, digits, _ and $)",
                    _whole_text_suggestion(text),
                )
            if j < n and text[j] == '"':
                raise _name_error(text, what, f"a quote starts in the middle of {raw!r}; quote the whole name")
            value = raw.translate(_ASCII_LOWER)
            i = j
        _check_name_length(value, text, what)
        parts.append(value)
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        if text[i] != ".":
            raise _name_error(
                text, what,
                f"unexpected {text[i:]!r} after {text[:i].rstrip()!r} (a space or quote outside double quotes)",
                _whole_text_suggestion(text),
            )
        i += 1
    if len(parts) > max_parts:
        raise _name_error(
            text, what,
            f"has {len(parts)} dot-separated parts, at most {max_parts} are allowed",
        )
    return tuple(parts)


def _scan_outside_double_quotes(text: str) -> Iterable[tuple[int, str]]:
    """Yield (index, char) for characters outside double-quoted names."""
    in_quotes = False
    for i, ch in enumerate(text):
        if ch == '"':
            # A doubled quote toggles twice, which keeps the state right for free.
            in_quotes = not in_quotes
            continue
        if not in_quotes:
            yield i, ch


def split_outside_quotes(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside double quotes; pieces are stripped, empty pieces dropped."""
    pieces: list[str] = []
    start = 0
    for i, ch in _scan_outside_double_quotes(text):
        if ch == sep:
            pieces.append(text[start:i])
            start = i + 1
    pieces.append(text[start:])
    return [p.strip() for p in pieces if p.strip()]


def _find_outside_quotes(text: str, target: str) -> int:
    for i, ch in _scan_outside_double_quotes(text):
        if ch == target:
            return i
    return -1


# ---------------------------------------------------------------------------------------
# Table references
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableRef:
    """A table in one database, or in every database when ``database`` is None."""

    database: str | None
    schema: str
    table: str

    def matches(self, database: str, schema: str, table: str) -> bool:
        return (
            self.schema == schema
            and self.table == table
            and (self.database is None or self.database == database)
        )

    def overlaps(self, other: TableRef) -> bool:
        """True when some concrete table is named by both references."""
        return (
            self.schema == other.schema
            and self.table == other.table
            and (self.database is None or other.database is None or self.database == other.database)
        )

    def display(self) -> str:
        name = format_qualified_name((self.schema, self.table))
        if self.database is None:
            return f"{name} (every database)"
        return f"{quote_ident(self.database)}.{name}"

    def sort_key(self) -> tuple[Any, ...]:
        return (0, self.database is not None, self.database or "", self.schema, self.table)


@dataclass(frozen=True)
class UnresolvedName:
    """A two-part name ``first.second``: database.table or schema.table, not yet known."""

    first: str
    second: str

    def display(self) -> str:
        return format_qualified_name((self.first, self.second))

    def sort_key(self) -> tuple[Any, ...]:
        return (1, self.first, self.second)


TablePattern = TableRef | UnresolvedName


def parse_table_pattern(text: str, *, what: str = "table name") -> TablePattern:
    """``table`` (public, every database), ``db.schema.table``, or an unresolved ``x.y``."""
    parts = parse_qualified_name(text, what=what, max_parts=3)
    if len(parts) == 1:
        return TableRef(None, DEFAULT_SCHEMA, parts[0])
    if len(parts) == 2:
        return UnresolvedName(parts[0], parts[1])
    return TableRef(parts[0], parts[1], parts[2])


@dataclass(frozen=True)
class NameIndex:
    """The real database names and, per database, its schema names (read from the source)."""

    databases: frozenset[str]
    schemas: Mapping[str, frozenset[str]]

    def __post_init__(self) -> None:
        object.__setattr__(self, "databases", frozenset(self.databases))
        object.__setattr__(
            self, "schemas", MappingProxyType({db: frozenset(s) for db, s in self.schemas.items()})
        )

    def databases_with_schema(self, schema: str) -> list[str]:
        return sorted(db for db, names in self.schemas.items() if schema in names)


def _resolve_name(name: UnresolvedName, index: NameIndex, origin: str) -> TableRef:
    first, second = name.first, name.second
    is_db = first in index.databases
    schema_dbs = index.databases_with_schema(first)
    shown = name.display()
    if is_db and not schema_dbs:
        return TableRef(first, DEFAULT_SCHEMA, second)
    if schema_dbs and not is_db:
        return TableRef(None, first, second)
    where = f" (from {origin})" if origin else ""
    if is_db and schema_dbs:
        example_db = schema_dbs[0]
        raise InputError(
            f"{shown}{where} is ambiguous: {quote_ident(first)} is a database and also a schema "
            f"(in {', '.join(quote_ident(d) for d in schema_dbs)})",
            f"Write three parts: {format_qualified_name((first, DEFAULT_SCHEMA, second))} for table "
            f"{format_qualified_name((DEFAULT_SCHEMA, second))} in database {quote_ident(first)}, or "
            f"<database>.{format_qualified_name((first, second))} (e.g. "
            f"{format_qualified_name((example_db, first, second))}) for table "
            f"{format_qualified_name((first, second))}.",
            title="Ambiguous table name",
        )
    all_schemas = sorted({s for names in index.schemas.values() for s in names})
    kinds: dict[str, str] = {}
    for s in all_schemas:
        kinds[s] = "schema"
    for d in sorted(index.databases):
        kinds[d] = "database"
    suggestion = next((c for c in kinds if c.lower() == first.lower()), None)
    if suggestion is None:
        close = difflib.get_close_matches(first, list(kinds), n=1, cutoff=0.6)
        suggestion = close[0] if close else None
    if suggestion is not None:
        remedy = (
            f"Did you mean {kinds[suggestion]} {quote_ident(suggestion)}, i.e. "
            f"{format_qualified_name((suggestion, second))}?"
        )
    else:
        remedy = (
            "Check the spelling. Databases: "
            + (", ".join(quote_ident(d) for d in sorted(index.databases)) or "none")
            + "; schemas: "
            + (", ".join(quote_ident(s) for s in all_schemas) or "none")
            + "."
        )
    raise InputError(
        f"{shown}{where}: there is no database or schema named {quote_ident(first)}",
        remedy,
        title="Unknown table name",
    )


# ---------------------------------------------------------------------------------------
# Time windows
# ---------------------------------------------------------------------------------------

Unit = Literal["seconds", "minutes", "hours", "days", "weeks", "months", "years"]

_UNIT_ALIASES: dict[str, Unit] = {}
for _canon, _aliases in {
    "seconds": ("s", "sec", "secs", "second", "seconds"),
    "minutes": ("min", "mins", "minute", "minutes"),
    "hours": ("h", "hr", "hrs", "hour", "hours"),
    "days": ("d", "day", "days"),
    "weeks": ("w", "wk", "wks", "week", "weeks"),
    "months": ("mon", "mons", "month", "months"),
    "years": ("y", "yr", "yrs", "year", "years"),
}.items():
    for _alias in _aliases:
        _UNIT_ALIASES[_alias] = _canon  # type: ignore[assignment]

_WINDOW_RE = re.compile(r"\s*([+-]?[0-9]+)\s*([A-Za-z]+)\s*")
_WINDOW_REMEDY = (
    "Write a positive whole number and a unit, e.g. '6 months', '1 year', '90 days' or "
    "'12 hours'. Units: seconds, minutes, hours, days, weeks, months, years."
)


@dataclass(frozen=True)
class TimeWindow:
    """A window "the last N units": what a time filter keeps, counted back from one moment."""

    amount: int
    unit: Unit

    def __post_init__(self) -> None:
        if self.unit not in _UNIT_ALIASES.values():
            raise ValueError(f"unknown unit {self.unit!r}")
        if isinstance(self.amount, bool) or not isinstance(self.amount, int) or self.amount <= 0:
            raise ValueError(f"amount must be a positive int, got {self.amount!r}")

    @classmethod
    def parse(cls, text: str) -> TimeWindow:
        m = _WINDOW_RE.fullmatch(text)
        if not m:
            raise InputError(f"time window {text!r} is not 'N unit'", _WINDOW_REMEDY, title="Invalid time window")
        amount = int(m.group(1))
        if amount <= 0 or m.group(1).startswith("+"):
            raise InputError(
                f"time window {text!r}: the number must be a positive whole number",
                _WINDOW_REMEDY, title="Invalid time window",
            )
        word = m.group(2).lower()
        if word == "m":
            raise InputError(
                f"time window {text!r}: 'm' could mean minutes or months",
                "Write 'min' or 'minutes' for minutes, 'mon' or 'months' for months.",
                title="Invalid time window",
            )
        unit = _UNIT_ALIASES.get(word)
        if unit is None:
            raise InputError(f"time window {text!r}: unknown unit {m.group(2)!r}", _WINDOW_REMEDY, title="Invalid time window")
        return cls(amount, unit)

    def __str__(self) -> str:
        # Also valid PostgreSQL interval input, so it can be shown as INTERVAL '...'.
        return f"{self.amount} {self.unit[:-1] if self.amount == 1 else self.unit}"

    def cutoff(self, now: datetime) -> datetime:
        """The oldest moment inside the window, in ``now``'s time zone.

        Months and years are calendar steps clamped to the month's last day (Mar 31 - 1
        month = Feb 28/29), days and weeks are calendar days (wall clock, like PostgreSQL's
        ``now() - interval '1 day'``), hours/minutes/seconds are elapsed time (computed in
        UTC so a DST change does not stretch them).
        """
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("cutoff() needs a timezone-aware datetime; a naive one is ambiguous")
        try:
            if self.unit in ("months", "years"):
                months = self.amount * (12 if self.unit == "years" else 1)
                year, month0 = divmod(now.year * 12 + (now.month - 1) - months, 12)
                month = month0 + 1
                day = min(now.day, calendar.monthrange(year, month)[1])
                return now.replace(year=year, month=month, day=day)
            if self.unit in ("days", "weeks"):
                return now - timedelta(days=self.amount * (7 if self.unit == "weeks" else 1))
            delta = timedelta(**{self.unit: self.amount})
            return (now.astimezone(UTC) - delta).astimezone(now.tzinfo)
        except (OverflowError, ValueError) as exc:
            raise InputError(
                f"time window {self} reaches before year 1",
                "Use a shorter window.",
                title="Invalid time window",
            ) from exc


@dataclass(frozen=True)
class TimeFilter:
    """Keep the rows whose ``column`` is within the last ``window``."""

    column: str
    window: TimeWindow

    def __str__(self) -> str:
        return f"{quote_ident(self.column)} in the last {self.window}"


# ---------------------------------------------------------------------------------------
# Predicate safety
# ---------------------------------------------------------------------------------------

_DOLLAR_TAG = re.compile(r"\$(?:[^\W\d]\w*)?\$")
_PRED_TITLE = "Invalid row filter"
_CLOSERS = {")": "(", "]": "["}


def _pred_error(what: str, predicate: str, problem: str, remedy: str) -> InputError:
    return InputError(f"{what} {predicate!r}: {problem}", remedy, title=_PRED_TITLE)


def check_predicate_syntax(predicate: str, *, what: str = "row filter") -> None:
    """Cheap guard before a user's WHERE condition is pasted into SQL.

    Rejects what could end the condition early or hide part of it: a ``;``, a ``--`` or
    ``/*`` comment, unbalanced quotes or brackets, NUL bytes, an empty text. Quoted
    strings ('...', E'...' with backslash escapes, $tag$...$tag$) and quoted names are
    skipped, so ``col = ';'`` passes. The server checks the meaning later.
    """
    if not predicate or not predicate.strip():
        raise InputError(f"{what} is empty", "Give a SQL condition, e.g. status = 'active'.", title=_PRED_TITLE)
    p = predicate
    n = len(p)
    stack: list[tuple[str, int]] = []
    i = 0
    while i < n:
        ch = p[i]
        if ch == "'":
            # E'...' strings take backslash escapes; 'E' must start a token, not end a name.
            escapes = i >= 1 and p[i - 1] in "eE" and (i < 2 or not _is_ident_char(p[i - 2]))
            j = i + 1
            while True:
                if j >= n:
                    raise _pred_error(what, p, f"the string starting at position {i + 1} is never closed",
                                      "Close the string with ' (write '' for a quote inside it).")
                c = p[j]
                if escapes and c == "\\":
                    j += 2
                    continue
                if c == "'":
                    if j + 1 < n and p[j + 1] == "'":
                        j += 2
                        continue
                    break
                j += 1
            i = j + 1
        elif ch == '"':
            j = p.find('"', i + 1)
            while j != -1 and j + 1 < n and p[j + 1] == '"':
                j = p.find('"', j + 2)
            if j == -1:
                raise _pred_error(what, p, f"the quoted name starting at position {i + 1} is never closed",
                                  'Close the name with " (write "" for a quote inside it).')
            i = j + 1
        elif ch == "$" and (i == 0 or not _is_ident_char(p[i - 1])):
            m = _DOLLAR_TAG.match(p, i)
            if m is None:  # $1 parameter or a lone $: nothing to skip
                i += 1
                continue
            tag = m.group(0)
            end = p.find(tag, m.end())
            if end == -1:
                raise _pred_error(what, p, f"the {tag}-quoted string at position {i + 1} is never closed",
                                  f"Close it with {tag}.")
            i = end + len(tag)
        elif p.startswith("--", i) or p.startswith("/*", i):
            raise _pred_error(
                what, p, f"contains a comment ({p[i:i + 2]} at position {i + 1})",
                "Remove the comment: a comment can hide the end of the condition. "
                "Inside a quoted string, -- and /* are fine.",
            )
        elif ch == ";":
            raise _pred_error(
                what, p, f"contains ';' outside a string (position {i + 1})",
                "A row filter is one SQL condition, not a statement; remove the ';'. "
                "A ';' inside a quoted string (col = ';') is fine.",
            )
        elif ch == "\x00":
            raise _pred_error(what, p, f"contains a NUL character (position {i + 1})", "Remove it.")
        elif ch in "([":
            stack.append((ch, i))
            i += 1
        elif ch in ")]":
            if not stack or stack[-1][0] != _CLOSERS[ch]:
                raise _pred_error(what, p, f"{ch!r} at position {i + 1} has no matching {_CLOSERS[ch]!r}",
                                  "Balance the brackets of the condition.")
            stack.pop()
            i += 1
        else:
            i += 1
    if stack:
        opener, pos = stack[-1]
        raise _pred_error(what, p, f"{opener!r} at position {pos + 1} is never closed",
                          "Balance the brackets of the condition.")


# ---------------------------------------------------------------------------------------
# CLI filter syntaxes
# ---------------------------------------------------------------------------------------


def parse_table_filter(text: str) -> tuple[TablePattern, str]:
    """``[db.][schema.]table:PREDICATE`` -> (table pattern, predicate).

    The split is the first ':' outside double quotes: names cannot hold a bare ':', so
    every later ':' (casts, strings) belongs to the predicate.
    """
    colon = _find_outside_quotes(text, ":")
    if colon == -1:
        raise InputError(
            f"table filter {text!r} has no ':' between the table and the condition",
            "Write TABLE:CONDITION, e.g. orders:status = 'open' or app.public.orders:id > 100.",
            title=_PRED_TITLE,
        )
    target = parse_table_pattern(text[:colon], what="table filter table")
    predicate = text[colon + 1:].strip()
    check_predicate_syntax(predicate, what=f"row filter for {target.display()}")
    return target, predicate


def parse_time_filter(text: str) -> tuple[TablePattern, TimeFilter]:
    """``[db.][schema.]table:column:N unit`` -> (table pattern, time filter)."""
    remedy = "Write TABLE:COLUMN:WINDOW, e.g. metrics:created_at:6 months."
    first = _find_outside_quotes(text, ":")
    second = -1 if first == -1 else _find_outside_quotes(text[first + 1:], ":")
    if first == -1 or second == -1:
        raise InputError(f"time filter {text!r} needs TABLE:COLUMN:WINDOW", remedy, title="Invalid time filter")
    second += first + 1
    target = parse_table_pattern(text[:first], what="time filter table")
    column = parse_qualified_name(text[first + 1:second], what="time filter column", max_parts=1)[0]
    window = TimeWindow.parse(text[second + 1:])
    return target, TimeFilter(column, window)


# ---------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------

RuleKind = Literal["include", "exclude", "schema_only", "row_filter", "time_filter"]
_KINDS: tuple[RuleKind, ...] = ("include", "exclude", "schema_only", "row_filter", "time_filter")
_KIND_LABEL: dict[str, str] = {
    "include": "include rule",
    "exclude": "exclude rule",
    "schema_only": "schema-only rule",
    "row_filter": "row filter",
    "time_filter": "time filter",
}
_CLI_FLAG: dict[str, str] = {
    "include": "--include-tables",
    "exclude": "--exclude-tables",
    "schema_only": "--schema-only-tables",
    "row_filter": "--table-filter",
    "time_filter": "--time-filter",
}
_CONTRADICTION = "Contradicting selection rules"


@dataclass(frozen=True)
class DatabaseRule:
    """One database named by an include or exclude list."""

    name: str
    # Provenance is not meaning: two selections with the same rules are equal even when
    # the rules came from different files.
    origin: str = field(default="", compare=False)


@dataclass(frozen=True)
class TableRule:
    """One table rule. ``predicate`` is set for row filters, ``time_filter`` for time filters.

    ``layer`` orders rule sources for ``Selection.merge``: a higher layer (applied later,
    e.g. CLI over config file) overrides a lower one with the same key.
    """

    kind: RuleKind
    target: TablePattern
    predicate: str | None = None
    time_filter: TimeFilter | None = None
    origin: str = field(default="", compare=False)
    layer: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown rule kind {self.kind!r}")
        if (self.predicate is not None) != (self.kind == "row_filter"):
            raise ValueError("predicate is required for row filters and only for them")
        if (self.time_filter is not None) != (self.kind == "time_filter"):
            raise ValueError("time_filter is required for time filters and only for them")

    @property
    def key(self) -> tuple[str, TablePattern]:
        return (self.kind, self.target)

    @property
    def content(self) -> str | TimeFilter | None:
        return self.predicate if self.kind == "row_filter" else self.time_filter

    def describe(self) -> str:
        label = _KIND_LABEL[self.kind]
        if self.kind == "row_filter":
            label += f" {self.predicate!r}"
        elif self.kind == "time_filter":
            label += f" ({self.time_filter})"
        text = f"{label} on {self.target.display()}"
        return f"{text} (from {self.origin})" if self.origin else text

    def sort_key(self) -> tuple[Any, ...]:
        content: Any = ""
        if self.time_filter is not None:
            content = (self.time_filter.column, self.time_filter.window.unit, self.time_filter.window.amount)
        elif self.predicate is not None:
            content = self.predicate
        return (_KINDS.index(self.kind), self.target.sort_key(), str(content))


@dataclass(frozen=True)
class TableTreatment:
    """What happens to one concrete table, and why."""

    mode: Literal["full", "schema_only", "excluded"]
    row_filter: str | None = None
    time_filter: TimeFilter | None = None
    #: Descriptions of the rules that decided this treatment (empty: nothing matched).
    rules: tuple[str, ...] = ()
    #: Rules that matched but lost to a stronger one: worth showing, not an error.
    notes: tuple[str, ...] = ()

    @property
    def copies_rows(self) -> bool:
        return self.mode == "full"


def _dedupe_databases(rules: Iterable[DatabaseRule]) -> tuple[DatabaseRule, ...]:
    seen: dict[str, DatabaseRule] = {}
    for rule in rules:
        seen.setdefault(rule.name, rule)
    return tuple(sorted(seen.values(), key=lambda r: r.name))


def _normalise_rules(rules: Iterable[TableRule]) -> tuple[TableRule, ...]:
    """Drop duplicates, apply layer overrides, reject same-key rules that disagree."""
    by_key: dict[tuple[str, TablePattern], list[TableRule]] = {}
    for rule in rules:
        by_key.setdefault(rule.key, []).append(rule)
    kept: list[TableRule] = []
    for group in by_key.values():
        top = max(r.layer for r in group)
        winners = [r for r in group if r.layer == top]
        first = winners[0]
        for other in winners[1:]:
            if other.content != first.content:
                raise InputError(
                    f"{first.target.display()} has two different {_KIND_LABEL[first.kind]}s: "
                    f"{first.describe()}; and {other.describe()}",
                    "Keep only one of them. (A rule for one database may differ from a rule "
                    "for every database: the one for the database wins there.)",
                    title=_CONTRADICTION,
                )
        kept.append(first)
    return tuple(sorted(kept, key=TableRule.sort_key))


def _cli_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


def _shell_quote(text: str) -> str:
    # Predicates usually hold single quotes; double quotes then read far better than
    # shlex's '"'"' dance, and are still exact when nothing inside is special to the shell.
    quoted = shlex.quote(text)
    if quoted == text or "'" not in text:
        return quoted
    if not any(c in text for c in '"\\$`!'):
        return f'"{text}"'
    return quoted


def _cli_origin(flag: str, text: str) -> str:
    return f"{flag} {_shell_quote(text)}"


@dataclass(frozen=True)
class Selection:
    """Which databases and tables are migrated, and how. Immutable; always consistent.

    Construction normalises (dedupes, sorts, applies merge layers) and raises InputError
    on contradictions, so any Selection that exists is one the runner can act on.
    """

    include_databases: tuple[DatabaseRule, ...] = ()
    exclude_databases: tuple[DatabaseRule, ...] = ()
    rules: tuple[TableRule, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "include_databases", _dedupe_databases(self.include_databases))
        object.__setattr__(self, "exclude_databases", _dedupe_databases(self.exclude_databases))
        object.__setattr__(self, "rules", _normalise_rules(self.rules))
        self._check_contradictions()

    # -- views ----------------------------------------------------------------------

    @cached_property
    def _rules_by_kind(self) -> dict[str, tuple[TableRule, ...]]:
        grouped: dict[str, list[TableRule]] = {}
        for rule in self.rules:
            grouped.setdefault(rule.kind, []).append(rule)
        return {kind: tuple(rules) for kind, rules in grouped.items()}

    def rules_of(self, kind: RuleKind) -> tuple[TableRule, ...]:
        return self._rules_by_kind.get(kind, ())

    @property
    def include_tables(self) -> tuple[TableRule, ...]:
        return self.rules_of("include")

    @property
    def exclude_tables(self) -> tuple[TableRule, ...]:
        return self.rules_of("exclude")

    @property
    def schema_only_tables(self) -> tuple[TableRule, ...]:
        return self.rules_of("schema_only")

    @property
    def row_filters(self) -> tuple[TableRule, ...]:
        return self.rules_of("row_filter")

    @property
    def time_filters(self) -> tuple[TableRule, ...]:
        return self.rules_of("time_filter")

    @cached_property
    def is_resolved(self) -> bool:
        return not any(isinstance(r.target, UnresolvedName) for r in self.rules)

    def unresolved_names(self) -> tuple[UnresolvedName, ...]:
        names = {r.target for r in self.rules if isinstance(r.target, UnresolvedName)}
        return tuple(sorted(names, key=lambda n: n.sort_key()))  # type: ignore[union-attr]

    # -- construction ---------------------------------------------------------------

    @classmethod
    def from_cli(
        cls,
        *,
        include_databases: str | Sequence[str] | None = None,
        exclude_databases: str | Sequence[str] | None = None,
        include_tables: str | Sequence[str] | None = None,
        exclude_tables: str | Sequence[str] | None = None,
        schema_only_tables: str | Sequence[str] | None = None,
        table_filters: str | Sequence[str] | None = None,
        time_filters: str | Sequence[str] | None = None,
    ) -> Selection:
        """Build from CLI flag values.

        Name lists may be comma-separated (commas inside double quotes do not split).
        Filters are one per flag value and never split on commas: predicates contain them.
        """
        dbs: dict[str, list[DatabaseRule]] = {"include": [], "exclude": []}
        for which, flag, value in (
            ("include", "--include-databases", include_databases),
            ("exclude", "--exclude-databases", exclude_databases),
        ):
            for item in _cli_list(value):
                for piece in split_outside_quotes(item):
                    (name,) = parse_qualified_name(piece, what=f"{flag} database", max_parts=1)
                    dbs[which].append(DatabaseRule(name, _cli_origin(flag, piece)))
        rules: list[TableRule] = []
        for kind, value in (
            ("include", include_tables),
            ("exclude", exclude_tables),
            ("schema_only", schema_only_tables),
        ):
            flag = _CLI_FLAG[kind]
            for item in _cli_list(value):
                for piece in split_outside_quotes(item):
                    target = parse_table_pattern(piece, what=f"{flag} table")
                    rules.append(TableRule(kind, target, origin=_cli_origin(flag, piece)))  # type: ignore[arg-type]
        for item in _cli_list(table_filters):
            target, predicate = parse_table_filter(item)
            rules.append(TableRule("row_filter", target, predicate=predicate,
                                   origin=_cli_origin("--table-filter", item)))
        for item in _cli_list(time_filters):
            target, tf = parse_time_filter(item)
            rules.append(TableRule("time_filter", target, time_filter=tf,
                                   origin=_cli_origin("--time-filter", item)))
        return cls(tuple(dbs["include"]), tuple(dbs["exclude"]), tuple(rules))

    def resolve(self, index: NameIndex) -> Selection:
        """Turn every two-part name into a TableRef using the source's real names."""
        if self.is_resolved:
            return self
        rules = tuple(
            replace(r, target=_resolve_name(r.target, index, r.origin))
            if isinstance(r.target, UnresolvedName) else r
            for r in self.rules
        )
        return Selection(self.include_databases, self.exclude_databases, rules)

    def merge(self, other: Selection) -> Selection:
        """``other`` on top of ``self`` (e.g. CLI flags over a config file).

        Row/time filters with the same table, kind and scope: ``other`` wins. Database
        lists, include/exclude and schema-only lists: union.
        """
        offset = max((r.layer for r in self.rules), default=0) + 1
        lifted = tuple(replace(r, layer=r.layer + offset) for r in other.rules)
        return Selection(
            self.include_databases + other.include_databases,
            self.exclude_databases + other.exclude_databases,
            self.rules + lifted,
        )

    # -- consistency ----------------------------------------------------------------

    def _check_contradictions(self) -> None:
        if self.include_databases and self.exclude_databases:
            inc, exc = self.include_databases[0], self.exclude_databases[0]
            raise InputError(
                f"databases are both listed to include ({inc.origin or inc.name}) and to exclude "
                f"({exc.origin or exc.name})",
                "Use either --include-databases or --exclude-databases, not both: one names the "
                "databases to copy, the other the ones to skip.",
                title=_CONTRADICTION,
            )
        includes, excludes = self.include_tables, self.exclude_tables
        if includes and excludes:
            raise InputError(
                f"tables are both listed to include ({includes[0].describe()}) and to exclude "
                f"({excludes[0].describe()})",
                "Use either --include-tables or --exclude-tables, not both.",
                title=_CONTRADICTION,
            )
        shaping = [r for r in self.rules if r.kind in ("schema_only", "row_filter", "time_filter")]
        for ex in excludes:
            if not isinstance(ex.target, TableRef):
                continue
            for rule in shaping:
                if isinstance(rule.target, TableRef) and ex.target.overlaps(rule.target):
                    raise InputError(
                        f"{rule.target.display()} is excluded and also has a "
                        f"{_KIND_LABEL[rule.kind]}: {ex.describe()}; and {rule.describe()}",
                        "Drop one of the two rules: an excluded table is not copied at all.",
                        title=_CONTRADICTION,
                    )

    def notes(self) -> tuple[str, ...]:
        """Rules that can have no effect (their database or table is not selected)."""
        out: list[str] = []
        includes = [r.target for r in self.include_tables if isinstance(r.target, TableRef)]
        for rule in self.rules:
            target = rule.target
            if not isinstance(target, TableRef):
                continue
            if target.database is not None and not self.includes_database(target.database):
                out.append(f"{rule.describe()} has no effect: database {quote_ident(target.database)} is not selected")
            elif rule.kind in ("schema_only", "row_filter", "time_filter") and includes and not any(
                inc.overlaps(target) for inc in includes
            ):
                out.append(f"{rule.describe()} has no effect: the table is not in the include list")
        return tuple(out)

    # -- questions ------------------------------------------------------------------

    def includes_database(self, name: str) -> bool:
        if self.include_databases:
            return any(r.name == name for r in self.include_databases)
        return not any(r.name == name for r in self.exclude_databases)

    @cached_property
    def _rules_by_table(self) -> dict[tuple[str, str, str], list[TableRule]]:
        # treatment() is asked once per table: 10,000 tables x thousands of rules must not
        # be a product, so rules are looked up by (kind, schema, table).
        index: dict[tuple[str, str, str], list[TableRule]] = {}
        for rule in self.rules:
            if isinstance(rule.target, TableRef):
                index.setdefault((rule.kind, rule.target.schema, rule.target.table), []).append(rule)
        return index

    def _pick(self, kind: RuleKind, database: str, schema: str, table: str, notes: list[str]) -> TableRule | None:
        matches = [r for r in self._rules_by_table.get((kind, schema, table), ())
                   if r.target.matches(database, schema, table)]  # type: ignore[union-attr]
        specific = [r for r in matches if r.target.database is not None]  # type: ignore[union-attr]
        general = [r for r in matches if r.target.database is None]  # type: ignore[union-attr]
        if specific and general and kind in ("row_filter", "time_filter"):
            notes.append(f"{general[0].describe()} is replaced here by the rule for this database: "
                         f"{specific[0].describe()}")
        chosen = specific or general
        return chosen[0] if chosen else None

    def treatment(
        self, database: str, schema: str, table: str, *, included_by_default: bool = True
    ) -> TableTreatment:
        """How ``database.schema.table`` is migrated.

        Excluded when its database is not selected, an exclude rule names it, or an
        include list exists without it. Otherwise schema-only > row filter > time filter
        > full copy (the weaker rules that also matched become notes). With no include
        list, a table no rule names is in when ``included_by_default`` (the caller's say
        for e.g. extension-owned tables); a schema-only or filter rule names it too.
        """
        if not self.is_resolved:
            raise ValueError("the selection has unresolved two-part names; call resolve() first")
        if not self.includes_database(database):
            why = [r.origin or r.name for r in self.exclude_databases if r.name == database]
            if not why:
                why = ["not in the databases to include: "
                       + ", ".join(r.origin or r.name for r in self.include_databases)]
            return TableTreatment("excluded", rules=tuple(why))
        notes: list[str] = []
        excluded = self._pick("exclude", database, schema, table, notes)
        if excluded is not None:
            return TableTreatment("excluded", rules=(excluded.describe(),))
        decided: list[str] = []
        if self.include_tables:
            included = self._pick("include", database, schema, table, notes)
            if included is None:
                return TableTreatment("excluded", rules=("not in the tables to include",))
            decided.append(included.describe())
        schema_only = self._pick("schema_only", database, schema, table, notes)
        row = self._pick("row_filter", database, schema, table, notes)
        timed = self._pick("time_filter", database, schema, table, notes)
        if not decided and not included_by_default and not (schema_only or row or timed):
            return TableTreatment("excluded", rules=("not selected by default",))
        if schema_only is not None:
            for weaker in (row, timed):
                if weaker is not None:
                    notes.append(f"{weaker.describe()} is ignored: the table is schema-only ({schema_only.describe()})")
            return TableTreatment("schema_only", rules=(*decided, schema_only.describe()), notes=tuple(notes))
        if row is not None:
            if timed is not None:
                notes.append(f"{timed.describe()} is ignored: the row filter wins ({row.describe()})")
            return TableTreatment("full", row_filter=row.predicate, rules=(*decided, row.describe()),
                                  notes=tuple(notes))
        if timed is not None:
            return TableTreatment("full", time_filter=timed.time_filter, rules=(*decided, timed.describe()),
                                  notes=tuple(notes))
        return TableTreatment("full", rules=tuple(decided), notes=tuple(notes))

    # -- serialisation --------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain primitives only (no None), so the value fits both TOML and JSON."""

        def rule_dict(r: TableRule) -> dict[str, Any]:
            d: dict[str, Any] = {"rule": r.kind}
            if isinstance(r.target, TableRef):
                if r.target.database is not None:
                    d["database"] = r.target.database
                d["schema"] = r.target.schema
                d["table"] = r.target.table
            else:
                d["name"] = [r.target.first, r.target.second]
            if r.predicate is not None:
                d["where"] = r.predicate
            if r.time_filter is not None:
                d["column"] = r.time_filter.column
                d["last"] = str(r.time_filter.window)
            if r.origin:
                d["origin"] = r.origin
            if r.layer:
                d["layer"] = r.layer
            return d

        def db_dict(r: DatabaseRule) -> dict[str, Any]:
            return {"name": r.name, "origin": r.origin} if r.origin else {"name": r.name}

        return {
            "include_databases": [db_dict(r) for r in self.include_databases],
            "exclude_databases": [db_dict(r) for r in self.exclude_databases],
            "tables": [rule_dict(r) for r in self.rules],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "saved selection") -> Selection:
        """Inverse of ``to_dict``. Hand-edited profiles are user input, so errors are InputErrors.

        Database entries may also be plain strings. Rules without an origin get ``source``.
        """

        def bad(where: str, problem: str) -> InputError:
            return InputError(f"{source}: {where}: {problem}",
                              "Fix or remove that entry (see the documented profile format).",
                              title="Invalid saved selection")

        def expect(value: Any, typ: type | tuple[type, ...], where: str, what: str) -> Any:
            if not isinstance(value, typ) or isinstance(value, bool):
                raise bad(where, f"expected {what}, got {type(value).__name__}")
            return value

        allowed_top = {"include_databases", "exclude_databases", "tables"}
        expect(data, Mapping, "top level", "a table")
        for key in data:
            if key not in allowed_top:
                raise bad(str(key), f"unknown key (expected one of: {', '.join(sorted(allowed_top))})")
        dbs: dict[str, list[DatabaseRule]] = {"include_databases": [], "exclude_databases": []}
        for key in dbs:
            for i, entry in enumerate(expect(data.get(key, []), list, key, "a list")):
                where = f"{key}[{i + 1}]"
                if isinstance(entry, str):
                    dbs[key].append(DatabaseRule(entry, source))
                    continue
                expect(entry, Mapping, where, "a name or a table")
                unknown = set(entry) - {"name", "origin"}
                if unknown:
                    raise bad(where, f"unknown key {sorted(unknown)[0]!r} (expected one of: name, origin)")
                name = expect(entry.get("name"), str, where + ".name", "a string")
                origin = expect(entry.get("origin", source), str, where + ".origin", "a string")
                dbs[key].append(DatabaseRule(name, origin))
        rules: list[TableRule] = []
        fields_by_kind = {
            "row_filter": {"where"},
            "time_filter": {"column", "last"},
        }
        for i, entry in enumerate(expect(data.get("tables", []), list, "tables", "a list")):
            where = f"tables[{i + 1}]"
            expect(entry, Mapping, where, "a table")
            kind = expect(entry.get("rule"), str, where + ".rule", "a string")
            if kind not in _KINDS:
                raise bad(where + ".rule", f"unknown rule {kind!r} (expected one of: {', '.join(_KINDS)})")
            allowed = {"rule", "database", "schema", "table", "name", "origin", "layer"} | fields_by_kind.get(kind, set())
            unknown = set(entry) - allowed
            if unknown:
                raise bad(where, f"unknown key {sorted(unknown)[0]!r} (expected one of: {', '.join(sorted(allowed))})")
            target: TablePattern
            if "name" in entry:
                parts = expect(entry["name"], list, where + ".name", "a list of two strings")
                if len(parts) != 2 or not all(isinstance(p, str) for p in parts):
                    raise bad(where + ".name", "expected a list of two strings")
                target = UnresolvedName(parts[0], parts[1])
            else:
                db = entry.get("database")
                if db is not None:
                    expect(db, str, where + ".database", "a string")
                target = TableRef(
                    db,
                    expect(entry.get("schema", DEFAULT_SCHEMA), str, where + ".schema", "a string"),
                    expect(entry.get("table"), str, where + ".table", "a string"),
                )
            origin = expect(entry.get("origin", source), str, where + ".origin", "a string")
            layer = expect(entry.get("layer", 0), int, where + ".layer", "an integer")
            predicate = None
            time_filter = None
            if kind == "row_filter":
                predicate = expect(entry.get("where"), str, where + ".where", "a string")
                check_predicate_syntax(predicate, what=f"{source}: {where}.where")
            elif kind == "time_filter":
                column = expect(entry.get("column"), str, where + ".column", "a string")
                time_filter = TimeFilter(column, TimeWindow.parse(
                    expect(entry.get("last"), str, where + ".last", "a string")))
            rules.append(TableRule(kind, target, predicate=predicate, time_filter=time_filter,  # type: ignore[arg-type]
                                   origin=origin, layer=layer))
        return cls(tuple(dbs["include_databases"]), tuple(dbs["exclude_databases"]), tuple(rules))
