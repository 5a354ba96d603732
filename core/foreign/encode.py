"""The ``jsonb`` layout's value encoding, compatible with the seed tool's.

Each source row becomes ``(id TEXT, data JSONB, _source_type TEXT, _migrated_at TIMESTAMP)``.
Inside ``data``: integers and floats are JSON numbers (NaN and ±Infinity as the strings
"NaN", "Infinity", "-Infinity", which JSON cannot hold), DECIMAL a string, text a string,
bytes that are UTF-8 a string and other bytes (and any holding a NUL, which jsonb cannot
store in a string) ``{"_type": "binary", "data": "<base64>"}``; NUL is dropped from text,
DATETIME/DATE ``{"_type": "datetime", "value": "YYYY-MM-DDTHH:MM:SS[.ffffff]Z"}`` (a date is
its midnight; an aware value is converted to UTC; a naive one is taken as UTC, as the source
stored it), TIME ``{"_type": "time", "value": "HH:MM:SS[.ffffff]"}`` (a MySQL TIME beyond a
day or negative keeps its sign and hours, "-838:59:59"). A source's own types arrive as
:class:`Special` and become ``{"_type": name, "value": value}`` (MongoDB's objectid,
regex, timestamp, minkey, maxkey).

The same function gives verify its canonical form (``canonical``), so a row reads the same
whether it was encoded from the source or decoded from the target.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from json.encoder import encode_basestring  # what json.dumps(ensure_ascii=False) quotes str with
from typing import Any


@dataclass(frozen=True)
class Special:
    """A source-specific value the adapter has already reduced to JSON-able parts."""

    type: str
    value: Any = None


def _utc_text(value: dt.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat() + "Z"


def time_text(value: dt.time | dt.timedelta) -> str:
    if isinstance(value, dt.time):
        return value.replace(tzinfo=None).isoformat()
    total = value.days * 86400 + value.seconds
    sign = "-" if total < 0 or (total == 0 and value.microseconds < 0) else ""
    if value < dt.timedelta(0):
        value = -value
        total = value.days * 86400 + value.seconds
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    fraction = f".{value.microseconds:06d}" if value.microseconds else ""
    return f"{sign}{hours:02d}:{minutes:02d}:{seconds:02d}{fraction}"


def encode_value(value: Any) -> Any:
    """One source value as the JSON value the seed layout stores."""
    if isinstance(value, str):
        # jsonb cannot hold NUL; pgloader strips it from text, and so does the seed layout.
        return value.replace("\x00", "") if "\x00" in value else value
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        # Bytes holding NUL (a BIT column's zero bits) go as binary: a string would lose them.
        if text is None or "\x00" in text:
            return {"_type": "binary", "data": base64.b64encode(raw).decode("ascii")}
        return text
    if isinstance(value, dt.datetime):
        return {"_type": "datetime", "value": _utc_text(value)}
    if isinstance(value, dt.date):
        return {"_type": "datetime", "value": _utc_text(dt.datetime(value.year, value.month, value.day))}
    if isinstance(value, (dt.time, dt.timedelta)):
        return {"_type": "time", "value": time_text(value)}
    if isinstance(value, Special):
        return {"_type": value.type, "value": encode_value(value.value)}
    if isinstance(value, dict):
        return {str(k).replace("\x00", ""): encode_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_value(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(encode_value(v) for v in value)
    raise TypeError(f"no jsonb encoding for a {type(value).__name__} value")


def encode_id(value: Any) -> str:
    """The ``id`` column's text: a Special's value (an ObjectId's hex), a number's digits,
    bytes as hex when they are not UTF-8."""
    if isinstance(value, Special):
        value = value.value
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.hex()
    if isinstance(value, dt.datetime):
        return _utc_text(value)
    return str(value)


def document(columns: tuple[str, ...], row: tuple[Any, ...]) -> dict[str, Any]:
    """A SQL row as the seed's ``data`` object (column names as keys, in table order)."""
    return {name: encode_value(value) for name, value in zip(columns, row, strict=True)}


#: dumps' encoder, made once (json.dumps with options builds a new one for every call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_NONE = type(None)
_NAIVE_DATETIME = '{"_type":"datetime","value":"%sZ"}'
_SPECIAL_FLOATS = {"NaN": '"NaN"', "Infinity": '"Infinity"', "-Infinity": '"-Infinity"'}


def _json_texts(values: Sequence[Any]) -> list[str]:
    """Each value's JSON text as ``dumps(encode_value(value))`` writes it, before its NUL rule;
    the common column types without a Python call per value."""
    kinds = set(map(type, values))
    if str in kinds and any("\x00" in v for v in values if type(v) is str):
        values = [v.replace("\x00", "") if type(v) is str else v for v in values]
    if kinds <= {str}:
        return list(map(encode_basestring, values))
    if kinds <= {int}:
        return list(map(int.__repr__, values))
    if kinds <= {str, _NONE}:
        return ["null" if v is None else encode_basestring(v) for v in values]
    if kinds <= {int, _NONE}:
        return ["null" if v is None else int.__repr__(v) for v in values]
    if kinds <= {float, int, _NONE}:
        return ["null" if v is None else float.__repr__(v) if type(v) is float and math.isfinite(v)
                else int.__repr__(v) if type(v) is int else _SPECIAL_FLOATS[encode_value(v)] for v in values]
    if kinds <= {Decimal, _NONE}:
        return ["null" if v is None else '"' + str(v) + '"' for v in values]  # digits, sign, "." "E" "NaN"…
    if kinds <= {dt.datetime, _NONE} and not any(v.tzinfo for v in values if v is not None):
        # A naive value is taken as UTC (_utc_text): its isoformat and a Z, nothing to escape.
        return ["null" if v is None else _NAIVE_DATETIME % v.isoformat() for v in values]
    return [_ENCODER.encode(encode_value(v)) for v in values]


def documents(columns: tuple[str, ...], values: Sequence[Sequence[Any]], rows: int) -> list[str]:
    """``dumps(document(columns, row))`` for each of ``rows`` rows given column by column
    (``values[i][j]``: row j's value of column i): the same text, built a column at a time."""
    if len(values) != len(columns):
        raise ValueError(f"{len(values)} columns of values for {len(columns)} names")
    if not columns:
        return ["{}"] * rows
    template = "{" + ",".join(encode_basestring(name).replace("%", "%%") + ":%s" for name in columns) + "}"
    return [template % parts for parts in zip(*map(_json_texts, values), strict=True)]


def dumps(data: Any) -> str:
    """JSON text for the ``data`` column (allow_nan off: encode_value already made NaN a string,
    and dropped NUL from strings: jsonb refuses it). The text is never edited afterwards: a
    string holding a backslash and "u0000" is data, not an escape."""
    return _ENCODER.encode(data)


def canonical(data: Any) -> str:
    """The comparison form verify hashes: key order and spacing fixed."""
    return json.dumps(data, ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":"))
