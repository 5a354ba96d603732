"""The ``typed`` layout: real PostgreSQL columns, by cast rules like pgloader's.

MySQL/MariaDB (pgloader's defaults): tinyint(1) and bit(1) → boolean; tinyint → smallint;
unsigned integers widened one size (bigint unsigned → numeric(20)); auto_increment → an
identity column whose next value is set past the copied maximum; float → real, double →
double precision, decimal(p,s) → numeric(p,s); char/varchar(n) → varchar(n), the text
types → text, with NUL characters stripped; binary/varbinary/blob → bytea; bit(n) →
bit varying(n); date → date, datetime/timestamp → timestamptz (naive values are UTC) with
zero dates → NULL; time → time (a value beyond 24 h or negative is an error naming the
column: override it to interval); year → smallint; enum → a PostgreSQL enum type named
``<table>_<column>``; set → an array of such an enum; json → jsonb.

SQLite, by declared type affinity: *INT* → bigint, *CHAR*/*CLOB*/*TEXT* → text,
*BLOB* → bytea, *REAL*/*FLOA*/*DOUB* → double precision, *BOOL* → boolean,
DATETIME/TIMESTAMP → timestamptz and DATE → date (ISO text or Julian/epoch numbers are
parsed; a value that is neither is an error naming the row), TIME → time,
DECIMAL/NUMERIC → numeric, JSON → jsonb; a column without a declared type → text.

Every rule can be overridden per column (``casts`` in the profile: ``"table.column" =
"text"``). An override is a PostgreSQL type name that the target server parses and prints
back (``format_type``); that printed text is what pgtide uses, never what was typed.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from ..infra.errors import InputError
from .encode import dumps, encode_value, time_text
from .source import Kind, SourceColumn, SourceTable

Convert = Callable[[Any], Any]
#: One column of a batch (every row's value of that column) to its target values, in order.
ColumnConvert = Callable[[Sequence[Any]], Sequence[Any]]

_ZERO_DATE = re.compile(r"^0000-|-00(?:[ T]|$)|-00-")


class CastError(InputError):
    """A value the column's cast cannot hold: says which table, column and row, and the override."""

    default_title = "Value does not fit its column"


@dataclass(frozen=True)
class Cast:
    """How one source column lands on the target."""

    column: str
    #: The PostgreSQL type as SQL text: from the fixed rules below or the server's format_type.
    pg_type: str
    convert: Convert
    #: An identity column (MySQL auto_increment): its sequence is set past the copied maximum.
    identity: bool = False
    #: Enum members to create as the type ``pg_type`` (without []) before the table.
    enum_values: tuple[str, ...] = ()
    #: Where the rule came from, for Review: "rule" or "override".
    origin: str = "rule"
    #: Why this rule, in a few words (shown in Review and `pgtide schema`).
    why: str = ""
    #: ``convert`` over a whole column of a batch, with the same values (the copy's fast path,
    #: see convert_batch); None: ``convert`` value by value.
    batch: ColumnConvert | None = field(default=None, compare=False, repr=False)


def _same(value: Any) -> Any:
    return value


def _nullable(fn: Convert) -> Convert:
    def convert(value: Any) -> Any:
        return None if value is None else fn(value)
    return convert


_NONE = type(None)


def _column(fn: Convert, *keeps: type, nul: bool = False) -> ColumnConvert:
    """``_nullable(fn)`` over a column. ``keeps``: the exact types ``fn`` returns unchanged, so
    a column holding only those (and None) is returned as it is, after one pass in C over its
    types — most columns of most tables. ``nul``: ``fn`` strips NUL from str, so a str column
    is only kept when none of its values holds one."""
    kept = frozenset((_NONE, *keeps))

    def convert(values: Sequence[Any]) -> Sequence[Any]:
        kinds = set(map(type, values))
        if kinds <= kept and not (nul and str in kinds and "\x00" in "".join(filter(None, values))):
            return values
        return [None if v is None else fn(v) for v in values]
    return convert


