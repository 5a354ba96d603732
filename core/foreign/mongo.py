"""MongoDB as a source, through pymongo (the ``[mongodb]`` extra): collections as documents,
copied in ``_id`` order and kept in sync from a change stream.

Consistency: MongoDB has no snapshot that can last a whole copy (``readConcern: snapshot``
holds history for ``minSnapshotHistoryWindowInSeconds``, 5 minutes by default, and a pymongo
snapshot session cannot be shared by the engine's parallel readers), so each collection is
read as of its own moment. The change stream position is taken *before* the first read;
replaying the stream from there repeats some writes the copy already holds (an insert of a
document that is there, an update to a value it has already, a delete of a document it
never got), which is harmless when changes are applied as upserts and delete-if-present, in
order: after catch-up the target equals the source.

Nothing here writes: discovery uses listCollections and the count/stats commands, a row
filter is tried with ``find(...).limit(1)``, and server-side JavaScript operators are
refused before anything reaches the server.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from ..infra.errors import ConnectError, EnvironmentProblem, InputError, MigrationFailed, PgtideError
from .encode import Special
from .endpoint import PASSWORD_ENV, ForeignEndpoint
from .source import CaptureCheck, Change, Kind, Row, SourceColumn, SourceTable

if TYPE_CHECKING:
    from pymongo import MongoClient
    from pymongo.collection import Collection
    from pymongo.database import Database

    Doc = dict[str, Any]

EXTRA = "pip install 'pgtide[mongodb]'"
#: How long connecting may take before ConnectError (server selection, then the TCP connect).
CONNECT_TIMEOUT_MS = 10_000
#: How long one idle change-stream poll waits on the server: bounds how late ``stop`` is seen.
#: How often a quiet stream still records how far it has read (a checkpoint change).
CHECKPOINT_SECONDS = 10.0
IDLE_WAIT_MS = 500
#: How long ``check_filter``'s trial find may run; a filter that parses but scans slowly is fine.
FILTER_TRIAL_MS = 5_000

#: Connection-string options passed through to the driver: none of them is a secret, and none
#: changes what is read. Anything else in the URL is refused rather than guessed at.
SAFE_OPTIONS = frozenset({
    "replicaSet", "authSource", "authMechanism", "directConnection", "loadBalanced", "srvServiceName",
    "srvMaxHosts", "tls", "ssl", "tlsCAFile", "tlsCertificateKeyFile", "tlsAllowInvalidCertificates",
    "tlsAllowInvalidHostnames", "tlsInsecure", "tlsDisableOCSPEndpointCheck", "tlsCRLFile",
    "readPreference", "readPreferenceTags", "maxStalenessSeconds", "appName", "compressors",
    "zlibCompressionLevel", "connectTimeoutMS", "socketTimeoutMS", "serverSelectionTimeoutMS",
    "heartbeatFrequencyMS", "localThresholdMS", "maxPoolSize", "minPoolSize", "maxIdleTimeMS",
    "waitQueueTimeoutMS", "retryReads", "maxConnecting", "timeoutMS",
})
_OPTIONS_BY_LOWER = {name.lower(): name for name in SAFE_OPTIONS}

#: Mechanisms that authenticate without a password (a certificate, the cloud's identity).
PASSWORDLESS = frozenset({"MONGODB-X509", "MONGODB-AWS", "MONGODB-OIDC", "GSSAPI"})

#: Query operators that run JavaScript on the server: never sent, wherever they appear.
JS_OPERATORS = ("$where", "$function", "$accumulator")

_CHANGE_FIELDS = ("operationType", "ns", "to", "documentKey", "fullDocument", "clusterTime", "wallTime",
                  "lsid", "txnNumber")


class UnsupportedValue(PgtideError):
    """A document holds a BSON value the jsonb encoding has no form for."""

    exit_code = 1
    default_title = "Unsupported value"


class CollectionChanged(MigrationFailed):
    """A watched collection was dropped or renamed (or its database dropped) on the source."""

    default_title = "Source collection changed"


class ChangeStreamLost(MigrationFailed):
    """The change stream cannot resume from the recorded position."""

    default_title = "Change stream lost"


# -- the driver --------------------------------------------------------------------------------


def _require_driver() -> None:
    try:
        import bson  # noqa: F401
        import pymongo  # noqa: F401
    except ImportError as exc:
        raise EnvironmentProblem(f"the MongoDB driver (pymongo) is not installed ({exc.name or exc})",
                                 f"Install pgtide's MongoDB extra: {EXTRA}", title="Driver missing") from None


# -- values ------------------------------------------------------------------------------------


class _Unsupported(Exception):
    """Raised inside the reduction with the BSON type's name; containers add the path."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what
        self.path: list[str] = []


