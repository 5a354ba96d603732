"""The seed tools' replication config file (``--config FILE``), read into a Selection.

Format (one section per source database)::

    [databases.kong]
    schema_only = ["evmlog_strides", "analytics.price"]   # table or schema.table

    [[databases.kong.table_filters]]
    table = "output"                 # literal name: no dot parsing, no case folding
    schema = "public"                # optional, default public
    where = "series_time >= NOW() - INTERVAL '6 months'"

    [[databases.kong.time_filters]]
    table = "metrics"
    column = "created_at"
    last = "1 year"

Data is read with ``tomllib``; a small position scanner over the same text finds the
line of every key, so a typo or a wrong type is reported as ``file line N: key path``.
Every rule's origin names the file, the line and the key path.

``where`` predicates that call ``NOW()`` load fine (the snapshot copy can evaluate them),
but PostgreSQL rejects them in a publication row filter (not immutable); resolving time
windows to literal timestamps is the planner's job, not this module's.
"""

from __future__ import annotations

import bisect
import os
import re
import tomllib
from collections.abc import Mapping
from datetime import date, datetime, time
from typing import Any

import tomlkit

from ..infra.errors import InputError
from .selection import (
    DEFAULT_SCHEMA,
    MAX_NAME_BYTES,
    Selection,
    TableRef,
    TableRule,
    TimeFilter,
    TimeWindow,
    check_predicate_syntax,
    format_qualified_name,
    parse_qualified_name,
)

__all__ = ["dump_seed_config", "load_seed_config", "parse_seed_config"]

_TITLE = "Invalid config file"
_DB_KEYS = ("schema_only", "table_filters", "time_filters")
_ENTRY_KEYS = {
    "table_filters": ("table", "schema", "where"),
    "time_filters": ("table", "schema", "column", "last"),
}
_REQUIRED = {
    "table_filters": ("table", "where"),
    "time_filters": ("table", "column", "last"),
}

Path = tuple[str | int, ...]

# ---------------------------------------------------------------------------------------
# Key positions
# ---------------------------------------------------------------------------------------