def _bool_column(values: Sequence[Any]) -> Sequence[Any]:
    kinds = set(map(type, values))
    if kinds <= {bool, _NONE}:
        return values
    if kinds <= {int, bool}:
        return list(map(bool, values))  # _bool of an int is bool(value)
    if kinds <= {int, bool, _NONE}:
        return [None if v is None else bool(v) for v in values]
    return [None if v is None else _bool(v) for v in values]


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        text = bytes(value).decode("utf-8", errors="strict")
    elif isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        text = str(value)
    elif isinstance(value, (dt.timedelta, dt.time)):
        text = time_text(value)
    elif isinstance(value, (dict, list)):
        text = dumps(encode_value(value))
    else:
        text = value if isinstance(value, str) else str(value)
    return text.replace("\x00", "") if "\x00" in text else text


def _bool(value: Any) -> bool:
    if isinstance(value, (bytes, bytearray)):
        return any(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("1", "t", "true", "y", "yes", "on"):
            return True
        if lowered in ("0", "f", "false", "n", "no", "off", ""):
            return False
        raise ValueError(f"{value!r} is not a boolean")
    return bool(value)


def _bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def _bits(width: int) -> Convert:
    def convert(value: Any) -> str:
        number = int.from_bytes(bytes(value), "big") if isinstance(value, (bytes, bytearray)) else int(value)
        return format(number, f"0{width}b")
    return convert


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def _mysql_datetime(value: Any) -> dt.datetime | None:
    if isinstance(value, str):
        if _ZERO_DATE.search(value):
            return None
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.datetime):
        return _utc(value)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    raise ValueError(f"{value!r} is not a datetime")


def _mysql_date(value: Any) -> dt.date | None:
    if isinstance(value, str):
        if _ZERO_DATE.search(value):
            return None
        return dt.date.fromisoformat(value[:10])
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    raise ValueError(f"{value!r} is not a date")


def _time(value: Any) -> dt.time:
    if isinstance(value, dt.time):
        return value
    if isinstance(value, dt.timedelta):
        if value < dt.timedelta(0) or value >= dt.timedelta(days=1):
            raise ValueError(f"TIME {time_text(value)} is outside 00:00–24:00 (override the column to interval)")
        return (dt.datetime.min + value).time()
    if isinstance(value, str):
        return dt.time.fromisoformat(value)
    raise ValueError(f"{value!r} is not a time")


def _interval(value: Any) -> Any:
    if isinstance(value, dt.time):
        return dt.timedelta(hours=value.hour, minutes=value.minute, seconds=value.second,
                            microseconds=value.microsecond)
    return value


#: Julian day number of 1970-01-01, for SQLite's julianday() values.
_UNIX_JULIAN = 2440587.5


def _sqlite_datetime(value: Any) -> dt.datetime:
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        return _utc(dt.datetime.fromisoformat(text))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # SQLite keeps dates as ISO text, Julian day numbers (REAL) or Unix seconds (INTEGER):
        # its own date functions read a REAL as Julian and an INTEGER with 'unixepoch'.
        seconds = (value - _UNIX_JULIAN) * 86400 if isinstance(value, float) else value
        return dt.datetime.fromtimestamp(seconds, dt.UTC)
    raise ValueError(f"{value!r} is not a date and time")


def _sqlite_date(value: Any) -> dt.date:
    if isinstance(value, str) and len(value.strip()) == 10:
        return dt.date.fromisoformat(value.strip())
    return _sqlite_datetime(value).date()


