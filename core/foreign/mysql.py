"""MySQL 8 and MariaDB 10.x as a foreign source: catalog, consistent snapshot reads, binlog changes.

Drivers (chosen by measurement, tests/benchmarks/mysql_driver_bench.py): SQL runs through
mysqlclient (``MySQLdb``, C, ~3× PyMySQL's read speed) when it is installed, else through
PyMySQL (pure Python, a wheel: the ``[mysql]`` extra). mysql-connector-python's C extension
is not used: its wheel links a vendored OpenSSL ≥ 3.2 that cannot load once Python's ``ssl``
has loaded the system's (Debian 12: 3.0), which psycopg always does first — so in pgtide it
would only ever run as its pure-Python fallback, the slowest of all. The binlog is read by
this module's own reader over a PyMySQL connection (the replication protocol is PyMySQL's
packet layer plus COM_BINLOG_DUMP): python-mysql-replication's row decoding turns zero dates
into None, BIT into "0101" text, SET into Python sets and MariaDB's untyped blobs into
guesses, so the values it yields could not equal the snapshot's.

Values, identical from ``rows()`` and ``changes()``: int, float (FLOAT as the server prints
it: 6 significant digits), Decimal, str (text columns, decoded from their character set),
bytes (binary strings, BLOB, BIT), naive datetime (DATETIME as stored; TIMESTAMP in UTC: every
read session runs with time_zone '+00:00'), date, timedelta (TIME; negative or past 24 h),
int (YEAR), str for zero and partial-zero dates exactly as the server prints them, str for
ENUM, SET ("a,b", declaration order) and JSON (its text), None.

One snapshot is one connection, read from one thread, one table after another: neither
MariaDB nor MySQL can share a transaction's snapshot with another connection (there is no
snapshot export like PostgreSQL's), so parallel readers would each see a different instant
and the binlog position would fit none of them. Keyed tables are read in keyset batches
(``WHERE key > last ORDER BY key LIMIT n``; as fast as one streamed SELECT in the benchmark,
and no result is left half-read between batches); keyless ones by one unbuffered SELECT.

Every SQL session this module opens has no multi-statement capability, backslash escapes on
(NO_BACKSLASH_ESCAPES is removed from its sql_mode, so our own literals quote safely — and a
user's filter literal reads backslashes as escapes), utf8mb4, and time_zone '+00:00'.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import importlib
import json
import random
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from decimal import Decimal
from types import ModuleType
from typing import Any

from ..infra.errors import ConnectError, EnvironmentProblem, InputError, MigrationFailed
from .endpoint import ForeignEndpoint
from .source import CaptureCheck, Change, Kind, Row, SourceColumn, SourceForeignKey, SourceIndex, SourceTable

__all__ = ["MySQLSource", "SourceSchemaChanged", "open_mysql", "quote_ident"]

INSTALL_REMEDY = "Install the MySQL/MariaDB driver: pip install 'pgtide[mysql]'."
#: Seconds to reach the server and finish the handshake.
CONNECT_TIMEOUT = 10
#: Seconds one read may wait on a SQL session (a long COUNT or a big batch), and on the binlog
#: stream (which gets a heartbeat every HEARTBEAT seconds when the server is idle).
READ_TIMEOUT = 3600
BINLOG_READ_TIMEOUT = 30
HEARTBEAT = 0.5
#: While the watched tables are quiet and others are busy, the stream still gives the position
#: it has read up to this often (a checkpoint change: no table, no row), so a restart never
#: needs binlog files older than that.
CHECKPOINT_SECONDS = 10.0
_NON_TRANSACTIONAL = {"MYISAM", "ARIA", "MEMORY", "CSV", "ARCHIVE", "MRG_MYISAM", "MERGE", "BLACKHOLE"}
_BASE_TABLE_TYPES = ("BASE TABLE", "SYSTEM VERSIONED")


class SourceSchemaChanged(MigrationFailed):
    """A watched table's structure changed (or it was dropped, renamed, truncated) in the binlog."""

    def __init__(self, table: str, statement: str) -> None:
        self.table = table
        super().__init__(
            f"table {table!r} changed on the source ({statement[:120]!r}): its rows can no longer be followed",
            f"Run init again for {table!r} to copy it anew with its new structure; the other tables keep syncing "
            "once it is excluded or re-initialised.",
            title="Source table changed")


def quote_ident(name: str) -> str:
    """A MySQL identifier in backticks, backticks doubled: the only way a name enters SQL."""
    return "`" + name.replace("`", "``") + "`"


# -- drivers ---------------------------------------------------------------------------------------


def _import_pymysql() -> ModuleType:
    try:
        pymysql = importlib.import_module("pymysql")
    except ImportError:
        raise EnvironmentProblem("the MySQL/MariaDB driver (PyMySQL) is not installed", INSTALL_REMEDY,
                                 title="Driver missing") from None
    return pymysql


def _import_mysqlclient() -> ModuleType | None:
    try:
        MySQLdb = importlib.import_module("MySQLdb")
    except ImportError:
        return None
    return MySQLdb