class _Positions:
    """Line of every key path in a TOML text that tomllib has already accepted.

    Because the text is known to be valid, this scanner can be small: it follows
    headers, dotted/quoted keys, arrays of tables and inline arrays/tables, and skips
    strings and comments. Array elements are indexed from 0 in paths.
    """

    _BARE = re.compile(r"[A-Za-z0-9_-]+")

    def __init__(self, text: str) -> None:
        self.s = text
        self.lines: dict[Path, int] = {}
        self._starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self._aot: dict[Path, int] = {}
        try:
            self._scan()
        except Exception:
            # tomllib accepted the file; if this small scanner trips on some corner of
            # TOML, report errors without line numbers rather than refuse a valid file
            # (and drop partial results: they may be out of step).
            self.lines = {}

    def line_of(self, path: Path) -> int | None:
        # A key that is absent (a missing required key) is reported at its parent.
        for cut in range(len(path), -1, -1):
            line = self.lines.get(path[:cut])
            if line is not None:
                return line
        return None

    def _line(self, i: int) -> int:
        return bisect.bisect_right(self._starts, i)

    def _mark(self, path: Path, i: int) -> None:
        self.lines.setdefault(path, self._line(i))

    def _ws(self, i: int, newlines: bool) -> int:
        s, n = self.s, len(self.s)
        while i < n:
            c = s[i]
            if c in " \t" or (newlines and c in "\r\n"):
                i += 1
            elif c == "#":
                while i < n and s[i] != "\n":
                    i += 1
            else:
                break
        return i

    def _key(self, i: int) -> tuple[list[str], int]:
        s = self.s
        keys: list[str] = []
        while True:
            i = self._ws(i, newlines=False)
            if s[i] in "\"'":
                end = self._string_end(i)
                # Let tomllib decode escapes, so the key matches the parsed dict exactly.
                keys.append(tomllib.loads(f"k = {s[i:end]}")["k"])
                i = end
            else:
                m = self._BARE.match(s, i)
                assert m is not None, "scanner out of sync with tomllib"
                keys.append(m.group(0))
                i = m.end()
            i = self._ws(i, newlines=False)
            if i < len(s) and s[i] == ".":
                i += 1
                continue
            return keys, i

    def _string_end(self, i: int) -> int:
        s = self.s
        q = s[i]
        if s.startswith(q * 3, i):
            j = i + 3
            while True:
                if q == '"' and s[j] == "\\":
                    j += 2
                elif s.startswith(q * 3, j):
                    j += 3
                    # Up to two more quotes may close the content ("""a"""" is 'a"').
                    extra = 0
                    while extra < 2 and j < len(s) and s[j] == q:
                        j += 1
                        extra += 1
                    return j
                else:
                    j += 1
        j = i + 1
        while s[j] != q:
            j += 2 if (q == '"' and s[j] == "\\") else 1
        return j + 1

    def _value(self, i: int, path: Path) -> int:
        s = self.s
        c = s[i]
        if c in "\"'":
            return self._string_end(i)
        if c == "[":
            i += 1
            index = 0
            while True:
                i = self._ws(i, newlines=True)
                if s[i] == "]":
                    return i + 1
                element = path + (index,)
                self._mark(element, i)
                i = self._value(i, element)
                index += 1
                i = self._ws(i, newlines=True)
                if s[i] == ",":
                    i += 1
        if c == "{":
            i += 1
            while True:
                i = self._ws(i, newlines=True)
                if s[i] == "}":
                    return i + 1
                keys, i = self._key(i)
                self._mark_keys(path, keys, i)
                i = self._ws(i, newlines=False) + 1  # '='
                i = self._ws(i, newlines=False)
                i = self._value(i, path + tuple(keys))
                i = self._ws(i, newlines=True)
                if s[i] == ",":
                    i += 1
        while i < len(s) and s[i] not in ",]}\r\n#":
            i += 1
        return i

    def _mark_keys(self, prefix: Path, keys: list[str], i: int) -> None:
        for cut in range(1, len(keys) + 1):
            self._mark(prefix + tuple(keys[:cut]), i)

    def _resolve_header(self, keys: list[str], new_array_entry: bool) -> Path:
        # A header naming a path through an array of tables means its latest element.
        out: Path = ()
        for pos, key in enumerate(keys):
            out += (key,)
            last = pos == len(keys) - 1
            if last and new_array_entry:
                count = self._aot.get(out, 0)
                self._aot[out] = count + 1
                out += (count,)
            elif out in self._aot:
                out += (self._aot[out] - 1,)
        return out

    def _scan(self) -> None:
        s, n = self.s, len(self.s)
        prefix: Path = ()
        i = 0
        while True:
            i = self._ws(i, newlines=True)
            if i >= n:
                return
            start = i
            if s.startswith("[[", i):
                keys, i = self._key(i + 2)
                prefix = self._resolve_header(keys, new_array_entry=True)
                i += 2
                self.lines[prefix] = self._line(start)
            elif s[i] == "[":
                keys, i = self._key(i + 1)
                prefix = self._resolve_header(keys, new_array_entry=False)
                i += 1
            else:
                keys, i = self._key(i)
                self._mark_keys(prefix, keys, start)
                i = self._ws(i, newlines=False) + 1  # '='
                i = self._ws(i, newlines=False)
                i = self._value(i, prefix + tuple(keys))
                continue
            # Tables a header creates implicitly ([a.b] creates a) are located there too.
            for cut in range(1, len(prefix) + 1):
                self._mark(prefix[:cut], start)


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _render_path(path: Path) -> str:
    """``databases.kong.table_filters[1].tabel`` — indexes counted from 1, like a human."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part + 1}]"
        else:
            key = part if _BARE_KEY.fullmatch(part) else tomlkit.string(part).as_string()
            out += ("." if out else "") + key
    return out


def type_name(value: Any) -> str:
    """A TOML value's type as an error message says it."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, (datetime, date, time)):
        return "a date/time"
    return type(value).__name__