_RE_FLAGS = ((re.IGNORECASE, "i"), (re.LOCALE, "l"), (re.MULTILINE, "m"), (re.DOTALL, "s"),
             (re.UNICODE, "u"), (re.VERBOSE, "x"))

_reducers: dict[type, Callable[[Any], Any]] = {}


def _regex_flags(flags: int) -> str:
    return "".join(letter for bit, letter in _RE_FLAGS if flags & bit)


def _decimal(value: Any) -> Decimal:
    """A Decimal128 as a Decimal, decoded from its 128 bits (a quarter of the time bson's
    to_decimal takes); NaNs, infinities and the 11-prefixed form go through bson."""
    raw = value.bid
    high = int.from_bytes(raw[8:], "little")
    if high & 0x6000000000000000 == 0x6000000000000000:  # NaN, ±Infinity, or the 11-prefixed form
        return Decimal(value.to_decimal())
    coefficient = ((high & 0x0001FFFFFFFFFFFF) << 64) | int.from_bytes(raw[:8], "little")
    if coefficient > 9999999999999999999999999999999999:  # beyond 34 digits: non-canonical, read as zero
        coefficient = 0
    exponent = ((high >> 49) & 0x3FFF) - 6176
    # From a string, Decimal is exact whatever the context's precision.
    return Decimal(f"{'-' if high >> 63 else ''}{coefficient}E{exponent}")


def _load_reducers() -> dict[type, Callable[[Any], Any]]:
    """The reduction per exact type (built on first use: bson is imported only when needed)."""
    if _reducers:
        return _reducers
    from bson import Code, DBRef, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
    from bson.binary import Binary
    from bson.datetime_ms import DatetimeMS
    from bson.son import SON

    def same(value: Any) -> Any:
        return value

    def as_utc(value: dt.datetime) -> dt.datetime:
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)

    def regex(value: Any) -> Special:
        pattern = value.pattern
        if isinstance(pattern, bytes):
            pattern = pattern.decode("utf-8", "replace")
        return Special("regex", {"pattern": pattern, "flags": _regex_flags(int(value.flags))})

    def code(value: Any) -> Special:
        if value.scope is None:
            return Special("code", str(value))
        return Special("code", {"code": str(value), "scope": _reduce_mapping(value.scope)})

    def out_of_range(value: Any) -> Any:
        raise _Unsupported(f"a BSON date outside the years 1-9999 ({int(value)} ms since 1970)")

    table: dict[type, Callable[[Any], Any]] = {
        str: same, bool: same, int: same, float: same, type(None): same, bytes: same,
        dict: _reduce_mapping, SON: _reduce_mapping, list: _reduce_list,
        Int64: int, Decimal128: _decimal, Binary: bytes, uuid.UUID: lambda v: v.bytes,
        dt.datetime: as_utc,
        ObjectId: lambda v: Special("objectid", str(v)),
        Regex: regex, re.Pattern: regex,
        Timestamp: lambda v: Special("timestamp", {"t": v.time, "i": v.inc}),
        MinKey: lambda v: Special("minkey", 1), MaxKey: lambda v: Special("maxkey", 1),
        Code: code,
        DBRef: lambda v: _reduce_mapping(v.as_doc()),
        DatetimeMS: out_of_range,
    }
    _reducers.update(table)
    return _reducers


def _reduce(value: Any) -> Any:
    reducer = _reducers.get(type(value))
    if reducer is None:
        for kind, candidate in _load_reducers().items():
            if isinstance(value, kind):
                reducer = candidate
                break
        else:
            raise _Unsupported(f"a value of type {type(value).__module__}.{type(value).__name__}, "
                               "which pgtide has no jsonb form for")
    return reducer(value)


#: Values that are already what the contract wants: copied without a call (the common case).
_PLAIN = frozenset({str, int, float, bool, type(None), bytes})