def _zero_date_tolerant(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """mysqlclient turns a date it cannot represent into None; the contract wants the server's text."""

    def decode(raw: Any) -> Any:
        value = convert(raw)
        if value is None:
            return raw.decode("ascii") if isinstance(raw, bytes) else raw
        return value

    return decode


class _Driver:
    """The few places the two DB-API drivers differ: connecting, the streaming cursor, errors."""

    def __init__(self, prefer_fast: bool = True) -> None:
        fast = _import_mysqlclient() if prefer_fast else None
        self.pymysql = _import_pymysql()
        self.module = fast or self.pymysql
        self.name = "mysqlclient" if fast is not None else "PyMySQL"
        self.Error: type[Exception] = self.module.Error
        self._conv: dict[int, Any] | None = None
        if fast is not None:
            # Imported by name: neither driver ships type stubs, and core is type-checked strictly.
            FIELD_TYPE = importlib.import_module("MySQLdb.constants.FIELD_TYPE")
            conv = dict(importlib.import_module("MySQLdb.converters").conversions)
            for field in (FIELD_TYPE.DATE, FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP):
                if field in conv:
                    conv[field] = _zero_date_tolerant(conv[field])
            self._conv = conv

    def connect(self, endpoint: ForeignEndpoint, password: str | None, database: str | None,
                read_timeout: int = READ_TIMEOUT) -> Any:
        options: dict[str, Any] = {"host": endpoint.host, "port": endpoint.port, "user": endpoint.user,
                                   "password": password or "", "charset": "utf8mb4",
                                   "connect_timeout": CONNECT_TIMEOUT, "read_timeout": read_timeout,
                                   "write_timeout": READ_TIMEOUT, "autocommit": True}
        if database is not None:
            options["database"] = database
        if self._conv is not None:
            options["conv"] = self._conv
            options["multi_statements"] = False
        return self.module.connect(**options)

    def streaming_cursor(self, conn: Any) -> Any:
        if self._conv is not None:
            return conn.cursor(importlib.import_module("MySQLdb.cursors").SSCursor)
        return conn.cursor(importlib.import_module("pymysql.cursors").SSCursor)


def _error_code(exc: BaseException) -> int:
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    return args[0] if args and isinstance(args[0], int) else 0


def _error_text(exc: BaseException) -> str:
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    if len(args) >= 2:
        return str(args[1])
    return str(exc)


def _connect_failure(endpoint: ForeignEndpoint, exc: BaseException) -> Exception:
    code, text = _error_code(exc), endpoint.redact(_error_text(exc))
    where = f"{endpoint.host}:{endpoint.port}"
    if code in (1045, 1698, 1251, 2059):
        return ConnectError(
            f"{where} refused the login of {endpoint.user or '(no user)'!r}: {text}",
            "Check the user name and its password (pgtide asks for it, or reads the OS keyring or "
            "PGTIDE_SOURCE_PASSWORD), and that the account may log in from this host "
            "(CREATE USER 'name'@'this-host' …).", title="Login refused")
    if code == 1049:
        return InputError(f"there is no database {endpoint.database!r} on {where}",
                          "Check the database name at the end of the source URL (names are case-sensitive "
                          "on Linux servers).", title="Unknown database")
    if code == 1044:
        return ConnectError(f"{endpoint.user!r} may not use database {endpoint.database!r} on {where}: {text}",
                            f"GRANT SELECT ON {quote_ident(endpoint.database)}.* TO the user on the source.",
                            title="Access denied")
    return ConnectError(f"cannot reach the MySQL/MariaDB server at {where}: {text}",
                        "Check the host and port in the source URL, that the server is running and accepts TCP "
                        "connections there (bind-address, firewall).")


def _session_setup(cursor: Any) -> None:
    cursor.execute("SET SESSION time_zone = '+00:00', "
                   "SESSION sql_mode = REPLACE(@@SESSION.sql_mode, 'NO_BACKSLASH_ESCAPES', ''), "
                   "SESSION net_write_timeout = 3600")


# -- the user's row filter -------------------------------------------------------------------------


def _filter_problem(text: str) -> str | None:
    """Why ``text`` cannot be a WHERE condition placed in parentheses, or None.

    It must be one balanced expression: no ';', no NUL, quotes and comments closed, no
    executable comment (``/*! … */`` runs its content as SQL), parentheses balanced outside
    quotes and comments, so it can neither close the parentheses we put around it nor end
    the statement. The server still parses it (check_filter prepares it), and our sessions
    have no multi-statement capability."""
    if "\0" in text:
        return "it contains a NUL character"
    depth, i, n = 0, 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "'\"`":
            j = i + 1
            while j < n:
                if ch != "`" and text[j] == "\\":
                    j += 2
                    continue
                if text[j] == ch:
                    if j + 1 < n and text[j + 1] == ch:
                        j += 2
                        continue
                    break
                j += 1
            if j >= n:
                return f"a {ch} quote is never closed"
            i = j + 1
            continue
        if text.startswith("/*", i):
            if text.startswith(("/*!", "/*M!", "/*+"), i):
                return "it contains an executable comment (/*! … */ or /*M! … */ or a /*+ hint)"
            end = text.find("*/", i + 2)
            if end < 0:
                return "a /* comment is never closed"
            i = end + 2
            continue
        if text.startswith("*/", i):
            return "it closes a comment it never opened (*/)"
        if ch == "#" or (text.startswith("--", i) and (i + 2 == n or text[i + 2] in " \t\r\n\f\v")):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if ch == ";":
            return "it contains ';' (a filter is one condition, not statements)"
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return "a ')' closes a parenthesis the filter did not open"
        i += 1
    if depth:
        return "its parentheses are not balanced"
    return None


# -- catalog ---------------------------------------------------------------------------------------


def _parse_members(column_type: str) -> tuple[str, ...]:
    """ENUM/SET members from COLUMN_TYPE: quoted, '' for a quote, backslash escapes doubled."""
    start = column_type.find("(")
    body = column_type[start + 1:column_type.rfind(")")] if start >= 0 else ""
    members: list[str] = []
    escapes = {"0": "\0", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a", "b": "\b"}
    i, n = 0, len(body)
    while i < n:
        if body[i] != "'":
            i += 1
            continue
        i += 1
        chars: list[str] = []
        while i < n:
            ch = body[i]
            if ch == "\\" and i + 1 < n:
                chars.append(escapes.get(body[i + 1], body[i + 1]))
                i += 2
                continue
            if ch == "'":
                if i + 1 < n and body[i + 1] == "'":
                    chars.append("'")
                    i += 2
                    continue
                i += 1
                break
            chars.append(ch)
            i += 1
        members.append("".join(chars))
    return tuple(members)


@dataclass(frozen=True)
class _ColumnInfo:
    """What decoding a binlog value needs beyond SourceColumn: the character set and octet length."""

    name: str
    base: str
    charset: str | None
    octets: int | None
    unsigned: bool
    values: tuple[str, ...]
    fsp: int


_INT_BASES = {"tinyint", "smallint", "mediumint", "int", "integer", "bigint"}
_TEXT_BASES = {"char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set", "json"}
_TEMPORAL = {"date", "datetime", "timestamp", "time", "year"}


def _column(row: dict[str, Any], json_columns: set[str]) -> tuple[SourceColumn, _ColumnInfo]:
    column_type = str(row["COLUMN_TYPE"])
    base = str(row["DATA_TYPE"]).lower()
    name = str(row["COLUMN_NAME"])
    if name in json_columns and base == "longtext":
        # MariaDB's JSON is LONGTEXT with a json_valid() check: say what it was declared as.
        base = "json"
    unsigned = " unsigned" in column_type.lower()
    length: int | None = None
    scale: int | None = None
    if base in _INT_BASES:
        width = re.match(r"^\w+\((\d+)\)", column_type)
        length = int(width.group(1)) if width else None
    elif base in ("decimal", "numeric", "bit"):
        length = int(row["NUMERIC_PRECISION"]) if row["NUMERIC_PRECISION"] is not None else None
        scale = int(row["NUMERIC_SCALE"]) if base != "bit" and row["NUMERIC_SCALE"] is not None else None
    elif row["CHARACTER_MAXIMUM_LENGTH"] is not None and base not in ("enum", "set"):
        length = int(row["CHARACTER_MAXIMUM_LENGTH"])
    fsp = int(row["DATETIME_PRECISION"] or 0) if base in _TEMPORAL else 0
    if base in ("datetime", "timestamp", "time"):
        # The fractional-second digits, for a typed target's timestamp(n)/time(n).
        scale = fsp
    values = _parse_members(column_type) if base in ("enum", "set") else ()
    default = row["COLUMN_DEFAULT"]
    if default is not None and str(default).upper() == "NULL":
        default = None  # MariaDB spells "no default / default NULL" as the text NULL
    charset = row["CHARACTER_SET_NAME"]
    source = SourceColumn(
        name=name, source_type=column_type, nullable=str(row["IS_NULLABLE"]).upper() == "YES", base=base,
        unsigned=unsigned, length=length, scale=scale, values=values,
        auto_increment="auto_increment" in str(row["EXTRA"] or "").lower(),
        default=None if default is None else str(default))
    octets = row["CHARACTER_OCTET_LENGTH"]
    info = _ColumnInfo(name=name, base=base, charset=str(charset) if charset else None,
                       octets=int(octets) if octets is not None else None, unsigned=unsigned, values=values, fsp=fsp)
    return source, info


# -- binlog value decoding ---------------------------------------------------------------------------

_T_DECIMAL, _T_TINY, _T_SHORT, _T_LONG, _T_FLOAT, _T_DOUBLE, _T_NULL, _T_TIMESTAMP = 0, 1, 2, 3, 4, 5, 6, 7
_T_LONGLONG, _T_INT24, _T_DATE, _T_TIME, _T_DATETIME, _T_YEAR, _T_NEWDATE, _T_VARCHAR = 8, 9, 10, 11, 12, 13, 14, 15
_T_BIT, _T_TIMESTAMP2, _T_DATETIME2, _T_TIME2 = 16, 17, 18, 19
_T_JSON, _T_NEWDECIMAL, _T_ENUM, _T_SET = 245, 246, 247, 248
_T_TINY_BLOB, _T_MEDIUM_BLOB, _T_LONG_BLOB, _T_BLOB, _T_VAR_STRING, _T_STRING, _T_GEOMETRY = (
    249, 250, 251, 252, 253, 254, 255)

_DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)

#: Character sets as Python codecs (MySQL's latin1 is Windows-1252).
_CODECS = {"utf8mb4": "utf-8", "utf8mb3": "utf-8", "utf8": "utf-8", "latin1": "cp1252", "ascii": "ascii",
           "ucs2": "utf-16-be", "utf16": "utf-16-be", "utf16le": "utf-16-le", "utf32": "utf-32-be",
           "cp1250": "cp1250", "cp1251": "cp1251", "cp1256": "cp1256", "cp1257": "cp1257", "cp850": "cp850",
           "cp852": "cp852", "cp866": "cp866", "koi8r": "koi8-r", "koi8u": "koi8-u", "latin2": "iso8859-2",
           "latin5": "iso8859-9", "latin7": "iso8859-13", "greek": "iso8859-7", "hebrew": "iso8859-8",
           "sjis": "shift_jis", "cp932": "cp932", "ujis": "euc_jp", "eucjpms": "euc_jp", "gbk": "gbk",
           "gb2312": "gb2312", "gb18030": "gb18030", "big5": "big5", "euckr": "euc_kr", "tis620": "tis-620"}


def _codec(charset: str | None) -> str | None:
    """None for binary strings (bytes); the codec of a text column otherwise."""
    if charset is None or charset == "binary":
        return None
    return _CODECS.get(charset, "utf-8")


def _decimal(buf: bytes, pos: int, precision: int, scale: int) -> tuple[Decimal, int]:
    intg = precision - scale
    intg0, intg0x = divmod(intg, 9)
    frac0, frac0x = divmod(scale, 9)
    size = intg0 * 4 + _DIG2BYTES[intg0x] + frac0 * 4 + _DIG2BYTES[frac0x]
    raw = bytearray(buf[pos:pos + size])
    negative = not raw[0] & 0x80
    raw[0] ^= 0x80
    if negative:
        raw = bytearray(b ^ 0xFF for b in raw)
    at = 0
    whole = ""
    if intg0x:
        n = _DIG2BYTES[intg0x]
        whole = str(int.from_bytes(raw[at:at + n], "big"))
        at += n
    for _ in range(intg0):
        whole += f"{int.from_bytes(raw[at:at + 4], 'big'):09d}"
        at += 4
    frac = ""
    for _ in range(frac0):
        frac += f"{int.from_bytes(raw[at:at + 4], 'big'):09d}"
        at += 4
    if frac0x:
        n = _DIG2BYTES[frac0x]
        frac += str(int.from_bytes(raw[at:at + n], "big")).zfill(frac0x)
    text = ("-" if negative else "") + (whole.lstrip("0") or "0") + ("." + frac if scale else "")
    return Decimal(text), pos + size


def _fraction(buf: bytes, pos: int, fsp: int) -> tuple[int, int]:
    """(microseconds, new pos) of a temporal2 value's fractional part (big-endian, unsigned)."""
    size = (fsp + 1) // 2
    if not size:
        return 0, pos
    value = int.from_bytes(buf[pos:pos + size], "big")
    return value * (10 ** (6 - 2 * size)), pos + size


def _date_text(year: int, month: int, day: int) -> str:
    return f"{year:04d}-{month:02d}-{day:02d}"


def _datetime_value(year: int, month: int, day: int, hour: int, minute: int, second: int, micro: int,
                    fsp: int) -> dt.datetime | str:
    try:
        if year == 0 or month == 0 or day == 0:
            raise ValueError("zero date")
        return dt.datetime(year, month, day, hour, minute, second, micro)
    except ValueError:
        text = f"{_date_text(year, month, day)} {hour:02d}:{minute:02d}:{second:02d}"
        return text + ("." + f"{micro:06d}"[:fsp] if fsp else "")


def _float32(raw: float) -> float:
    """A FLOAT as the server prints it (6 significant digits), so binlog and SELECT agree."""
    if raw != raw or raw in (float("inf"), float("-inf")):
        return raw
    return float(f"{raw:.6g}")


class _Decoder:
    """Decodes one table's row images, given its TABLE_MAP column types/metadata and its columns."""

    def __init__(self, table: str, types: bytes, meta: list[int], infos: Sequence[_ColumnInfo]) -> None:
        self.table = table
        self.types = types
        self.meta = meta
        self.infos = infos
        self.codecs = [_codec(info.charset) for info in infos]

    def row(self, buf: bytes, pos: int, present: list[bool]) -> tuple[Row, int]:
        count = sum(present)
        null_bytes = (count + 7) // 8
        nulls = buf[pos:pos + null_bytes]
        pos += null_bytes
        values: list[Any] = []
        seen = 0
        for index, is_present in enumerate(present):
            if not is_present:
                values.append(None)
                continue
            if nulls[seen >> 3] & (1 << (seen & 7)):
                values.append(None)
            else:
                value, pos = self.value(index, buf, pos)
                values.append(value)
            seen += 1
        return tuple(values), pos

    def value(self, index: int, buf: bytes, pos: int) -> tuple[Any, int]:
        kind, meta, info = self.types[index], self.meta[index], self.infos[index]
        unsigned = info.unsigned
        if kind == _T_TINY:
            return int.from_bytes(buf[pos:pos + 1], "little", signed=not unsigned), pos + 1
        if kind == _T_SHORT:
            return int.from_bytes(buf[pos:pos + 2], "little", signed=not unsigned), pos + 2
        if kind == _T_INT24:
            return int.from_bytes(buf[pos:pos + 3], "little", signed=not unsigned), pos + 3
        if kind == _T_LONG:
            return int.from_bytes(buf[pos:pos + 4], "little", signed=not unsigned), pos + 4
        if kind == _T_LONGLONG:
            return int.from_bytes(buf[pos:pos + 8], "little", signed=not unsigned), pos + 8
        if kind == _T_FLOAT:
            return _float32(struct.unpack_from("<f", buf, pos)[0]), pos + 4
        if kind == _T_DOUBLE:
            return struct.unpack_from("<d", buf, pos)[0], pos + 8
        if kind == _T_NEWDECIMAL:
            return _decimal(buf, pos, meta >> 8, meta & 0xFF)
        if kind == _T_YEAR:
            year = buf[pos]
            return (year + 1900 if year else 0), pos + 1
        if kind in (_T_DATE, _T_NEWDATE):
            packed = int.from_bytes(buf[pos:pos + 3], "little")
            day, month, year = packed & 31, (packed >> 5) & 15, packed >> 9
            try:
                if not (year and month and day):
                    raise ValueError("zero date")
                return dt.date(year, month, day), pos + 3
            except ValueError:
                return _date_text(year, month, day), pos + 3
        if kind == _T_DATETIME2:
            packed = int.from_bytes(buf[pos:pos + 5], "big") - 0x8000000000
            micro, end = _fraction(buf, pos + 5, meta)
            ymd, hms = packed >> 17, packed % (1 << 17)
            ym = ymd >> 5
            return _datetime_value(ym // 13, ym % 13, ymd % 32, hms >> 12, (hms >> 6) % 64, hms % 64, micro,
                                   meta), end
        if kind == _T_TIMESTAMP2:
            seconds = int.from_bytes(buf[pos:pos + 4], "big")
            micro, end = _fraction(buf, pos + 4, meta)
            if seconds == 0 and micro == 0:
                return _datetime_value(0, 0, 0, 0, 0, 0, 0, meta), end
            return dt.datetime(1970, 1, 1) + dt.timedelta(seconds=seconds, microseconds=micro), end
        if kind == _T_TIME2:
            return self._time2(buf, pos, meta)
        if kind == _T_TIMESTAMP:
            seconds = int.from_bytes(buf[pos:pos + 4], "little")
            if seconds == 0:
                return _datetime_value(0, 0, 0, 0, 0, 0, 0, 0), pos + 4
            return dt.datetime(1970, 1, 1) + dt.timedelta(seconds=seconds), pos + 4
        if kind == _T_DATETIME:
            packed = int.from_bytes(buf[pos:pos + 8], "little")
            date, clock = divmod(packed, 1000000)
            return _datetime_value(date // 10000, (date // 100) % 100, date % 100, clock // 10000,
                                   (clock // 100) % 100, clock % 100, 0, 0), pos + 8
        if kind == _T_TIME:
            packed = int.from_bytes(buf[pos:pos + 3], "little", signed=True)
            sign = -1 if packed < 0 else 1
            packed = abs(packed)
            return sign * dt.timedelta(hours=packed // 10000, minutes=(packed // 100) % 100,
                                       seconds=packed % 100), pos + 3
        if kind == _T_BIT:
            size = (meta >> 8) + (1 if meta & 0xFF else 0)
            return bytes(buf[pos:pos + size]), pos + size
        if kind in (_T_VARCHAR, _T_VAR_STRING):
            width = 1 if meta < 256 else 2
            size = int.from_bytes(buf[pos:pos + width], "little")
            pos += width
            return self._text(index, bytes(buf[pos:pos + size])), pos + size
        if kind == _T_STRING:
            real, length = meta >> 8, meta & 0xFF
            if real & 0x30 != 0x30:
                length += ((real & 0x30) ^ 0x30) << 4
                real |= 0x30
            if real == _T_ENUM:
                code = int.from_bytes(buf[pos:pos + length], "little")
                return (info.values[code - 1] if 0 < code <= len(info.values) else ""), pos + length
            if real == _T_SET:
                mask = int.from_bytes(buf[pos:pos + length], "little")
                return ",".join(v for bit, v in enumerate(info.values) if mask >> bit & 1), pos + length
            width = 1 if length < 256 else 2
            size = int.from_bytes(buf[pos:pos + width], "little")
            pos += width
            raw = bytes(buf[pos:pos + size])
            if self.codecs[index] is None and info.octets and len(raw) < info.octets:
                raw = raw.ljust(info.octets, b"\0")  # BINARY(n): the binlog drops its trailing 0x00 pad
            return self._text(index, raw), pos + size
        if kind in (_T_BLOB, _T_GEOMETRY, _T_TINY_BLOB, _T_MEDIUM_BLOB, _T_LONG_BLOB):
            size = int.from_bytes(buf[pos:pos + meta], "little")
            pos += meta
            raw = bytes(buf[pos:pos + size])
            if kind == _T_GEOMETRY:
                return raw, pos + size
            return self._text(index, raw), pos + size
        if kind == _T_JSON:
            size = int.from_bytes(buf[pos:pos + meta], "little")
            pos += meta
            return _mysql_json_text(bytes(buf[pos:pos + size])), pos + size
        raise MigrationFailed(f"the binlog holds a value of MySQL type {kind} in {self.table}.{info.name}, "
                              "which pgtide cannot decode",
                              "Exclude the table from sync (copy it with --refresh-every), and report the type.")

    def _text(self, index: int, raw: bytes) -> Any:
        codec = self.codecs[index]
        if codec is None:
            return raw
        text = raw.decode(codec, errors="replace")
        if self.infos[index].base == "char":
            text = text.rstrip(" ")  # as SELECT returns CHAR (PAD_CHAR_TO_FULL_LENGTH off)
        return text

    @staticmethod
    def _time2(buf: bytes, pos: int, fsp: int) -> tuple[dt.timedelta, int]:
        intpart = int.from_bytes(buf[pos:pos + 3], "big") - 0x800000
        size = (fsp + 1) // 2
        frac = int.from_bytes(buf[pos + 3:pos + 3 + size], "big") if size else 0
        if intpart < 0 and frac:
            intpart += 1
            frac -= 1 << (8 * size)
        micro = frac * (10 ** (6 - 2 * size)) if size else 0
        packed = (intpart << 24) + micro
        negative = packed < 0
        packed = abs(packed)
        hms, micro = packed >> 24, packed % (1 << 24)
        value = dt.timedelta(hours=(hms >> 12) % 1024, minutes=(hms >> 6) % 64, seconds=hms % 64,
                             microseconds=micro)
        return (-value if negative else value), pos + 3 + size


def _mysql_json_text(raw: bytes) -> str:
    """MySQL 8's binary JSON (the binlog's form of a JSON column) as the JSON text SELECT shows."""
    if not raw:
        return "null"
    value = _json_value(raw[0], raw, 1, len(raw))
    return json.dumps(value, ensure_ascii=False)


def _json_value(kind: int, buf: bytes, pos: int, end: int) -> Any:
    if kind in (0x00, 0x01, 0x02, 0x03):
        large = kind in (0x01, 0x03)
        return _json_container(buf[pos:end], large, is_object=kind in (0x00, 0x01))
    if kind == 0x04:
        return {0: None, 1: True, 2: False}[buf[pos]]
    ints = {0x05: ("<h", 2), 0x06: ("<H", 2), 0x07: ("<i", 4), 0x08: ("<I", 4), 0x09: ("<q", 8),
            0x0A: ("<Q", 8), 0x0B: ("<d", 8)}
    if kind in ints:
        return struct.unpack_from(ints[kind][0], buf, pos)[0]
    if kind == 0x0C:
        size, pos = _json_varlen(buf, pos)
        return buf[pos:pos + size].decode("utf-8")
    if kind == 0x0F:
        field_type = buf[pos]
        size, at = _json_varlen(buf, pos + 1)
        data = buf[at:at + size]
        if field_type == _T_NEWDECIMAL:
            number, _ = _decimal(data, 2, data[0], data[1])
            return float(number) if number != number.to_integral_value() else int(number)
        return f"base64:type{field_type}:{base64.b64encode(data).decode('ascii')}"
    raise ValueError(f"unknown JSON value type {kind}")


def _json_varlen(buf: bytes, pos: int) -> tuple[int, int]:
    size, shift = 0, 0
    while True:
        byte = buf[pos]
        pos += 1
        size |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return size, pos
        shift += 7


def _json_container(buf: bytes, large: bool, *, is_object: bool) -> Any:
    width = 4 if large else 2
    fmt = "<I" if large else "<H"
    count = struct.unpack_from(fmt, buf, 0)[0]
    at = 2 * width
    keys: list[str] = []
    if is_object:
        for _ in range(count):
            offset = struct.unpack_from(fmt, buf, at)[0]
            length = struct.unpack_from("<H", buf, at + width)[0]
            keys.append(buf[offset:offset + length].decode("utf-8"))
            at += width + 2
    values: list[Any] = []
    for _ in range(count):
        kind = buf[at]
        inline = kind in (0x04, 0x05, 0x06) or (large and kind in (0x07, 0x08))
        if inline:
            values.append(_json_value(kind, buf, at + 1, len(buf)))
        else:
            offset = struct.unpack_from(fmt, buf, at + 1)[0]
            values.append(_json_value(kind, buf, offset, len(buf)))
        at += 1 + width
    return dict(zip(keys, values, strict=True)) if is_object else values


# -- DDL in the binlog ---------------------------------------------------------------------------------

_TOKEN = re.compile(r"""`((?:[^`]|``)*)`|"((?:[^"\\]|\\.|"")*)"|'(?:[^'\\]|\\.|'')*'|/\*.*?\*/|(?:--\s|\#)[^\n]*|"""
                    r"""([A-Za-z0-9_$\u0080-\uffff]+)|(\S)""", re.DOTALL)


def _statement_tokens(sql: str) -> list[tuple[str, str]]:
    """(kind, text): kind 'word' (unquoted, upper-cased), 'name' (backquoted), or 'punct'."""
    tokens: list[tuple[str, str]] = []
    for match in _TOKEN.finditer(sql):
        quoted, _dq, word, punct = match.group(1), match.group(2), match.group(3), match.group(4)
        if quoted is not None:
            tokens.append(("name", quoted.replace("``", "`")))
        elif word is not None:
            tokens.append(("word", word))
        elif punct is not None:
            tokens.append(("punct", punct))
    return tokens


def _touched_tables(sql: str, default_db: str) -> tuple[str, list[tuple[str, str]]] | None:
    """For a statement that can change a table's structure or contents outside row events,
    (verb, [(db, table)…]) of the tables it names; None for transaction control and the rest."""
    tokens = _statement_tokens(sql)
    if not tokens or tokens[0][0] != "word":
        return None
    verb = tokens[0][1].upper()
    words = [text.upper() if kind == "word" else None for kind, text in tokens]

    def after(*markers: str, skip: tuple[str, ...] = ("IF", "NOT", "EXISTS")) -> int:
        start = next((i + 1 for i, w in enumerate(words) if w in markers), len(words))
        while start < len(words) and words[start] in skip:
            start += 1
        return start

    head = words[:6]
    if verb in ("ALTER", "CREATE"):
        # ALTER TABLE <t>, CREATE [OR REPLACE] TABLE <t>, CREATE … INDEX … ON <t>: a view, a
        # trigger or a table made LIKE a watched one changes nothing of it.
        if verb == "CREATE" and "INDEX" in head and "ON" in words:
            return verb, _names(tokens, after("ON"), default_db, limit=1)
        if "TABLE" in head:
            return verb, _names(tokens, after("TABLE"), default_db, limit=1)
        return None
    if verb == "DROP":
        if "INDEX" in head and "ON" in words:
            return verb, _names(tokens, after("ON"), default_db, limit=1)
        if "TABLE" in head or "TABLES" in head:
            return verb, _names(tokens, after("TABLE", "TABLES"), default_db)
        return None
    if verb == "TRUNCATE":
        return verb, _names(tokens, after("TRUNCATE", skip=("TABLE",)), default_db, limit=1)
    if verb in ("RENAME", "INSERT", "UPDATE", "DELETE", "REPLACE", "LOAD"):
        # RENAME TABLE a TO b, …; a data change logged as a statement (a session running with
        # binlog_format=STATEMENT) cannot be decoded into rows either.
        return verb, _names(tokens, 1, default_db)
    return None


def _names(tokens: list[tuple[str, str]], start: int, default_db: str, limit: int | None = None) -> list[tuple[str, str]]:
    names: list[tuple[str, str]] = []
    i = start
    while i < len(tokens) and (limit is None or len(names) < limit):
        kind, text = tokens[i]
        if kind in ("word", "name"):
            if i + 2 < len(tokens) and tokens[i + 1] == ("punct", ".") and tokens[i + 2][0] in ("word", "name"):
                names.append((text, tokens[i + 2][1]))
                i += 3
                continue
            names.append((default_db, text))
        i += 1
    return names


# -- the binlog stream -----------------------------------------------------------------------------

_COM_BINLOG_DUMP = 0x12
_EV_QUERY, _EV_ROTATE, _EV_FORMAT, _EV_XID, _EV_TABLE_MAP = 2, 4, 15, 16, 19
_EV_WRITE_V1, _EV_UPDATE_V1, _EV_DELETE_V1 = 23, 24, 25
_EV_WRITE_V2, _EV_UPDATE_V2, _EV_DELETE_V2 = 30, 31, 32
_EV_HEARTBEAT, _EV_HEARTBEAT_V2, _EV_MARIA_GTID = 27, 41, 162
#: Events this reader cannot decode: MariaDB's compressed rows, MySQL's partial JSON updates
#: and compressed transaction payloads. capture_check refuses the settings that make them.
_EV_UNREADABLE = {165, *range(166, 172), 39, 40}
#: Of those, the ones that name their table (compressed queries and payloads do not).
_EV_UNREADABLE_ROWS = {*range(166, 172), 39}
_ROW_OPS = {_EV_WRITE_V1: "insert", _EV_WRITE_V2: "insert", _EV_UPDATE_V1: "update", _EV_UPDATE_V2: "update",
            _EV_DELETE_V1: "delete", _EV_DELETE_V2: "delete"}


def _packed_int(buf: bytes, pos: int) -> tuple[int, int]:
    first = buf[pos]
    if first < 251:
        return first, pos + 1
    if first == 252:
        return int.from_bytes(buf[pos + 1:pos + 3], "little"), pos + 3
    if first == 253:
        return int.from_bytes(buf[pos + 1:pos + 4], "little"), pos + 4
    return int.from_bytes(buf[pos + 1:pos + 9], "little"), pos + 9


def _bits(buf: bytes, pos: int, count: int) -> tuple[list[bool], int]:
    size = (count + 7) // 8
    chunk = buf[pos:pos + size]
    return [bool(chunk[i >> 3] & (1 << (i & 7))) for i in range(count)], pos + size


def _table_map_meta(types: bytes, buf: bytes, pos: int) -> list[int]:
    meta: list[int] = []
    for kind in types:
        if kind in (_T_FLOAT, _T_DOUBLE, _T_BLOB, _T_GEOMETRY, _T_JSON, _T_TIMESTAMP2, _T_DATETIME2, _T_TIME2,
                    _T_TINY_BLOB, _T_MEDIUM_BLOB, _T_LONG_BLOB):
            meta.append(buf[pos])
            pos += 1
        elif kind in (_T_VARCHAR, _T_VAR_STRING):
            meta.append(int.from_bytes(buf[pos:pos + 2], "little"))
            pos += 2
        elif kind in (_T_BIT,):
            meta.append((buf[pos + 1] << 8) | buf[pos])  # bytes << 8 | remaining bits
            pos += 2
        elif kind in (_T_NEWDECIMAL, _T_STRING, _T_ENUM, _T_SET):
            meta.append((buf[pos] << 8) | buf[pos + 1])  # precision<<8|scale, real_type<<8|length
            pos += 2
        else:
            meta.append(0)
    return meta


class _BinlogStream:
    """COM_BINLOG_DUMP over a PyMySQL connection: raw events, with a heartbeat when idle."""

    def __init__(self, endpoint: ForeignEndpoint, password: str | None, mariadb: bool) -> None:
        pymysql = _import_pymysql()
        self.endpoint = endpoint
        try:
            self.conn = pymysql.connect(host=endpoint.host, port=endpoint.port, user=endpoint.user,
                                        password=password or "", connect_timeout=CONNECT_TIMEOUT,
                                        read_timeout=BINLOG_READ_TIMEOUT, write_timeout=BINLOG_READ_TIMEOUT,
                                        charset="utf8mb4", autocommit=True)
        except pymysql.err.MySQLError as exc:
            raise _connect_failure(endpoint, exc) from None
        self.mariadb = mariadb
        self.checksum = False

    def start(self, file: str, pos: int) -> None:
        with self.conn.cursor() as cur:
            cur.execute("SHOW GLOBAL VARIABLES LIKE 'binlog_checksum'")
            found = cur.fetchone()
            algorithm = str(found[1]).upper() if found else "NONE"
            # A replica that does not announce checksums gets events without them only from old
            # servers; announcing the server's own algorithm keeps the CRC trailer predictable.
            cur.execute("SET @master_binlog_checksum = %s", (algorithm,))
            self.checksum = algorithm != "NONE"
            cur.execute(f"SET @master_heartbeat_period = {int(HEARTBEAT * 1e9)}")
            if self.mariadb:
                # GTID events instead of fake BEGIN queries; annotate-rows events not asked for.
                cur.execute("SET @mariadb_slave_capability = 4")
        # A server id no real replica uses: a second replica with the same id would be kicked off.
        server_id = random.randint(0x7F000000, 0xFFFFFFFE)
        payload = struct.pack("<IHI", pos, 0, server_id) + file.encode("utf-8")
        self.conn._execute_command(_COM_BINLOG_DUMP, payload)

    def events(self) -> Iterator[tuple[int, int, int, bytes]]:
        """(type, timestamp, next position, body without header and checksum)."""
        while True:
            packet = self.conn._read_packet()
            data = packet.get_all_data()
            if data[:1] == b"\xfe" and len(data) < 9:
                # A blocking dump never ends by itself: the server was shut down or killed us.
                raise ConnectError(f"{self.endpoint.host}:{self.endpoint.port} ended the binlog stream",
                                   "Sync resumes from its last applied transaction when restarted; check "
                                   "whether the server restarted or the session was killed.")
            event = data[1:]
            timestamp, kind = struct.unpack_from("<IB", event, 0)
            next_pos = struct.unpack_from("<I", event, 13)[0]
            body = event[19:-4] if self.checksum else event[19:]
            yield kind, timestamp, next_pos, body

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


# -- the adapter -----------------------------------------------------------------------------------


class _Snapshot:
    """One REPEATABLE READ, read-only InnoDB snapshot on one connection (the SnapshotReader)."""

    def __init__(self, source: MySQLSource, conn: Any, position: str | None) -> None:
        self.source = source
        self.conn = conn
        self.position = position

    @contextmanager
    def _reading(self, table: SourceTable) -> Iterator[None]:
        """Driver errors as a PgtideError naming the table (a filter calling a function that
        writes lands here: the snapshot is READ ONLY, so the server refuses the write)."""
        try:
            yield
        except self.source._driver.Error as exc:
            raise MigrationFailed(f"reading {table.name!r} from the source failed: "
                                  f"{self.source.endpoint.redact(_error_text(exc))}",
                                  "Check the table's filter and the server; a rerun resumes the copy.",
                                  title="Source read failed") from None

    def _where(self, table: SourceTable, where: str | None) -> str:
        if where is None:
            return ""
        problem = _filter_problem(where)
        if problem:
            raise InputError(f"the filter for {table.name!r} cannot be used: {problem}",
                             "Give one condition (as after WHERE) with balanced quotes, parentheses and comments.",
                             title="Bad filter")
        return "(\n" + where + "\n)"

    def rows(self, table: SourceTable, *, where: str | None = None, after: Row | None = None,
             batch: int = 5000) -> Iterator[list[Row]]:
        columns = ", ".join(quote_ident(c.name) for c in table.columns)
        base = f"SELECT {columns} FROM {quote_ident(table.name)}"
        condition = self._where(table, where)
        if not table.key:
            if after is not None:
                raise ValueError(f"{table.name!r} has no key to resume after")
            yield from self._stream(table, base + (" WHERE " + condition if condition else ""), batch)
            return
        order = " ORDER BY " + ", ".join(quote_ident(k) for k in table.key)
        positions = [table.column_names.index(k) for k in table.key]
        last = tuple(after) if after is not None else None
        while True:
            params: list[Any] = []
            if last is None:
                sql = base + (" WHERE " + condition if condition else "") + order + f" LIMIT {int(batch)}"
            else:
                # With parameters the driver reads % as a placeholder: the names and the filter
                # (LIKE 'a%') are escaped so they reach the server as written.
                past, params = _after(table.key, last)
                head = (base + (" WHERE " + condition + " AND " if condition else " WHERE ")).replace("%", "%%")
                sql = head + past + order.replace("%", "%%") + f" LIMIT {int(batch)}"
            with self._reading(table), self.conn.cursor() as cur:
                cur.execute(sql, params or None)
                rows = self.source._fetched(table, cur.fetchall())
            if not rows:
                return
            yield rows
            if len(rows) < batch:
                return
            last = tuple(rows[-1][i] for i in positions)

    def _stream(self, table: SourceTable, sql: str, batch: int) -> Iterator[list[Row]]:
        """A keyless table: one unbuffered SELECT in natural order."""
        cur = self.source._driver.streaming_cursor(self.conn)
        try:
            with self._reading(table):
                cur.execute(sql)
            while True:
                with self._reading(table):
                    chunk = cur.fetchmany(batch)
                if not chunk:
                    return
                yield self.source._fetched(table, chunk)
        finally:
            cur.close()  # reads what is left: the connection is usable for the next table

    def count(self, table: SourceTable, *, where: str | None = None) -> int:
        condition = self._where(table, where)
        with self._reading(table), self.conn.cursor() as cur:
            cur.execute(f"SELECT COUNT(*) FROM {quote_ident(table.name)}" + (" WHERE " + condition if condition else ""))
            return int(cur.fetchone()[0])


def _after(key: tuple[str, ...], last: tuple[Any, ...]) -> tuple[str, list[Any]]:
    """Strictly past ``last`` in key order, as an OR of prefixes (both servers range-scan it),
    with the key values as the driver's parameters."""
    ors: list[str] = []
    params: list[Any] = []
    for i in range(len(key)):
        equal = [f"{quote_ident(key[j])} = %s" for j in range(i)]
        ors.append("(" + " AND ".join([*equal, f"{quote_ident(key[i])} > %s"]) + ")")
        params += [*last[:i], last[i]]
    return "(" + " OR ".join(ors) + ")", params


class MySQLSource:
    """A MySQL 8 / MariaDB 10.x database as a pgtide source."""

    kind: Kind = "mysql"

    def __init__(self, endpoint: ForeignEndpoint, *, prefer_fast_driver: bool = True) -> None:
        self.endpoint = endpoint
        self._driver = _Driver(prefer_fast_driver)
        self._password = endpoint.resolved_password()
        self._lock = threading.RLock()
        self._conn = self._connect()
        with self._conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            self.version = str(cur.fetchone()[0])
        self.mariadb = "mariadb" in self.version.lower()
        self._infos: dict[str, tuple[_ColumnInfo, ...]] = {}
        self._engines: dict[str, str] = {}

    @property
    def driver_name(self) -> str:
        return self._driver.name

    # -- connections ------------------------------------------------------------------------------

    def _connect(self, read_timeout: int = READ_TIMEOUT) -> Any:
        try:
            conn = self._driver.connect(self.endpoint, self._password, self.endpoint.database, read_timeout)
        except self._driver.Error as exc:
            raise _connect_failure(self.endpoint, exc) from None
        except OSError as exc:
            raise _connect_failure(self.endpoint, exc) from None
        try:
            with conn.cursor() as cur:
                _session_setup(cur)
        except self._driver.Error as exc:
            conn.close()
            raise ConnectError(f"the session setup failed on {self.endpoint}: {self.endpoint.redact(_error_text(exc))}",
                               "Check the server's logs; pgtide sets time_zone, sql_mode and net_write_timeout "
                               "for its own sessions only.") from None
        return conn

    def _query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        with self._lock, self._conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []

    def _dicts(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        with self._lock, self._conn.cursor() as cur:
            cur.execute(sql, params)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(Exception):
                self._conn.close()

    # -- catalog ----------------------------------------------------------------------------------

    def tables(self) -> list[SourceTable]:
        db = (self.endpoint.database,)
        kinds = ", ".join("%s" for _ in _BASE_TABLE_TYPES)
        tables = self._dicts(
            "SELECT TABLE_NAME, ENGINE, TABLE_ROWS, DATA_LENGTH, INDEX_LENGTH FROM information_schema.TABLES "
            f"WHERE TABLE_SCHEMA = %s AND TABLE_TYPE IN ({kinds}) ORDER BY TABLE_NAME", (*db, *_BASE_TABLE_TYPES))
        columns = self._dicts(
            "SELECT TABLE_NAME, COLUMN_NAME, ORDINAL_POSITION, COLUMN_DEFAULT, IS_NULLABLE, DATA_TYPE, "
            "CHARACTER_MAXIMUM_LENGTH, CHARACTER_OCTET_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION, "
            "CHARACTER_SET_NAME, COLUMN_TYPE, EXTRA FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME, ORDINAL_POSITION", db)
        # SUB_PART: a prefix index; a NULL COLUMN_NAME: a functional index (MySQL 8). Neither can
        # be a key or be recreated as written on PostgreSQL, so both are left out.
        stats = self._dicts(
            "SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, SEQ_IN_INDEX, COLUMN_NAME, SUB_PART "
            "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s "
            "ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX", db)
        fks = self._dicts(
            "SELECT k.TABLE_NAME, k.CONSTRAINT_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_SCHEMA, k.REFERENCED_TABLE_NAME, "
            "k.REFERENCED_COLUMN_NAME, r.UPDATE_RULE, r.DELETE_RULE FROM information_schema.KEY_COLUMN_USAGE k "
            "LEFT JOIN information_schema.REFERENTIAL_CONSTRAINTS r ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA "
            "AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME AND r.TABLE_NAME = k.TABLE_NAME "
            "WHERE k.TABLE_SCHEMA = %s AND k.REFERENCED_TABLE_NAME IS NOT NULL "
            "ORDER BY k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION", db)
        json_columns = self._json_check_columns()
        by_table: dict[str, list[dict[str, Any]]] = {}
        for row in columns:
            by_table.setdefault(str(row["TABLE_NAME"]), []).append(row)
        indexes: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for row in stats:
            indexes.setdefault(str(row["TABLE_NAME"]), {}).setdefault(str(row["INDEX_NAME"]), []).append(row)
        foreign: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for row in fks:
            foreign.setdefault(str(row["TABLE_NAME"]), {}).setdefault(str(row["CONSTRAINT_NAME"]), []).append(row)
        for name, constraints in foreign.items():
            if any(parts[0]["DELETE_RULE"] is None for parts in constraints.values()):
                self._rules_from_create(name, constraints)
        result: list[SourceTable] = []
        for table in tables:
            name = str(table["TABLE_NAME"])
            pairs = [_column(row, json_columns.get(name, set())) for row in by_table.get(name, [])]
            cols = tuple(p[0] for p in pairs)
            self._infos[name] = tuple(p[1] for p in pairs)
            engine = str(table["ENGINE"] or "")
            self._engines[name] = engine
            result.append(self._table(self.endpoint.database, name, cols, table, engine, indexes.get(name, {}), foreign.get(name, {})))
        return result

    def _rules_from_create(self, table: str, constraints: dict[str, list[dict[str, Any]]]) -> None:
        """MariaDB shows REFERENTIAL_CONSTRAINTS only to accounts with more than SELECT on the
        table; SHOW CREATE TABLE needs SELECT alone and prints the rules (RESTRICT by omission)."""
        text = str(self._query(f"SHOW CREATE TABLE {quote_ident(table)}")[0][1])
        for line in text.splitlines():
            match = re.match(r"\s*CONSTRAINT `((?:[^`]|``)+)` FOREIGN KEY .* REFERENCES .*?"
                             r"(?: ON DELETE (RESTRICT|CASCADE|SET NULL|NO ACTION|SET DEFAULT))?"
                             r"(?: ON UPDATE (RESTRICT|CASCADE|SET NULL|NO ACTION|SET DEFAULT))?,?$", line)
            if match and match.group(1).replace("``", "`") in constraints:
                for part in constraints[match.group(1).replace("``", "`")]:
                    part["DELETE_RULE"] = match.group(2) or "RESTRICT"
                    part["UPDATE_RULE"] = match.group(3) or "RESTRICT"
        for parts in constraints.values():
            for part in parts:
                part["DELETE_RULE"] = part["DELETE_RULE"] or "RESTRICT"
                part["UPDATE_RULE"] = part["UPDATE_RULE"] or "RESTRICT"

    def _json_check_columns(self) -> dict[str, set[str]]:
        if not self.mariadb:
            return {}
        try:
            rows = self._dicts("SELECT TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                               "WHERE CONSTRAINT_SCHEMA = %s", (self.endpoint.database,))
        except self._driver.Error:
            return {}
        found: dict[str, set[str]] = {}
        for row in rows:
            match = re.fullmatch(r"\s*json_valid\(`((?:[^`]|``)+)`\)\s*", str(row["CHECK_CLAUSE"]))
            if match:
                found.setdefault(str(row["TABLE_NAME"]), set()).add(match.group(1).replace("``", "`"))
        return found

    @staticmethod
    def _table(database: str, name: str, cols: tuple[SourceColumn, ...], info: dict[str, Any], engine: str,
               indexes: dict[str, list[dict[str, Any]]], foreign: dict[str, list[dict[str, Any]]]) -> SourceTable:
        nullable = {c.name: c.nullable for c in cols}
        key: tuple[str, ...] = ()
        plain: list[SourceIndex] = []
        unique_candidates: list[tuple[str, ...]] = []
        for index_name, parts in indexes.items():
            if any(p["SUB_PART"] is not None or p["COLUMN_NAME"] is None for p in parts):
                continue  # a prefix or functional index: not a key, not recreated
            names = tuple(str(p["COLUMN_NAME"]) for p in parts)
            unique = int(parts[0]["NON_UNIQUE"]) == 0
            if index_name == "PRIMARY":
                key = names
                continue
            if unique and not any(nullable.get(n, True) for n in names):
                unique_candidates.append(names)
            plain.append(SourceIndex(name=index_name, columns=names, unique=unique))
        if not key and unique_candidates:
            key = unique_candidates[0]
        fk_list: list[SourceForeignKey] = []
        for fk_name, parts in foreign.items():
            if str(parts[0]["REFERENCED_TABLE_SCHEMA"]) != database:
                continue  # a reference into another database: not part of this migration
            fk_list.append(SourceForeignKey(
                name=fk_name, columns=tuple(str(p["COLUMN_NAME"]) for p in parts),
                ref_table=str(parts[0]["REFERENCED_TABLE_NAME"]),
                ref_columns=tuple(str(p["REFERENCED_COLUMN_NAME"]) for p in parts),
                on_delete=str(parts[0]["DELETE_RULE"]), on_update=str(parts[0]["UPDATE_RULE"])))
        id_column = next((c for c in ("id", "Id", "ID") if c in nullable), None)
        return SourceTable(
            name=name, columns=cols, key=key, id_column=id_column, rows=int(info["TABLE_ROWS"] or 0),
            # MyISAM and Aria keep an exact count; InnoDB's TABLE_ROWS is a sampled estimate.
            rows_exact=engine.upper() in ("MYISAM", "ARIA"),
            size_bytes=int(info["DATA_LENGTH"] or 0) + int(info["INDEX_LENGTH"] or 0),
            indexes=tuple(plain), foreign_keys=tuple(fk_list))

    @staticmethod
    def _fetched(table: SourceTable, rows: Sequence[tuple[Any, ...]]) -> list[Row]:
        """Fetched rows as the contract's values: MySQL's JSON arrives as binary-charset text,
        which mysqlclient leaves as bytes. (Everything else the drivers already give as wanted.)"""
        positions = {i for i, c in enumerate(table.columns) if c.base == "json"}
        if not positions:
            return list(rows)
        return [_json_text(tuple(row), positions) for row in rows]

    def consistency(self) -> str:
        if not self._engines:
            self.tables()
        plain = sorted(n for n, e in self._engines.items() if e.upper() in _NON_TRANSACTIONAL)
        how = ("one consistent InnoDB snapshot (START TRANSACTION WITH CONSISTENT SNAPSHOT) with the binlog "
               "position read under it" if self.mariadb else
               "one consistent InnoDB snapshot (START TRANSACTION WITH CONSISTENT SNAPSHOT, opened under a brief "
               "FLUSH TABLES WITH READ LOCK) with the binlog position read under the lock")
        if plain:
            return how + "; " + ", ".join(plain) + (" is" if len(plain) == 1 else " are") + \
                " not transactional (MyISAM/Aria/MEMORY) and read without one: a write to it during the copy may be seen or missed."
        return how + "."

    # -- filters ----------------------------------------------------------------------------------

    def check_filter(self, table: SourceTable, where: str) -> str:
        problem = _filter_problem(where)
        if problem:
            raise InputError(f"the filter for {table.name!r} cannot be used: {problem}",
                             "Give one condition as it would follow WHERE, e.g. created_at >= '2024-01-01'.",
                             title="Bad filter")
        columns = ", ".join(quote_ident(c.name) for c in table.columns) or "1"
        statement = f"SELECT {columns} FROM {quote_ident(table.name)} WHERE (\n{where}\n) LIMIT 0"
        with self._lock, self._conn.cursor() as cur:
            try:
                cur.execute("START TRANSACTION READ ONLY")
                # PREPARE parses exactly one statement; the text goes in as a string literal.
                cur.execute("PREPARE pgtide_filter_check FROM %s", (statement,))
                cur.execute("EXECUTE pgtide_filter_check")
                cur.fetchall()
            except self._driver.Error as exc:
                raise InputError(f"the filter for {table.name!r} was refused by the server: "
                                 f"{self.endpoint.redact(_error_text(exc))}",
                                 "Write it in the source's own SQL, as it would follow WHERE, naming columns of "
                                 "that table.", title="Bad filter") from None
            finally:
                try:
                    cur.execute("DEALLOCATE PREPARE pgtide_filter_check")
                except self._driver.Error:
                    pass
                cur.execute("ROLLBACK")
        return where

    # -- snapshot ---------------------------------------------------------------------------------

    def snapshot(self) -> AbstractContextManager[_Snapshot]:
        return self._snapshot()

    @contextmanager
    def _snapshot(self) -> Iterator[_Snapshot]:
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                position = self._open_snapshot(cur)
            yield _Snapshot(self, conn, position)
            with conn.cursor() as cur:
                cur.execute("ROLLBACK")
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def _open_snapshot(self, cur: Any) -> str | None:
        if self.mariadb:
            # MariaDB reports the binlog position that matches the snapshot exactly, with no lock.
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            cur.execute("SHOW STATUS WHERE Variable_name IN ('binlog_snapshot_file', 'binlog_snapshot_position')")
            status = {str(k).lower(): str(v) for k, v in cur.fetchall()}
            file, pos = status.get("binlog_snapshot_file", ""), status.get("binlog_snapshot_position", "")
            return f"{file}:{pos}" if file else None
        # MySQL 8 (untested here): no snapshot-bound position, so block commits for the instant
        # between opening the snapshot and reading the position.
        cur.execute("FLUSH TABLES WITH READ LOCK")
        try:
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            try:
                cur.execute("SHOW BINARY LOG STATUS")
            except self._driver.Error:
                cur.execute("SHOW MASTER STATUS")
            row = cur.fetchone()
        finally:
            cur.execute("UNLOCK TABLES")
        return f"{row[0]}:{row[1]}" if row else None

    # -- change capture ---------------------------------------------------------------------------

    def _settings(self) -> dict[str, str]:
        names = ("log_bin", "binlog_format", "binlog_row_image", "server_id", "binlog_checksum", "gtid_mode",
                 "binlog_row_metadata", "log_bin_compress", "binlog_row_value_options", "binlog_transaction_compression")
        listed = ", ".join("%s" for _ in names)
        return {str(k).lower(): str(v)
                for k, v in self._query(f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({listed})", names)}

    def capture_check(self) -> CaptureCheck:
        settings = self._settings()
        # USER_PRIVILEGES lists every account's grants to a user with global SELECT: keep ours.
        # (Privileges held through a role are not seen; a missing one then shows at the first read.)
        current = str(self._query("SELECT CURRENT_USER()")[0][0])
        user, _, host = current.rpartition("@")
        grantee = f"'{user}'@'{host}'"
        privileges = {str(r[1]).upper() for r in self._query(
            "SELECT GRANTEE, PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES") if str(r[0]) == grantee}
        settings["privileges"] = ", ".join(sorted(privileges))
        fallback = "one-shot copies and --refresh-every work without it"

        def refuse(observed: str, remedy: str) -> CaptureCheck:
            return CaptureCheck(ok=False, observed=observed, remedy=remedy, settings=settings)

        if settings.get("log_bin", "OFF").upper() not in ("ON", "1"):
            return refuse("the binary log is off (log_bin is OFF)",
                          "Turn it on: log_bin=mysql-bin and binlog_format=ROW under [mysqld] in my.cnf, then "
                          f"restart the server (log_bin cannot be changed while it runs); {fallback}.")
        fmt = settings.get("binlog_format", "").upper()
        if fmt != "ROW":
            return refuse(f"binlog_format is {fmt or 'unknown'}",
                          "SET GLOBAL binlog_format = 'ROW' (and binlog_format=ROW under [mysqld] in my.cnf so it "
                          f"survives a restart; sessions already open keep their format until they reconnect); {fallback}.")
        image = settings.get("binlog_row_image", "FULL").upper()
        if image != "FULL":
            return refuse(f"binlog_row_image is {image}",
                          "SET GLOBAL binlog_row_image = 'FULL' (and binlog_row_image=FULL under [mysqld] in my.cnf "
                          f"so it survives a restart); {fallback}.")
        if settings.get("log_bin_compress", "OFF").upper() == "ON":
            return refuse("log_bin_compress is ON (compressed row events)",
                          "SET GLOBAL log_bin_compress = OFF (and log_bin_compress=OFF under [mysqld] in my.cnf); "
                          f"{fallback}.")
        if settings.get("binlog_row_value_options", "").upper() == "PARTIAL_JSON":
            return refuse("binlog_row_value_options is PARTIAL_JSON (JSON updates logged as diffs)",
                          "SET GLOBAL binlog_row_value_options = '' (and in my.cnf); " + fallback + ".")
        if settings.get("binlog_transaction_compression", "OFF").upper() == "ON":
            return refuse("binlog_transaction_compression is ON",
                          "SET GLOBAL binlog_transaction_compression = OFF (and in my.cnf); " + fallback + ".")
        if settings.get("binlog_checksum", "NONE").upper() not in ("NONE", "CRC32"):
            return refuse(f"binlog_checksum is {settings['binlog_checksum']}",
                          "SET GLOBAL binlog_checksum = 'CRC32'; " + fallback + ".")
        if settings.get("server_id", "0") == "0":
            return refuse("server_id is 0, so the server refuses binlog readers",
                          "SET GLOBAL server_id = 1 (any non-zero id no other server uses, and server_id under "
                          f"[mysqld] in my.cnf); {fallback}.")
        # MariaDB 10.5+ calls REPLICATION CLIENT "BINLOG MONITOR" (the old name is an alias there).
        monitor = "BINLOG MONITOR" if self.mariadb and "BINLOG MONITOR" in self._known_privileges() else "REPLICATION CLIENT"
        held = privileges | ({"BINLOG MONITOR", "REPLICATION CLIENT"} if privileges & {"BINLOG MONITOR", "REPLICATION CLIENT"}
                             else set())
        missing = [p for p in ("REPLICATION SLAVE", monitor) if p not in held and "SUPER" not in held]
        if not self.mariadb and "RELOAD" not in privileges:
            missing.append("RELOAD")  # FLUSH TABLES WITH READ LOCK, for the snapshot's position
        if missing:
            return refuse(f"the user {current} lacks {', '.join(missing)}",
                          f"GRANT {', '.join(missing)} ON *.* TO {grantee}; {fallback}.")
        return CaptureCheck(ok=True, observed=f"binlog on, ROW format, FULL row images ({self.version})",
                            settings=settings)

    def _known_privileges(self) -> set[str]:
        """The privilege names this server has (MariaDB lists them in mysql.user's columns too,
        but reading that needs more than we may have: the version decides)."""
        match = re.match(r"(\d+)\.(\d+)", self.version)
        major, minor = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
        return {"BINLOG MONITOR"} if self.mariadb and (major, minor) >= (10, 5) else set()

    def _column_infos(self, table: SourceTable) -> tuple[_ColumnInfo, ...]:
        """The table's columns as the server has them now; SourceSchemaChanged if they are not
        the ones the copy was made with."""
        rows = self._dicts(
            "SELECT TABLE_NAME, COLUMN_NAME, ORDINAL_POSITION, COLUMN_DEFAULT, IS_NULLABLE, DATA_TYPE, "
            "CHARACTER_MAXIMUM_LENGTH, CHARACTER_OCTET_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION, "
            "CHARACTER_SET_NAME, COLUMN_TYPE, EXTRA FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
            (self.endpoint.database, table.name))
        json_columns = self._json_check_columns().get(table.name, set())
        pairs = [_column(row, json_columns) for row in rows]
        now = tuple((p[0].name, p[0].source_type) for p in pairs)
        then = tuple((c.name, c.source_type) for c in table.columns)
        if now != then:
            raise SourceSchemaChanged(table.name, "columns now: " + ", ".join(n for n, _ in now) if now else "dropped")
        return tuple(p[1] for p in pairs)

    def changes(self, tables: Sequence[SourceTable], start: str, stop: threading.Event) -> Iterator[Change]:
        file, _, raw_pos = start.rpartition(":")
        if not file or not raw_pos.isdigit():
            raise InputError(f"{start!r} is not a binlog position", "A MySQL position is FILE:OFFSET.",
                             title="Bad position")
        watched = {t.name: t for t in tables}
        infos = {t.name: self._column_infos(t) for t in tables}
        json_positions = {t.name: {i for i, c in enumerate(t.columns) if c.base == "json"} for t in tables}
        stream = _BinlogStream(self.endpoint, self._password, self.mariadb)
        try:
            try:
                stream.start(file, int(raw_pos))
                yield from self._follow(stream, file, watched, infos, json_positions, stop)
            except _import_pymysql().err.MySQLError as exc:
                raise self._stream_failure(exc, start) from None
        finally:
            stream.close()

    def _stream_failure(self, exc: BaseException, start: str) -> Exception:
        text = self.endpoint.redact(_error_text(exc))
        if _error_code(exc) == 1236:
            return MigrationFailed(f"the source cannot stream its binlog from {start}: {text}",
                                   "The binlog file was purged (expire_logs_days / binlog_expire_logs_seconds) or the "
                                   "server was reset: run init again, and keep binlogs longer than sync may lag.",
                                   title="Binlog position lost")
        return ConnectError(f"the binlog stream from {self.endpoint.host}:{self.endpoint.port} broke: {text}",
                            "Sync resumes from its last applied transaction when restarted; check the server "
                            "and the network.")

    def _follow(self, stream: _BinlogStream, file: str, watched: dict[str, SourceTable],
                infos: dict[str, tuple[_ColumnInfo, ...]], json_positions: dict[str, set[int]],
                stop: threading.Event) -> Iterator[Change]:
        database = self.endpoint.database
        table_ids: dict[int, _Decoder | None] = {}
        held: Change | None = None
        in_transaction = False
        table_id_size = 6
        # A transaction boundary the caller has not been given yet (the watched tables were
        # quiet), and when a position was last given: see CHECKPOINT_SECONDS.
        unreported: str | None = None
        last_given = time.monotonic()

        def checkpoint(timestamp: float) -> Iterator[Change]:
            nonlocal unreported, last_given
            if unreported is not None and time.monotonic() - last_given >= CHECKPOINT_SECONDS:
                yield Change(table="", op="update", row=(), position=unreported, committed_at=timestamp or None)
                unreported, last_given = None, time.monotonic()

        def commit(position: str, timestamp: float) -> Iterator[Change]:
            nonlocal held, unreported, last_given
            if held is not None:
                yield _with_position(held, position, timestamp)
                held, unreported, last_given = None, None, time.monotonic()
            else:
                unreported = position
                yield from checkpoint(timestamp)

        for kind, timestamp, next_pos, body in stream.events():
            if kind == _EV_ROTATE:
                file = body[8:].decode("utf-8")
                continue
            if kind == _EV_FORMAT:
                # Post-header length of TABLE_MAP tells a 4- from a 6-byte table id (only ancient servers use 4).
                lengths = body[2 + 50 + 4 + 1:]
                if len(lengths) >= _EV_TABLE_MAP:
                    table_id_size = 4 if lengths[_EV_TABLE_MAP - 1] == 6 else 6
                continue
            if kind in (_EV_HEARTBEAT, _EV_HEARTBEAT_V2):
                if not in_transaction:
                    yield from checkpoint(0.0)
                if stop.is_set() and not in_transaction:
                    return
                continue
            if kind == _EV_MARIA_GTID:
                flags = body[12] if len(body) > 12 else 0
                in_transaction = not flags & 0x01  # FL_STANDALONE: a DDL with no BEGIN/COMMIT
                continue
            if kind == _EV_TABLE_MAP:
                table_id = int.from_bytes(body[:table_id_size], "little")
                at = table_id_size + 2
                db_len = body[at]
                db_name = body[at + 1:at + 1 + db_len].decode("utf-8")
                at += 1 + db_len + 1
                name_len = body[at]
                name = body[at + 1:at + 1 + name_len].decode("utf-8")
                at += 1 + name_len + 1
                if db_name != database or name not in watched:
                    table_ids[table_id] = None
                    continue
                count, at = _packed_int(body, at)
                types = body[at:at + count]
                at += count
                _meta_len, at = _packed_int(body, at)
                meta = _table_map_meta(types, body, at)
                if count != len(infos[name]):
                    raise SourceSchemaChanged(name, f"the binlog row has {count} columns, the copy {len(infos[name])}")
                table_ids[table_id] = _Decoder(name, types, meta, infos[name])
                continue
            if kind in _ROW_OPS:
                table_id = int.from_bytes(body[:table_id_size], "little")
                decoder = table_ids.get(table_id)
                if decoder is None:
                    continue
                for change in self._row_changes(kind, body, table_id_size, decoder, json_positions[decoder.table],
                                                float(timestamp)):
                    if held is not None:
                        yield held
                    held = change
                continue
            if kind in _EV_UNREADABLE:
                if kind in _EV_UNREADABLE_ROWS and table_ids.get(int.from_bytes(body[:table_id_size], "little")) is None:
                    continue  # a table not asked for
                raise MigrationFailed("the binlog holds compressed or partial row events, which pgtide cannot read",
                                      "SET GLOBAL log_bin_compress = OFF (MariaDB) or binlog_row_value_options = '' and "
                                      "binlog_transaction_compression = OFF (MySQL), and run init again.",
                                      title="Unreadable binlog")
            if kind == _EV_XID:
                in_transaction = False
                yield from commit(f"{file}:{next_pos}", float(timestamp))
                if stop.is_set():
                    return
                continue
            if kind == _EV_QUERY:
                sql, default_db = _query_event(body)
                head = sql.lstrip()[:16].upper()
                if head.startswith(("BEGIN", "XA START")):
                    in_transaction = True
                    continue
                if head.startswith(("COMMIT", "XA COMMIT", "XA END", "XA PREPARE", "ROLLBACK")):
                    in_transaction = False
                    yield from commit(f"{file}:{next_pos}", float(timestamp))
                    if stop.is_set():
                        return
                    continue
                touched = _touched_tables(sql, default_db)
                if touched:
                    _verb, names = touched
                    for db_name, name in names:
                        if db_name.lower() == database.lower() and any(name.lower() == w.lower() for w in watched):
                            table = next(w for w in watched if w.lower() == name.lower())
                            raise SourceSchemaChanged(table, sql)
                if not in_transaction:
                    # A statement of its own (DDL elsewhere): a boundary too.
                    yield from commit(f"{file}:{next_pos}", float(timestamp))
                    if stop.is_set():
                        return
                continue

    @staticmethod
    def _row_changes(kind: int, body: bytes, table_id_size: int, decoder: _Decoder, json_positions: set[int],
                     committed_at: float) -> Iterator[Change]:
        at = table_id_size + 2
        if kind in (_EV_WRITE_V2, _EV_UPDATE_V2, _EV_DELETE_V2):
            extra = int.from_bytes(body[at:at + 2], "little")
            at += extra  # the length counts its own two bytes
        count, at = _packed_int(body, at)
        present, at = _bits(body, at, count)
        present_after = present
        op = _ROW_OPS[kind]
        if op == "update":
            present_after, at = _bits(body, at, count)
        if not all(present) or not all(present_after):
            raise MigrationFailed(f"the binlog holds partial row images for {decoder.table!r}",
                                  "SET GLOBAL binlog_row_image = 'FULL' (and in my.cnf) and run init again.",
                                  title="Partial row images")
        end = len(body)
        while at < end:
            row, at = decoder.row(body, at, present)
            row = _json_text(row, json_positions)
            if op == "update":
                after, at = decoder.row(body, at, present_after)
                yield Change(table=decoder.table, op="update", row=_json_text(after, json_positions), before=row,
                             committed_at=committed_at)
            else:
                yield Change(table=decoder.table, op=op, row=row, committed_at=committed_at)  # type: ignore[arg-type]


def _json_text(row: Row, positions: set[int]) -> Row:
    if not positions:
        return row
    values = list(row)
    for i in positions:
        if isinstance(values[i], (bytes, bytearray)):
            values[i] = bytes(values[i]).decode("utf-8")
    return tuple(values)


def _with_position(change: Change, position: str, committed_at: float) -> Change:
    return Change(table=change.table, op=change.op, row=change.row, before=change.before, position=position,
                  committed_at=change.committed_at or committed_at)


def _query_event(body: bytes) -> tuple[str, str]:
    """(statement, default database) of a QUERY event."""
    db_len = body[8]
    status_len = int.from_bytes(body[11:13], "little")
    at = 13 + status_len
    default_db = body[at:at + db_len].decode("utf-8", errors="replace")
    sql = body[at + db_len + 1:].decode("utf-8", errors="replace")
    return sql, default_db


def open_mysql(endpoint: ForeignEndpoint) -> MySQLSource:
    """Connect to a MySQL/MariaDB source (ConnectError/InputError/EnvironmentProblem on failure)."""
    return MySQLSource(endpoint)