class _Reader:
    def __init__(self, text: str, name: str) -> None:
        self.name = name
        self.pos = _Positions(text)

    def where(self, path: Path, line_path: Path | None = None) -> str:
        line = self.pos.line_of(path if line_path is None else line_path)
        at = f"{self.name} line {line}" if line is not None else self.name
        return f"{at}: {_render_path(path)}" if path else at

    def origin(self, path: Path) -> str:
        line = self.pos.line_of(path)
        at = f" line {line}" if line is not None else ""
        return f"config file {self.name}{at}, {_render_path(path)}"

    def error(self, path: Path, problem: str, remedy: str, line_path: Path | None = None) -> InputError:
        return InputError(f"{self.where(path, line_path)}: {problem}", remedy, title=_TITLE)

    def expect(self, value: Any, path: Path, typ: type, what: str) -> Any:
        if not isinstance(value, typ) or isinstance(value, bool) != (typ is bool):
            raise self.error(path, f"expected {what}, got {type_name(value)}",
                             "See the config file format: schema_only is an array of table names; "
                             "table_filters and time_filters are [[...]] entries of strings.")
        return value

    def check_keys(self, table: Mapping[str, Any], path: Path, allowed: tuple[str, ...]) -> None:
        for key in table:
            if key not in allowed:
                # Name the table holding the key, but point at the key's own line.
                raise self.error(
                    path,
                    f"unknown key {key!r} (expected one of: {', '.join(allowed)})",
                    "Fix the spelling or remove the key.",
                    line_path=path + (key,),
                )

    def literal_name(self, value: Any, path: Path, what: str) -> str:
        name = self.expect(value, path, str, "a string")
        if not name:
            raise self.error(path, f"the {what} is empty", f"Give the {what}.")
        if len(name.encode("utf-8")) > MAX_NAME_BYTES:
            raise self.error(path, f"the {what} {name!r} is longer than {MAX_NAME_BYTES} bytes",
                             "PostgreSQL names are at most 63 bytes; use the name as the server lists it.")
        return str(name)

    def reraise(self, path: Path, exc: InputError) -> InputError:
        return InputError(f"{self.where(path)}: {exc.cause}", exc.remedy, title=exc.title)