def _reduce_mapping(doc: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        kind = type(value)
        if kind in _PLAIN:
            out[key] = value
            continue
        try:
            out[key] = _reduce_mapping(value) if kind is dict else _reduce(value)
        except _Unsupported as problem:
            problem.path.insert(0, str(key))
            raise
    return out


def _reduce_list(values: list[Any]) -> list[Any]:
    for value in values:
        if type(value) not in _PLAIN:
            break
    else:
        return list(values)
    out: list[Any] = []
    for index, value in enumerate(values):
        try:
            out.append(_reduce(value))
        except _Unsupported as problem:
            problem.path.insert(0, str(index))
            raise
    return out


def reduce_document(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A decoded BSON document as plain values (key order kept): dict, list, str, int, float,
    bool, None, Decimal, bytes, aware UTC datetime, and :class:`Special` for ObjectId, regex,
    timestamp, min/max key and code. UnsupportedValue names the field and the BSON type of
    anything else (a date beyond year 9999, a type pgtide does not know)."""
    _load_reducers()
    try:
        return _reduce_mapping(doc)
    except _Unsupported as problem:
        where = ".".join(problem.path)
        raise UnsupportedValue(f"field {where!r} holds {problem.what}",
                               "Change or remove that value on the source, or exclude the collection.") from None


def raw_id(value: Any) -> Any:
    """A reduced ``_id`` (as ``rows()`` returned it) back as the BSON value to query with:
    Special("objectid", hex) → ObjectId, Decimal → Decimal128, bytes → Binary (subtype 0),
    containers recursively. Raw BSON values pass through unchanged."""
    from bson import Code, Decimal128, MaxKey, MinKey, ObjectId, Regex, Timestamp
    from bson.binary import Binary

    if isinstance(value, Special):
        inner = value.value
        if value.type == "objectid":
            return ObjectId(str(inner))
        if value.type == "timestamp":
            return Timestamp(int(inner["t"]), int(inner["i"]))
        if value.type == "minkey":
            return MinKey()
        if value.type == "maxkey":
            return MaxKey()
        if value.type == "regex":
            return Regex(inner["pattern"], inner["flags"])
        if value.type == "code":
            if isinstance(inner, dict):
                return Code(inner["code"], raw_id(inner["scope"]))
            return Code(str(inner))
        raise InputError(f"cannot turn a {value.type!r} value back into a MongoDB _id",
                         "Resume the copy of this collection from its start.")
    if isinstance(value, Decimal):
        return Decimal128(value)
    if isinstance(value, (bytes, bytearray, memoryview)) and not isinstance(value, Binary):
        return Binary(bytes(value), 0)
    if isinstance(value, Mapping):
        return {k: raw_id(v) for k, v in value.items()}
    if isinstance(value, list):
        return [raw_id(v) for v in value]
    return value


#: BSON's comparison order by type bracket, as ``$type`` aliases (an ``_id`` is never an array
#: or undefined). ``{"$gt": v}`` only matches values of v's own bracket, so resuming past v
#: also needs every later bracket; the sort by ``_id`` crosses them in this order.
_BRACKETS: tuple[tuple[str, ...], ...] = (
    ("minKey",), ("null",), ("int", "long", "double", "decimal"), ("string", "symbol"), ("object",),
    ("binData",), ("objectId",), ("bool",), ("date",), ("timestamp",), ("regex",), ("dbPointer",),
    ("javascript",), ("javascriptWithScope",), ("maxKey",),
)


def _bracket(value: Any) -> int:
    from bson import Code, Decimal128, MaxKey, MinKey, ObjectId, Regex, Timestamp
    from bson.binary import Binary

    ranks: list[tuple[type | tuple[type, ...], int]] = [
        (MinKey, 0), (type(None), 1), (bool, 7), ((int, float, Decimal128), 2), (str, 3), (Mapping, 4),
        ((bytes, Binary, uuid.UUID), 5), (ObjectId, 6), (dt.datetime, 8), (Timestamp, 9),
        ((Regex, re.Pattern), 10), (Code, 12), (MaxKey, 14),
    ]
    for kind, rank in ranks:
        if isinstance(value, kind):
            if rank == 12 and getattr(value, "scope", None) is not None:
                return 13
            return rank
    raise InputError(f"a {type(value).__name__} cannot be a MongoDB _id to resume after",
                     "Resume the copy of this collection from its start.")


def after_filter(raw: Any) -> dict[str, Any]:
    """The filter for "``_id`` strictly after ``raw`` in ``_id`` sort order", across types."""
    later = [alias for bracket in _BRACKETS[_bracket(raw) + 1:] for alias in bracket]
    greater: dict[str, Any] = {"_id": {"$gt": raw}}
    if not later:
        return greater
    return {"$or": [greater, {"_id": {"$type": later}}]}


# -- filters -----------------------------------------------------------------------------------


def _find_js(value: Any) -> str | None:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if key in JS_OPERATORS:
                return str(key)
            found = _find_js(inner)
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for inner in value:
            found = _find_js(inner)
            if found:
                return found
    return None


def parse_filter(where: str) -> dict[str, Any]:
    """A MongoDB query in extended JSON ({"$oid": …}, {"$date": …}), key order kept;
    InputError when it is not a JSON object or uses a server-side JavaScript operator."""
    from bson import json_util

    remedy = ('Give a MongoDB query as a JSON object, e.g. {"status": "active", "n": {"$gt": 5}} '
              '(extended JSON for special values: {"$oid": "…"}, {"$date": "2024-01-01T00:00:00Z"}).')
    try:
        parsed = json_util.loads(where)
    except Exception as exc:  # json's ValueError, bson's InvalidId / TypeError on a malformed $oid…
        raise InputError(f"the row filter is not valid extended JSON: {exc}", remedy, title="Bad filter") from None
    if not isinstance(parsed, dict):
        raise InputError(f"the row filter is a JSON {type(parsed).__name__}, not an object", remedy,
                         title="Bad filter")
    js = _find_js(parsed)
    if js:
        raise InputError(f"the row filter uses {js}, which runs JavaScript on the server",
                         "Write the condition with query operators ($expr with aggregation operators, "
                         "$regex…); pgtide never sends server-side JavaScript.", title="Bad filter")
    return parsed


def _server_message(exc: Exception) -> str:
    details = getattr(exc, "details", None)
    if isinstance(details, Mapping) and details.get("errmsg"):
        return str(details["errmsg"])
    return str(exc).split(", full error:")[0]


# -- the adapter -------------------------------------------------------------------------------


@dataclass
class _Position:
    token: dict[str, Any] | None = None
    #: A bson Timestamp: changes at or after it.
    operation_time: Any = None


def _parse_position(text: str) -> _Position:
    from bson import Timestamp, json_util

    try:
        value = json_util.loads(text)
    except Exception:
        value = None
    if isinstance(value, Timestamp):
        return _Position(operation_time=value)
    if isinstance(value, dict) and "_data" in value:
        return _Position(token=value)
    raise InputError(f"{text[:80]!r} is not a MongoDB change stream position",
                     "Positions come from pgtide itself; copy the collection again to get a new one.")


class MongoSnapshot:
    """Reads collections in ``_id`` order; ``position`` is where the change stream resumes."""

    def __init__(self, source: MongoSource, position: str | None) -> None:
        self.source = source
        self.position = position

    def _filter(self, coll: Collection[Doc], where: str | None, after: Row | None) -> dict[str, Any]:
        parts: list[dict[str, Any]] = []
        if where:
            parts.append(parse_filter(where))
        if after is not None:
            parts.append(after_filter(self.source.resolve_id(coll, raw_id(after[0]))))
        if not parts:
            return {}
        return parts[0] if len(parts) == 1 else {"$and": parts}

    def rows(self, table: SourceTable, *, where: str | None = None, after: Row | None = None,
             batch: int = 5000) -> Iterator[list[Row]]:
        import pymongo.errors

        coll = self.source.db[table.name]
        cursor: Any = None
        chunk: list[Row] = []
        try:
            query = self._filter(coll, where, after)
            # The hint keeps the read an _id index walk whatever the filter: streamed in order,
            # never a blocking sort of the matching documents (a selective filter on another
            # indexed field is slower so, and still bounded).
            cursor = coll.find(query, sort=[("_id", 1)], batch_size=batch).hint([("_id", 1)])
            for doc in cursor:
                try:
                    chunk.append((reduce_document(doc),))
                except UnsupportedValue as problem:
                    raise UnsupportedValue(f"collection {table.name!r}, document _id {doc.get('_id')!r}: "
                                           f"{problem.cause}", problem.remedy) from None
                if len(chunk) >= batch:
                    yield chunk
                    chunk = []
            if chunk:
                yield chunk
        except pymongo.errors.PyMongoError as exc:
            raise self.source.failure(exc, f"reading {table.name!r}") from None
        finally:
            if cursor is not None:
                cursor.close()

    def count(self, table: SourceTable, *, where: str | None = None) -> int:
        import pymongo.errors

        coll = self.source.db[table.name]
        try:
            return int(coll.count_documents(self._filter(coll, where, None)))
        except pymongo.errors.PyMongoError as exc:
            raise self.source.failure(exc, f"counting {table.name!r}") from None


class MongoSource:
    kind: Kind = "mongodb"

    def __init__(self, endpoint: ForeignEndpoint, client: MongoClient[Doc]) -> None:
        self.endpoint = endpoint
        self.client = client
        self.db: Database[Doc] = client.get_database(endpoint.database)
        self._streams: bool | None = None

    # -- errors --------------------------------------------------------------------------------

    def failure(self, exc: Exception, doing: str) -> PgtideError:
        """A driver error as the error users see (redacted)."""
        import pymongo.errors

        where = f"{self.endpoint.host}:{self.endpoint.port}" if self.endpoint.port else self.endpoint.host
        message = self.endpoint.redact(_server_message(exc))
        if isinstance(exc, pymongo.errors.OperationFailure):
            if exc.code == 18:
                return ConnectError(
                    f"authentication failed for user {self.endpoint.user!r} on {where}",
                    "Check the user name and the password; a user created in another database needs "
                    "?authSource=THATDB (often admin) in the URL.", title="Authentication failed")
            if exc.code == 13:
                return ConnectError(
                    f"not authorized {doing} on {where}: {message}",
                    f"Grant the user the read role on {self.endpoint.database!r} "
                    "(or give user@ and the password if the server requires authentication).",
                    title="Not authorized")
            return MigrationFailed(f"MongoDB refused {doing}: {message}",
                                   "Check the server's log; rerun to continue.", title="Source read failed")
        if isinstance(exc, pymongo.errors.ConfigurationError):
            return InputError(f"the MongoDB connection settings are not usable: {message}",
                              "Check the URL's host and options.", title="Bad source")
        cut = message.split(", Timeout:")[0]
        return ConnectError(f"cannot reach MongoDB at {where} ({doing}): {cut}",
                            "Check the host and port, that mongod is running and reachable from here, "
                            "and the URL's tls/replicaSet options.")

    # -- catalog -------------------------------------------------------------------------------

    def check_database(self) -> None:
        """InputError when the database has no collections and the server does not list it."""
        import pymongo.errors

        try:
            names = [i["name"] for i in self.db.list_collections(authorizedCollections=True, nameOnly=True)]
            if names:
                return
            try:
                known = self.client.list_database_names()
            except pymongo.errors.OperationFailure:
                return  # no listDatabases privilege: an empty database is then all we can say
        except pymongo.errors.PyMongoError as exc:
            raise self.failure(exc, f"listing the collections of {self.endpoint.database!r}") from None
        if self.endpoint.database not in known:
            known = [name for name in known if name not in ("admin", "config", "local")]
            raise InputError(f"there is no database {self.endpoint.database!r} on {self.endpoint.host}",
                             f"Check the database name in the URL (this server has: "
                             f"{', '.join(sorted(known)[:20]) or 'none'}).", title="Unknown database")

    def tables(self) -> list[SourceTable]:
        import pymongo.errors

        out: list[SourceTable] = []
        try:
            for info in self.db.list_collections():
                name = str(info["name"])
                # Views are queries over other collections (copied in their own right);
                # time-series buckets and system collections are internal.
                if info.get("type", "collection") != "collection" or name.startswith("system."):
                    continue
                coll = self.db[name]
                out.append(SourceTable(name=name, columns=(SourceColumn("document", "document"),),
                                       key=("_id",), id_column="_id", rows=int(coll.estimated_document_count()),
                                       rows_exact=False, size_bytes=self._size(coll), document=True))
        except pymongo.errors.PyMongoError as exc:
            raise self.failure(exc, f"listing the collections of {self.endpoint.database!r}") from None
        return sorted(out, key=lambda t: t.name)

    def _size(self, coll: Collection[Doc]) -> int:
        """The collection's data size (uncompressed BSON bytes), 0 when the server will not say.
        $collStats first (collStats the command is deprecated since 6.2); SecantusDB answers
        $collStats with size 0 and only the command with the real figure."""
        import pymongo.errors

        try:
            stats = list(coll.aggregate([{"$collStats": {"storageStats": {}}}]))
            size = int(stats[0].get("storageStats", {}).get("size", 0)) if stats else 0
            if size:
                return size
        except pymongo.errors.OperationFailure:
            pass
        try:
            return int(self.db.command("collStats", coll.name).get("size", 0))
        except pymongo.errors.OperationFailure:
            return 0

    def consistency(self) -> str:
        if self._can_stream():
            return ("Each collection is read in _id order as of its own moment, not in one snapshot; the "
                    "change stream is positioned before the first read, and replaying it from there makes "
                    "the target converge to the source.")
        return ("Each collection is read in _id order as of its own moment: writes made while the copy "
                "runs may or may not be in it (this server has no change stream to replay them).")

    def _can_stream(self) -> bool:
        if self._streams is None:
            self._streams = self.capture_check().ok
        return self._streams

    # -- filters -------------------------------------------------------------------------------

    def check_filter(self, table: SourceTable, where: str) -> str:
        import pymongo.errors
        from bson import json_util

        parsed = parse_filter(where)
        try:
            list(self.db[table.name].find(parsed, projection={"_id": 1}, limit=1, max_time_ms=FILTER_TRIAL_MS))
        except pymongo.errors.ExecutionTimeout:
            pass  # it parsed; it only matches slowly
        except pymongo.errors.OperationFailure as exc:
            if exc.code in (13, 18):
                raise self.failure(exc, f"trying the filter on {table.name!r}") from None
            raise InputError(f"MongoDB refused the filter on {table.name!r}: {_server_message(exc)}",
                             "Fix the query (operators and their arguments as MongoDB's find takes them).",
                             title="Bad filter") from None
        except pymongo.errors.PyMongoError as exc:
            raise self.failure(exc, f"trying the filter on {table.name!r}") from None
        return json_util.dumps(parsed)

    # -- reading -------------------------------------------------------------------------------

    def resolve_id(self, coll: Collection[Doc], value: Any) -> Any:
        """Binary ``_id``s lose their subtype in the reduction (bytes); find the stored one so
        resuming past a UUID (subtype 4) does not restart at the first UUID of equal length."""
        from bson.binary import Binary

        if not isinstance(value, Binary) or value.subtype != 0:
            return value
        candidates = [Binary(bytes(value), subtype) for subtype in range(9)]
        found = coll.find_one({"_id": {"$in": candidates}}, projection={"_id": 1})
        return found["_id"] if found is not None else value

    def position_now(self) -> str | None:
        """Where a change stream opened now starts, as JSON (a resume token, else the cluster
        time); None when the server has no change streams."""
        import pymongo.errors
        from bson import json_util

        try:
            with self.db.watch(max_await_time_ms=1) as stream:
                token = stream.resume_token
        except pymongo.errors.OperationFailure as exc:
            if exc.code in (13, 18):
                raise self.failure(exc, "opening a change stream") from None
            return None  # not a replica set (40573) or a server without change streams
        except pymongo.errors.PyMongoError as exc:
            raise self.failure(exc, "opening a change stream") from None
        if token is not None:
            return str(json_util.dumps(token))
        reply = self.db.command("ping")
        if "operationTime" in reply:
            return str(json_util.dumps(reply["operationTime"]))
        return None

    @contextmanager
    def snapshot(self) -> Iterator[MongoSnapshot]:
        # The position comes first: every write after it is in the stream, including those
        # the reads below will already see.
        yield MongoSnapshot(self, self.position_now())

    # -- change capture ------------------------------------------------------------------------

    def capture_check(self) -> CaptureCheck:
        import pymongo.errors

        remedy = ("Run mongod as a replica set member: start it with --replSet NAME and run rs.initiate() "
                  "once (one member is enough); one-shot copies and --refresh-every work without it.")
        try:
            hello = self.client.admin.command("hello")
        except pymongo.errors.OperationFailure:
            hello = self.client.admin.command("isMaster")  # servers before 4.4.2 / 5.0
        except pymongo.errors.PyMongoError as exc:
            raise self.failure(exc, "asking the server's role") from None
        settings = {"setName": str(hello.get("setName", "")),
                    "isWritablePrimary": str(hello.get("isWritablePrimary", hello.get("ismaster", ""))),
                    "msg": str(hello.get("msg", "")), "maxWireVersion": str(hello.get("maxWireVersion", ""))}
        role = (f"replica set {settings['setName']!r} member" if settings["setName"]
                else "a sharded cluster's mongos" if settings["msg"] == "isdbgrid" else "a standalone server")
        try:
            with self.db.watch(max_await_time_ms=1):
                pass
        except pymongo.errors.OperationFailure as exc:
            self._streams = False
            if exc.code == 13:
                return CaptureCheck(False, f"the user may not open a change stream on {self.endpoint.database!r} "
                                    f"({_server_message(exc)})",
                                    f"Grant the user the read role on {self.endpoint.database!r} (it holds the "
                                    "changeStream and find actions); one-shot copies and --refresh-every work "
                                    "without it.", settings)
            return CaptureCheck(False, f"{role}: the server refused a change stream "
                                f"({_server_message(exc)}, code {exc.code})", remedy, settings)
        except pymongo.errors.PyMongoError as exc:
            raise self.failure(exc, "opening a change stream") from None
        self._streams = True
        return CaptureCheck(True, f"{role}: change streams open", "", settings)

    def changes(self, tables: Sequence[SourceTable], start: str, stop: threading.Event) -> Iterator[Change]:
        import pymongo.errors

        position = _parse_position(start)
        names = [t.name for t in tables]
        pipeline: list[dict[str, Any]] = [
            {"$match": {"$or": [{"ns.coll": {"$in": names}}, {"to.coll": {"$in": names}},
                                {"operationType": {"$in": ["dropDatabase", "invalidate"]}}]}},
            {"$project": dict.fromkeys(_CHANGE_FIELDS, 1)},
        ]
        resume: dict[str, Any] = ({"resume_after": position.token} if position.token is not None
                                  else {"start_at_operation_time": position.operation_time})
        try:
            # updateLookup: an update carries the document as it is when the event is read, not
            # as the update left it; applied in order the target still ends where the source is.
            stream = self.db.watch(pipeline, full_document="updateLookup", max_await_time_ms=IDLE_WAIT_MS,
                                   **resume)
        except pymongo.errors.OperationFailure as exc:
            if exc.code in (13, 18):
                raise self.failure(exc, "opening the change stream") from None
            raise ChangeStreamLost(
                f"the change stream cannot resume from the recorded position: {_server_message(exc)} "
                f"(code {exc.code})",
                "Copy the collections again (the oplog no longer holds that point); size the oplog "
                "(replSetResizeOplog) to cover the longest time pgtide may be stopped.") from None
        except pymongo.errors.PyMongoError as exc:
            raise self.failure(exc, "opening the change stream") from None
        with stream:
            yield from self._follow(stream, set(names), stop)

    def _follow(self, stream: Any, names: set[str], stop: threading.Event) -> Iterator[Change]:
        import pymongo.errors
        from bson import json_util

        group: list[Doc] = []
        group_key: Any = None
        last_checkpoint = time.monotonic()
        try:
            while True:
                if stop.is_set() and not group:
                    return
                event = stream.try_next()
                if event is None and not stream.alive:
                    raise ChangeStreamLost("the server closed the change stream",
                                           "Rerun to resume from the last applied position.")
                if event is None:
                    # Nothing more is available now, so a transaction being gathered is whole:
                    # its events are all in the oplog before any of them can be read.
                    if group:
                        yield from self._emit(group, names)
                        group = []
                        last_checkpoint = time.monotonic()
                    elif time.monotonic() - last_checkpoint >= CHECKPOINT_SECONDS and stream.resume_token:
                        # Quiet watched collections while others are busy: keep the recorded
                        # position moving, so a restart never needs oplog history older than this.
                        last_checkpoint = time.monotonic()
                        yield Change(table="", op="update", row=(), position=str(json_util.dumps(stream.resume_token)))
                    continue
                key = _txn_key(event)
                if group and key != group_key:
                    yield from self._emit(group, names)
                    group = []
                    if stop.is_set():
                        return  # the event in hand is read again from the emitted position
                if key is None:
                    yield from self._emit([event], names)
                else:
                    group.append(event)
                    group_key = key
        except pymongo.errors.OperationFailure as exc:
            raise ChangeStreamLost(f"the change stream failed: {_server_message(exc)} (code {exc.code})",
                                   "Rerun to resume from the last applied position; if it fails the same "
                                   "way, copy the collections again.") from None
        except pymongo.errors.PyMongoError as exc:
            raise self.failure(exc, "reading the change stream") from None

    def _emit(self, events: list[Doc], names: set[str]) -> Iterator[Change]:
        """One transaction's (or one write's) changes; the last carries the position after it."""
        from bson import json_util

        changes = [change for event in events if (change := _change(event, names)) is not None]
        if not changes:
            return
        last = changes.pop()
        yield from changes
        yield Change(table=last.table, op=last.op, row=last.row, position=str(json_util.dumps(events[-1]["_id"])),
                     committed_at=last.committed_at)

    def close(self) -> None:
        self.client.close()


def _txn_key(event: Mapping[str, Any]) -> Any:
    if event.get("txnNumber") is None:
        return None
    lsid = event.get("lsid") or {}
    return (repr(lsid.get("id")), repr(lsid.get("uid")), int(event["txnNumber"]))


def _change(event: Mapping[str, Any], names: set[str]) -> Change | None:
    op = event.get("operationType")
    ns = event.get("ns") or {}
    coll = str(ns.get("coll", ""))
    if op in ("drop", "rename", "dropDatabase", "invalidate"):
        target = str((event.get("to") or {}).get("coll", ""))
        watched = sorted(names & {coll, target}) or sorted(names)
        what = {"drop": "was dropped", "rename": f"was renamed ({coll!r} → {target!r})",
                "dropDatabase": "went with its database, which was dropped",
                "invalidate": "can no longer be followed (the change stream was invalidated)"}[str(op)]
        raise CollectionChanged(f"the source collection {', '.join(repr(n) for n in watched)} {what}",
                                "Copy it again (pgtide keeps what it has applied so far); pgtide cannot "
                                "follow a dropped or renamed collection.")
    if op not in ("insert", "update", "replace", "delete") or coll not in names:
        return None  # DDL events (showExpandedEvents) and other collections
    committed = _committed_at(event)
    try:
        if op == "delete":
            key = event.get("documentKey") or {}
            return Change(table=coll, op="delete", row=(reduce_document({"_id": key.get("_id")}),),
                          committed_at=committed)
        document = event.get("fullDocument")
        if document is None:
            return None  # deleted (or its collection dropped) since: that event follows
        return Change(table=coll, op="insert" if op == "insert" else "update", row=(reduce_document(document),),
                      committed_at=committed)
    except UnsupportedValue as problem:
        raise UnsupportedValue(f"collection {coll!r}, a changed document: {problem.cause}", problem.remedy) from None


def _committed_at(event: Mapping[str, Any]) -> float | None:
    """wallTime (6.0+, milliseconds) when the server sends it, else the cluster time's seconds."""
    wall = event.get("wallTime")
    if isinstance(wall, dt.datetime):
        return (wall.replace(tzinfo=dt.UTC) if wall.tzinfo is None else wall).timestamp()
    cluster = event.get("clusterTime")
    return float(cluster.time) if cluster is not None else None


def _validate_options(options: Mapping[str, str]) -> None:
    """InputError for an option value the driver cannot use: given in a URI the driver only
    warns and ignores it (a typo'd ``tls=ture`` would silently connect in clear). Checked on a
    placeholder host, so nothing is resolved; the two SRV-only options need an SRV URL."""
    from pymongo.errors import ConfigurationError
    from pymongo.uri_parser import parse_uri

    checkable = {k: v for k, v in options.items() if k not in ("srvServiceName", "srvMaxHosts")}
    if not checkable:
        return
    try:
        parse_uri("mongodb://localhost/?" + urlencode(checkable), warn=False)
    except (ConfigurationError, ValueError, TypeError, OSError) as exc:  # OSError: an unreadable tlsCAFile
        raise InputError(f"the URL's options are not usable: {exc}", "Fix or remove that option.",
                         title="Bad source") from None


def _client_uri(endpoint: ForeignEndpoint) -> str:
    """The driver's URI without credentials (they go as keywords): host, database (the
    default authSource, as in the user's URL) and the safe options."""
    options: dict[str, str] = {}
    refused: list[str] = []
    for key, value in endpoint.options:
        name = _OPTIONS_BY_LOWER.get(key.lower())
        if name is None:
            refused.append(key)
        else:
            options[name] = value
    if refused:
        raise InputError(f"pgtide does not pass the option(s) {', '.join(sorted(refused))} to MongoDB",
                         "Remove them; pgtide accepts: " + ", ".join(sorted(SAFE_OPTIONS)) + ".",
                         title="Bad source")
    _validate_options(options)
    options.setdefault("serverSelectionTimeoutMS", str(CONNECT_TIMEOUT_MS))
    options.setdefault("connectTimeoutMS", str(CONNECT_TIMEOUT_MS))
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    port = f":{endpoint.port}" if endpoint.port and endpoint.scheme != "mongodb+srv" else ""
    return f"{endpoint.scheme}://{host}{port}/{quote(endpoint.database, safe='')}?{urlencode(options)}"


def open_mongo(endpoint: ForeignEndpoint) -> MongoSource:
    """A connected MongoSource: EnvironmentProblem without pymongo, ConnectError when the
    server cannot be reached or refuses the login, InputError for an unknown database."""
    _require_driver()
    import pymongo
    import pymongo.errors
    from bson.codec_options import DatetimeConversion

    uri = _client_uri(endpoint)
    credentials: dict[str, Any] = {}
    if endpoint.user:
        password = endpoint.resolved_password()
        mechanism = {k.lower(): v for k, v in endpoint.options}.get("authmechanism", "").upper()
        if password is None and mechanism not in PASSWORDLESS:
            raise ConnectError(f"no password for the MongoDB user {endpoint.user!r}",
                               f"Store it with pgtide profile, set {PASSWORD_ENV}, or run at a terminal to be "
                               "asked for it.", title="Password needed")
        credentials = {"username": endpoint.user}
        if password is not None:
            credentials["password"] = password
    try:
        # tz_aware: dates come back as aware UTC values; datetime_auto: a date beyond what
        # Python holds comes back as DatetimeMS (named in UnsupportedValue) instead of failing
        # the whole batch with a decode error.
        client: MongoClient[Doc] = pymongo.MongoClient(uri, tz_aware=True, tzinfo=dt.UTC,
                                                       datetime_conversion=DatetimeConversion.DATETIME_AUTO,
                                                       appname="pgtide", **credentials)
    except pymongo.errors.ConfigurationError as exc:
        raise InputError(f"the MongoDB URL is not usable: {endpoint.redact(str(exc))}",
                         "Check the host and the options in the URL.", title="Bad source") from None
    source = MongoSource(endpoint, client)
    try:
        client.admin.command("ping")
        source.check_database()
    except pymongo.errors.PyMongoError as exc:
        client.close()
        raise source.failure(exc, "connecting") from None
    except PgtideError:
        client.close()
        raise
    return source


__all__ = [
    "ChangeStreamLost",
    "CollectionChanged",
    "MongoSnapshot",
    "MongoSource",
    "UnsupportedValue",
    "after_filter",
    "open_mongo",
    "parse_filter",
    "raw_id",
    "reduce_document",
]