def _numeric(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    try:
        if isinstance(value, float):
            return Decimal(repr(value))
        return Decimal(str(value).strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
        return int(value)
    raise ValueError(f"{value!r} is not an integer")


def _float(value: Any) -> float:
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        return float(value)
    raise ValueError(f"{value!r} is not a number")


def _json(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8")
    if isinstance(value, str):
        parsed = json.loads(value)  # the server would refuse it anyway; this names the row
        # An escaped NUL (jsonb refuses it) means re-encoding without it; a plain text passes as is.
        return dumps(encode_value(parsed)) if "\\u0000" in value else value
    return dumps(encode_value(value))


def _set_members(value: Any) -> list[str]:
    if isinstance(value, (set, frozenset, list, tuple)):
        return [str(v) for v in value]
    text = str(value)
    return [member for member in text.split(",") if member] if text else []


def _numeric_column(values: Sequence[Any]) -> Sequence[Any]:
    kinds = set(map(type, values))
    if kinds <= {Decimal, _NONE}:
        return values
    if kinds <= {Decimal, int, float, bool, _NONE}:
        # A float's shortest repr, not its binary expansion: SQLite keeps DECIMAL as REAL, and
        # 123.45 must land as 123.45, not 123.4500000000000028421709430404007434844970703125.
        return [None if v is None else Decimal(repr(v)) if type(v) is float else Decimal(v) for v in values]
    return [None if v is None else _numeric(v) for v in values]


# The two timestamptz columns below leave naive values naive: they mean UTC (convert_columns).

def _mysql_datetime_column(values: Sequence[Any]) -> Sequence[Any]:
    if set(map(type, values)) <= {dt.datetime, _NONE}:
        return values
    return [None if v is None else v if type(v) is dt.datetime else _mysql_datetime(v) for v in values]


def _sqlite_datetime_value(value: Any) -> dt.datetime:
    """_sqlite_datetime in one C call for the common case, ISO text without spaces around it
    (fromisoformat reads a final "Z" as +00:00 itself since Python 3.11: the same instant)."""
    if type(value) is str:
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            pass
    return _sqlite_datetime(value)


#: The column forms of the converters above; any other runs value by value (_column).
_BATCH: dict[Convert, ColumnConvert] = {
    _int: _column(_int, int),
    _float: _column(_float, float),
    _text: _column(_text, str, nul=True),
    _bytes: _column(_bytes, bytes),
    _bool: _bool_column,
    _numeric: _numeric_column,
    _mysql_datetime: _mysql_datetime_column,
    _mysql_date: _column(_mysql_date, dt.date),
    _sqlite_datetime: _column(_sqlite_datetime_value),
    _time: _column(_time, dt.time),
}


def _col(fn: Convert) -> ColumnConvert:
    return _BATCH.get(fn) or _column(fn)


def enum_type_name(table: str, column: str) -> str:
    """The enum type made for a MySQL ENUM/SET column (PostgreSQL keeps 63 bytes of a name)."""
    return f"{table}_{column}"


def _mysql_rule(table: SourceTable, column: SourceColumn) -> Cast:
    base, width = column.base.lower(), column.length
    name = column.name
    unsigned = column.unsigned
    if base == "tinyint" and width == 1:
        return Cast(name, "boolean", _nullable(_bool), batch=_col(_bool), why="tinyint(1) holds a flag")
    if base == "bit" and (width or 1) == 1:
        return Cast(name, "boolean", _nullable(_bool), batch=_col(_bool), why="bit(1) holds a flag")
    if base == "bit":
        bits = _bits(int(width or 64))
        return Cast(name, f"bit varying({int(width or 64)})", _nullable(bits), batch=_column(bits), why="bit(n)")
    if base in ("tinyint", "smallint", "mediumint", "int", "integer", "bigint"):
        wider = {"tinyint": "smallint", "smallint": "integer", "mediumint": "integer", "int": "bigint",
                 "integer": "bigint", "bigint": "numeric(20)"}
        plain = {"tinyint": "smallint", "smallint": "smallint", "mediumint": "integer", "int": "integer",
                 "integer": "integer", "bigint": "bigint"}
        pg_type = wider[base] if unsigned else plain[base]
        why = "unsigned: widened one size" if unsigned else ""
        fn: Convert = _numeric if pg_type.startswith("numeric") else _int
        return Cast(name, pg_type, _nullable(fn), batch=_col(fn),
                    identity=column.auto_increment and not pg_type.startswith("numeric"),
                    why=("auto_increment → identity; " if column.auto_increment else "") + why)
    if base == "float":
        return Cast(name, "real", _nullable(_float), batch=_col(_float))
    if base in ("double", "real", "double precision"):
        return Cast(name, "double precision", _nullable(_float), batch=_col(_float))
    if base in ("decimal", "numeric", "dec", "fixed"):
        precision, scale = int(column.length or 10), int(column.scale or 0)
        return Cast(name, f"numeric({precision},{scale})", _nullable(_numeric), batch=_col(_numeric))
    if base in ("char", "varchar"):
        return Cast(name, f"varchar({int(width)})" if width else "text", _nullable(_text), batch=_col(_text))
    if base in ("tinytext", "text", "mediumtext", "longtext"):
        return Cast(name, "text", _nullable(_text), batch=_col(_text), why="NUL characters stripped")
    if base in ("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"):
        return Cast(name, "bytea", _nullable(_bytes), batch=_col(_bytes))
    if base == "date":
        return Cast(name, "date", _nullable(_mysql_date), batch=_col(_mysql_date), why="zero dates become NULL")
    if base in ("datetime", "timestamp"):
        return Cast(name, "timestamp with time zone", _nullable(_mysql_datetime), batch=_col(_mysql_datetime),
                    why="naive values read as UTC; zero dates become NULL")
    if base == "time":
        return Cast(name, "time without time zone", _nullable(_time), batch=_col(_time))
    if base == "year":
        return Cast(name, "smallint", _nullable(_int), batch=_col(_int))
    if base == "enum":
        type_name = enum_type_name(table.name, name)
        return Cast(name, type_name, _nullable(_text), batch=_col(_text), enum_values=column.values, why="a PostgreSQL enum")
    if base == "set":
        type_name = enum_type_name(table.name, name)
        return Cast(name, type_name + "[]", _nullable(_set_members), batch=_col(_set_members), enum_values=column.values,
                    why="an array of a PostgreSQL enum")
    if base == "json":
        return Cast(name, "jsonb", _nullable(_json), batch=_col(_json))
    raise CastError(
        f"{table.name}.{name}: no cast rule for the MySQL type {column.source_type}",
        f'Add a cast for it to the profile ([casts] "{table.name}.{name}" = "text" or "bytea"), '
        "or leave the table out (--exclude-tables), or use --layout jsonb.",
        title="Unsupported column type")


def _sqlite_rule(table: SourceTable, column: SourceColumn) -> Cast:
    declared = column.source_type.upper()
    name = column.name
    if "INT" in declared:
        return Cast(name, "bigint", _nullable(_int), batch=_col(_int), why="INTEGER affinity")
    if any(word in declared for word in ("CHAR", "CLOB", "TEXT")):
        return Cast(name, "text", _nullable(_text), batch=_col(_text), why="TEXT affinity")
    if "BLOB" in declared:
        return Cast(name, "bytea", _nullable(_bytes), batch=_col(_bytes), why="BLOB")
    if any(word in declared for word in ("REAL", "FLOA", "DOUB")):
        return Cast(name, "double precision", _nullable(_float), batch=_col(_float), why="REAL affinity")
    if "BOOL" in declared:
        return Cast(name, "boolean", _nullable(_bool), batch=_col(_bool))
    if "DATETIME" in declared or "TIMESTAMP" in declared:
        return Cast(name, "timestamp with time zone", _nullable(_sqlite_datetime), batch=_col(_sqlite_datetime), why="dates stored as text")
    if "DATE" in declared:
        return Cast(name, "date", _nullable(_sqlite_date), batch=_col(_sqlite_date), why="dates stored as text")
    if "TIME" in declared:
        return Cast(name, "time without time zone", _nullable(_time), batch=_col(_time))
    if "DECIMAL" in declared or "NUMERIC" in declared:
        return Cast(name, "numeric", _nullable(_numeric), batch=_col(_numeric))
    if "JSON" in declared:
        return Cast(name, "jsonb", _nullable(_json), batch=_col(_json))
    return Cast(name, "text", _nullable(_text), batch=_col(_text), why="no declared type: text")


#: What an override's type family needs from a source value.
def _override_convert(pg_type: str) -> Convert:
    lowered = pg_type.lower()
    if lowered.endswith("[]"):
        return _set_members
    if lowered in ("text", "character varying") or lowered.startswith(("character", "varchar")):
        return _text
    if lowered == "bytea":
        return _bytes
    if lowered in ("jsonb", "json"):
        return _json
    if lowered == "boolean":
        return _bool
    if lowered in ("smallint", "integer", "bigint"):
        return _int
    if lowered.startswith("numeric"):
        return _numeric
    if lowered in ("real", "double precision"):
        return _float
    if lowered.startswith("timestamp"):
        return lambda v: _mysql_datetime(v) if not isinstance(v, (int, float)) else _sqlite_datetime(v)
    if lowered == "date":
        return lambda v: _mysql_date(v) if not isinstance(v, (int, float)) else _sqlite_date(v)
    if lowered == "interval":
        return _interval
    if lowered.startswith("time"):
        return _time
    # Anything else: the value's text, which the server parses as that type.
    return _text


def casts_for(kind: Kind, table: SourceTable, overrides: Mapping[str, str] | None = None) -> list[Cast]:
    """Each column's cast: an override (already the server's type text) or the rule."""
    if table.document:
        raise InputError(f"{table.name} is a document collection: the typed layout needs columns",
                         "Use --layout jsonb for MongoDB sources.", title="Layout not available")
    rule = _mysql_rule if kind == "mysql" else _sqlite_rule
    chosen: list[Cast] = []
    for column in table.columns:
        override = (overrides or {}).get(f"{table.name}.{column.name}")
        if override:
            fn = _override_convert(override)
            chosen.append(Cast(column.name, override, _nullable(fn), batch=_col(fn), origin="override",
                               why="cast set in the profile"))
        else:
            chosen.append(rule(table, column))
    return chosen


def convert_row(table: SourceTable, casts: list[Cast], row: tuple[Any, ...], *, offset: int = 0) -> tuple[Any, ...]:
    """``row`` (from ``offset`` on: SQLite's implicit rowid comes first) in target types;
    CastError naming the table, column and row when a value does not fit."""
    try:
        return tuple(cast.convert(value) for cast, value in zip(casts, row[offset:], strict=True))
    except (ValueError, TypeError, OverflowError, UnicodeDecodeError, json.JSONDecodeError):
        for cast, value in zip(casts, row[offset:], strict=True):
            try:
                cast.convert(value)
            except (ValueError, TypeError, OverflowError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                shown = value if not isinstance(value, (bytes, bytearray)) else "0x" + bytes(value[:16]).hex()
                raise CastError(
                    f"{table.name}.{cast.column}: {str(shown)[:60]!r} does not fit {cast.pg_type} ({exc})",
                    f'Override the column\'s cast in the profile ([casts] "{table.name}.{cast.column}" = "text"), '
                    "or fix the value on the source, or use --layout jsonb.") from None
        raise




def convert_columns(table: SourceTable, casts: list[Cast], rows: Sequence[tuple[Any, ...]], *,
                    offset: int = 0) -> list[Sequence[Any]]:
    """``convert_row`` over a batch, column by column: ``columns[i][j]`` is row j's value for
    ``casts[i]``. The same values in a fraction of the time (a column that needs nothing is
    passed through after one pass in C over its types; the others take one call per value
    instead of two), with one difference the copy relies on: a ``timestamp with time zone``
    value may come out naive, meaning UTC, where convert_row attaches the zone — in CPython
    3.11 ``datetime.replace(tzinfo=…)`` costs more than the rest of the row together, and
    load.py sends both forms as the same instant. A value that does not fit, or a row not
    as wide as the table, goes the row-by-row way and raises exactly what convert_row raises."""
    width = len(casts) + offset
    if not rows or not casts or set(map(len, rows)) != {width}:
        return _by_rows(table, casts, rows, offset, len(casts))
    columns = list(zip(*rows, strict=True))[offset:]
    try:
        return [(cast.batch or _column(cast.convert))(values) for cast, values in zip(casts, columns, strict=True)]
    except (ValueError, TypeError, OverflowError, UnicodeDecodeError, json.JSONDecodeError):
        return _by_rows(table, casts, rows, offset, len(casts))


def _by_rows(table: SourceTable, casts: list[Cast], rows: Sequence[tuple[Any, ...]], offset: int,
             width: int) -> list[Sequence[Any]]:
    converted = [convert_row(table, casts, row, offset=offset) for row in rows]
    return [list(column) for column in zip(*converted, strict=True)] if converted else [[] for _ in range(width)]