def parse_seed_config(text: str, *, name: str = "<config>") -> Selection:
    """Read seed-format TOML ``text`` (``name`` is the file name used in messages)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already carries "(at line L, column C)".
        raise InputError(f"{name}: TOML syntax error: {exc}",
                         "Fix the TOML syntax at that line and column.", title=_TITLE) from None
    r = _Reader(text, name)
    r.check_keys(data, (), ("databases",))
    databases = r.expect(data.get("databases", {}), ("databases",), dict, "a table of databases")
    rules: list[TableRule] = []
    for db_name, section in databases.items():
        db_path: Path = ("databases", db_name)
        r.literal_name(db_name, db_path, "database name")
        r.expect(section, db_path, dict, f"a table ([databases.{_render_path((db_name,))}])")
        r.check_keys(section, db_path, _DB_KEYS)

        so_path = db_path + ("schema_only",)
        for index, entry in enumerate(r.expect(section.get("schema_only", []), so_path, list, "an array of strings")):
            path = so_path + (index,)
            r.expect(entry, path, str, "a string")
            try:
                parts = parse_qualified_name(entry, what="schema-only table", max_parts=2)
            except InputError as exc:
                raise r.reraise(path, exc) from None
            schema, table = parts if len(parts) == 2 else (DEFAULT_SCHEMA, parts[0])
            rules.append(TableRule("schema_only", TableRef(db_name, schema, table), origin=r.origin(path)))

        for kind in ("table_filters", "time_filters"):
            list_path = db_path + (kind,)
            entries = r.expect(section.get(kind, []), list_path, list, f"an array of tables ([[{_render_path(list_path)}]])")
            for index, entry in enumerate(entries):
                path = list_path + (index,)
                r.expect(entry, path, dict, "a table")
                r.check_keys(entry, path, _ENTRY_KEYS[kind])
                for required in _REQUIRED[kind]:
                    if required not in entry:
                        raise r.error(path, f"missing key {required!r}",
                                      f"Each {kind} entry needs: {', '.join(_REQUIRED[kind])}.")
                table = r.literal_name(entry["table"], path + ("table",), "table name")
                schema = DEFAULT_SCHEMA
                if "schema" in entry:
                    schema = r.literal_name(entry["schema"], path + ("schema",), "schema name")
                target = TableRef(db_name, schema, table)
                if kind == "table_filters":
                    predicate = r.expect(entry["where"], path + ("where",), str, "a string").strip()
                    try:
                        check_predicate_syntax(predicate, what="row filter")
                    except InputError as exc:
                        raise r.reraise(path + ("where",), exc) from None
                    rules.append(TableRule("row_filter", target, predicate=predicate, origin=r.origin(path)))
                else:
                    column = r.literal_name(entry["column"], path + ("column",), "column name")
                    last = r.expect(entry["last"], path + ("last",), str, "a string like \"6 months\"")
                    try:
                        window = TimeWindow.parse(last)
                    except InputError as exc:
                        raise r.reraise(path + ("last",), exc) from None
                    rules.append(TableRule("time_filter", target, time_filter=TimeFilter(column, window),
                                           origin=r.origin(path)))
    return Selection(rules=tuple(rules))


def load_seed_config(path: str | os.PathLike[str]) -> Selection:
    """Read a seed-format config file. Every problem is an InputError naming the file."""
    name = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise InputError(f"cannot read config file {name}: {exc.strerror or exc}",
                         "Check the path and its permissions.", title=_TITLE) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name} is not UTF-8 text (byte {exc.start})",
                         "Save the file as UTF-8.", title=_TITLE) from None
    return parse_seed_config(text, name=name)


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------


def dump_seed_config(selection: Selection) -> str:
    """Write ``selection`` in the seed format; ``parse_seed_config`` reads back an equal one.

    The seed format only knows per-database schema-only tables and filters, so a
    selection with database lists, include/exclude rules, all-database rules or
    unresolved names cannot be written: InputError says which rule is in the way.
    """
    if selection.include_databases or selection.exclude_databases:
        first = (selection.include_databases or selection.exclude_databases)[0]
        raise InputError(f"the seed config format has no database lists ({first.origin or first.name})",
                         "Save it as a pgtide profile instead.", title="Cannot write seed config")
    sections: dict[str, dict[str, list[Any]]] = {}
    for rule in selection.rules:
        target = rule.target
        if rule.kind in ("include", "exclude") or not isinstance(target, TableRef) or target.database is None:
            raise InputError(
                f"the seed config format cannot express the {rule.describe()}",
                "It only has per-database schema_only, table_filters and time_filters; "
                "save the selection as a pgtide profile instead.",
                title="Cannot write seed config",
            )
        section = sections.setdefault(target.database, {k: [] for k in _DB_KEYS})
        if rule.kind == "schema_only":
            parts = (target.table,) if target.schema == DEFAULT_SCHEMA else (target.schema, target.table)
            section["schema_only"].append(format_qualified_name(parts))
            continue
        entry = tomlkit.table()
        entry.add("table", target.table)
        if target.schema != DEFAULT_SCHEMA:
            entry.add("schema", target.schema)
        if rule.kind == "row_filter":
            entry.add("where", rule.predicate)
            section["table_filters"].append(entry)
        else:
            assert rule.time_filter is not None
            entry.add("column", rule.time_filter.column)
            entry.add("last", str(rule.time_filter.window))
            section["time_filters"].append(entry)
    doc = tomlkit.document()
    databases = tomlkit.table(is_super_table=True)
    for db_name, section in sections.items():
        table = tomlkit.table()
        if section["schema_only"]:
            table.add("schema_only", section["schema_only"])
        for kind in ("table_filters", "time_filters"):
            if section[kind]:
                aot = tomlkit.aot()
                for entry in section[kind]:
                    aot.append(entry)
                table.add(kind, aot)
        databases.add(db_name, table)
    doc.add("databases", databases)
    return tomlkit.dumps(doc)
