"""PgBouncer's admin console, for the cutover's write fence: PAUSE, repoint, RESUME.

A client of the special ``pgbouncer`` database (the admin console) of a PgBouncer (1.18 and
later). What the console is, as checked against PgBouncer 1.18's source and a running 1.18:

- It speaks the **simple query protocol only** (a Parse message is answered with "extended
  query protocol not supported by admin console" and the connection is closed) and has no
  transactions. psycopg's ``execute`` uses the extended protocol, so every command here goes
  through libpq's ``PQsendQuery`` on the connection's ``pgconn``, and pgtide waits for the
  answer itself — which is also what lets it bound a PAUSE.
- Its grammar is a regular expression, not PostgreSQL's: ``CMD [WORD]`` where a WORD is
  ``[0-9a-z_]+`` or ``"..."`` with ``""`` for a double quote, copied into a 64-byte buffer
  (quotes included) and looked up **case-sensitively** (``RESUME AppDb`` does not find
  ``appdb``). Every database name is therefore sent double-quoted; a name whose quoted form
  exceeds 63 bytes, that is empty, has a control character, or is ``pgbouncer`` itself is
  refused before anything is sent (:func:`console_name`).
- ``PAUSE db`` marks the database paused at once (new client queries queue, they do not
  fail) and answers only when no server connection of it is in use any more: in
  transaction pooling when open transactions end, in **session pooling when every client
  of it has disconnected**. Clients queue at most ``query_wait_timeout`` (PgBouncer's
  setting, 120 s by default; see :meth:`PgBouncerAdmin.settings`), then get an error.
- A cancel request does not end a per-database PAUSE: 1.18's ``admin_handle_cancel`` only
  undoes a global one. So a PAUSE that takes longer than its timeout is abandoned by
  closing that console connection, and the database is RESUMEd over a new one (the
  abandoned PAUSE is never answered; PgBouncer is unaffected — tested).
- ``SET`` on the console changes ``[pgbouncer]`` settings only: **PgBouncer 1.18 cannot
  repoint a database at run time from its console.** It re-reads ``[databases]`` from its
  configuration files on ``RELOAD``; a changed entry closes that database's server
  connections as they are released, and new ones go to the new address. This is what
  repmgr's and Patroni users' PgBouncer scripts do (rewrite an ``%include``-d file, PAUSE,
  RELOAD, RESUME), and what :meth:`PgBouncerAdmin.redirect` does — see it for the contract.

API (what the cutover calls)::

    with PgBouncerAdmin.connect(endpoint, databases_file=path_or_None) as bouncer:
        bouncer.pause("app", timeout=10)        # PauseTimeout names the clients holding it
        ...                                      # source fenced: no query reaches it via PgBouncer
        bouncer.redirect("app", host="new-db", port=5432, dbname="app")
        bouncer.resume("app")                   # queued clients continue, on the new server

or ``with bouncer.paused("app", timeout=10): ...`` which RESUMEs whatever happens inside.
A preflight can call ``bouncer.check_redirect("app")``: everything redirect needs, changing nothing.

Every failure is a :class:`~.errors.PgtideError` with a cause and a remedy. The endpoint is
only ever shown redacted; PgBouncer's own messages never carry the console password, and the
databases file (which may hold ``password=`` for servers) is never quoted in a message.
"""

from __future__ import annotations

import os
import re
import select
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import pq

from .db import connect as db_connect
from .endpoint import Endpoint
from .errors import CheckFailed, ConnectError, EnvironmentProblem, InputError, PgtideError
from .formatting import read_quoted

__all__ = [
    "ADMIN_DATABASE",
    "PauseTimeout",
    "PgBouncerAdmin",
    "Redirect",
    "Route",
    "Row",
    "console_name",
]

#: The admin console's database name.
ADMIN_DATABASE = "pgbouncer"

#: PgBouncer copies a command's argument, quotes included, into a 64-byte buffer (admin.c).
_CONSOLE_ARG_MAX = 63

#: A console command that is not a PAUSE answers at once; this only guards against a hung peer.
DEFAULT_COMMAND_TIMEOUT = 30.0

#: One row of a SHOW command: column name to value (integers as int, NULL as None).
Row = dict[str, str | int | None]

_INT_OIDS = frozenset({20, 21, 23, 26})  # int8, int2, int4, oid
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

_NO_REPOINT_REMEDY = (
    "PgBouncer 1.18 re-reads [databases] only from its configuration files. Move the entry of "
    "this database into a file of its own (a [databases] line such as 'app = host=... port=... "
    "dbname=...'), add '%include /path/to/that/file' to pgbouncer.ini, RELOAD, and give pgtide "
    "that file's path; or repoint PgBouncer yourself while pgtide holds the pause."
)


def console_name(name: str) -> str:
    """``name`` as a quoted WORD of the console's grammar, or InputError if it cannot be one."""
    if not isinstance(name, str) or not name:
        raise InputError("a PgBouncer database name must not be empty",
                         "Give the name of the database as PgBouncer lists it (SHOW DATABASES).",
                         title="Bad PgBouncer database name")
    if _CONTROL.search(name):
        raise InputError(f"the PgBouncer database name {name!r} contains a control character",
                         "PgBouncer cannot define such a name; check the name against SHOW DATABASES.",
                         title="Bad PgBouncer database name")
    if name == ADMIN_DATABASE:
        raise InputError("'pgbouncer' is PgBouncer's admin console, not a database it pools",
                         "Give the name of a database in PgBouncer's [databases] section.",
                         title="Bad PgBouncer database name")
    quoted = '"' + name.replace('"', '""') + '"'
    if len(quoted.encode()) > _CONSOLE_ARG_MAX:
        raise InputError(
            f"the PgBouncer database name {name!r} is {len(name.encode())} bytes; PgBouncer's console "
            f"takes at most {_CONSOLE_ARG_MAX} bytes for a quoted name (two quotes, each \" doubled)",
            "Give PgBouncer a shorter alias for this database in [databases] (alias = dbname=long_name) "
            "and use the alias.",
            title="Bad PgBouncer database name",
        )
    return quoted


@dataclass(frozen=True)
class Route:
    """Where PgBouncer sends a database's server connections (as SHOW DATABASES reports it)."""

    host: str | None  # None: PgBouncer's default, the Unix socket
    port: int
    dbname: str

    def __str__(self) -> str:
        return f"{self.host or '(unix socket)'}:{self.port}/{self.dbname}"


@dataclass(frozen=True)
class Redirect:
    """What :meth:`PgBouncerAdmin.redirect` changed: ``previous`` is what to redirect back to."""

    database: str
    previous: Route
    current: Route
    changed: bool


class PauseTimeout(CheckFailed):
    """PAUSE did not finish in time: some clients still hold server connections. The database
    has been RESUMEd (the pause is undone); ``holders`` are SHOW CLIENTS rows of those clients."""

    default_title = "PgBouncer pause timed out"

    def __init__(self, cause: str, remedy: str, *, holders: list[Row]) -> None:
        super().__init__(cause, remedy)
        self.holders = holders


# -- the console's wire -----------------------------------------------------------------------------


class _Timeout(Exception):
    pass


def _rows(result: pq.abc.PGresult) -> list[Row]:
    names = [(result.fname(col) or b"").decode() for col in range(result.nfields)]
    types = [result.ftype(col) for col in range(result.nfields)]
    rows: list[Row] = []
    for row in range(result.ntuples):
        values: Row = {}
        for col, name in enumerate(names):
            raw = result.get_value(row, col)
            if raw is None:
                values[name] = None
            elif types[col] in _INT_OIDS:
                values[name] = int(raw)
            else:
                values[name] = bytes(raw).decode("utf-8", errors="replace")
        rows.append(values)
    return rows


def _wait(pgconn: pq.abc.PGconn, *, write: bool, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _Timeout
    fds: list[int] = [pgconn.socket]
    if write:
        select.select([], fds, [], remaining)
    else:
        select.select(fds, [], [], remaining)


def _exchange(pgconn: pq.abc.PGconn, command: str, timeout: float) -> tuple[list[Row], str | None]:
    """Send one simple-protocol query and wait at most ``timeout`` for its answer.

    Returns (rows, None) or ([], PgBouncer's error message); _Timeout when no answer came.
    """
    deadline = time.monotonic() + timeout
    pgconn.send_query(command.encode())
    while pgconn.flush() == 1:
        _wait(pgconn, write=True, deadline=deadline)
    while True:
        pgconn.consume_input()
        if not pgconn.is_busy():
            break
        _wait(pgconn, write=False, deadline=deadline)
    rows: list[Row] = []
    error: str | None = None
    while (result := pgconn.get_result()) is not None:
        if result.status == pq.ExecStatus.FATAL_ERROR:
            primary = result.error_field(pq.DiagnosticField.MESSAGE_PRIMARY)
            error = (primary or result.error_message or b"unknown error").decode("utf-8", errors="replace").strip()
        elif result.status == pq.ExecStatus.TUPLES_OK:
            rows = _rows(result)
    return rows, error


# -- the [databases] file PgBouncer includes ---------------------------------------------------------

# libusual's ini parser: a key is bare ([alnum _.-*]) or, in later releases, quoted.
_BARE_KEY = re.compile(r"[A-Za-z0-9_.\-*]+")


def _ini_key(line: str) -> tuple[str, int] | None:
    """The database name a ``[databases]`` line defines and where its ``=`` is, or None."""
    text = line.lstrip()
    offset = len(line) - len(text)
    if text.startswith('"'):
        quoted = read_quoted(text)
        if quoted is None:
            return None
        key, rest = quoted[0], text[quoted[1]:]
    elif text.startswith("'"):
        end = text.find("'", 1)
        if end < 0:
            return None
        key, rest = text[1:end], text[end + 1:]
    else:
        match = _BARE_KEY.match(text)
        if not match:
            return None
        key, rest = match.group(0), text[match.end():]
    stripped = rest.lstrip(" \t")
    if not stripped.startswith("="):
        return None
    return key, offset + (len(text) - len(stripped))


def _cstr_pairs(value: str) -> list[tuple[str, str, str]] | None:
    """PgBouncer's connection-string syntax (loader.c): space-separated key=value, a value
    optionally in single quotes with '' for a quote. Returns (key, value, raw text) per pair."""
    pairs: list[tuple[str, str, str]] = []
    pos = 0
    while True:
        while pos < len(value) and value[pos] == " ":
            pos += 1
        if pos >= len(value):
            return pairs
        start = pos
        while pos < len(value) and value[pos] not in "= ":
            pos += 1
        key = value[start:pos]
        while pos < len(value) and value[pos] == " ":
            pos += 1
        if not key or pos >= len(value) or value[pos] != "=":
            return None
        pos += 1
        while pos < len(value) and value[pos] == " ":
            pos += 1
        if pos < len(value) and value[pos] == "'":
            pos += 1
            chars = []
            while True:
                if pos >= len(value):
                    return None
                if value[pos] == "'":
                    if value[pos + 1:pos + 2] == "'":
                        chars.append("'")
                        pos += 2
                        continue
                    pos += 1
                    break
                chars.append(value[pos])
                pos += 1
            parsed = "".join(chars)
        else:
            begin = pos
            while pos < len(value) and value[pos] != " ":
                pos += 1
            parsed = value[begin:pos]
        if not parsed:
            return None
        pairs.append((key, parsed, value[start:pos]))


def _cstr_value(value: str) -> str:
    if re.fullmatch(r"[^\s']+", value):
        return value
    return "'" + value.replace("'", "''") + "'"


@dataclass
class _Entry:
    lines: list[str]
    index: int  # the entry's line
    value_at: int  # where its connection string starts on that line
    pairs: list[tuple[str, str, str]]

    def route(self, name: str) -> Route:
        found = {key: value for key, value, _raw in self.pairs}
        port = found.get("port", "5432")
        return Route(found.get("host"), int(port) if port.isdigit() else -1, found.get("dbname", name))

    def rewritten(self, route: Route) -> str:
        wanted = {"host": route.host, "port": str(route.port), "dbname": route.dbname}
        parts: list[str] = []
        for key, _value, raw in self.pairs:
            if key in wanted:
                new = wanted.pop(key)
                if new is not None:
                    parts.append(f"{key}={_cstr_value(new)}")
            else:
                parts.append(raw)  # the user's own text, byte for byte (passwords included)
        parts.extend(f"{key}={_cstr_value(new)}" for key, new in wanted.items() if new is not None)
        line = self.lines[self.index]
        ending = line[len(line.rstrip("\r\n")):]
        lines = list(self.lines)
        lines[self.index] = line[:self.value_at] + " ".join(parts) + ending
        return "".join(lines)


def _find_entry(text: str, name: str, path: Path) -> _Entry:
    lines = text.splitlines(keepends=True)
    section: str | None = None  # None: the file inherits the section of its %include line
    hits: list[_Entry] = []
    for index, line in enumerate(lines):
        body = line.strip()
        if not body or body[0] in "#;" or body.startswith("%include"):
            continue
        if body.startswith("["):
            section = body[1:body.find("]")] if "]" in body else body[1:]
            continue
        if section not in (None, "databases"):
            continue
        found = _ini_key(line.rstrip("\r\n"))
        if found is None or found[0] != name:
            continue
        equals = found[1]
        value_at = equals + 1
        while value_at < len(line) and line[value_at] in " \t":
            value_at += 1
        pairs = _cstr_pairs(line[value_at:].rstrip())
        if pairs is None:
            raise InputError(
                f"the entry of {name!r} in {path} (line {index + 1}) is not a connection string PgBouncer can read",
                "Fix that line (key=value pairs separated by spaces; quote a value with spaces in '...').",
                title="Bad PgBouncer databases file",
            )
        hits.append(_Entry(lines, index, value_at, pairs))
    if not hits:
        raise InputError(
            f"{path} defines no [databases] entry for {name!r}",
            "Move the line that defines this database into that file (PgBouncer uses the last "
            "definition it reads), RELOAD PgBouncer, and retry.",
            title="Database not in the PgBouncer databases file",
        )
    if len(hits) > 1:
        lines_at = ", ".join(str(hit.index + 1) for hit in hits)
        raise InputError(
            f"{path} defines {name!r} {len(hits)} times (lines {lines_at})",
            "Keep one line per database, RELOAD PgBouncer, and retry.",
            title="Bad PgBouncer databases file",
        )
    return hits[0]


def _write_in_place_of(path: Path, text: str) -> None:
    """Replace the file's content atomically, keeping its mode and owner (PgBouncer, often
    another account, must still read it); in place when its directory is not ours to write."""
    path = Path(os.path.realpath(path))  # a symlinked file stays a symlink to the new content
    info = path.stat()
    data = text.encode()
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError:
        with open(path, "r+b") as handle:
            handle.write(data)
            handle.truncate()
            handle.flush()
            os.fsync(handle.fileno())
        return
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, stat.S_IMODE(info.st_mode))
        if (info.st_uid, info.st_gid) != (os.geteuid(), os.getegid()):
            os.chown(temp, info.st_uid, info.st_gid)
        os.replace(temp, path)
    except PermissionError:
        # Not allowed to give the copy the file's owner: write the file itself instead.
        os.unlink(temp)
        with open(path, "r+b") as handle:
            handle.write(data)
            handle.truncate()
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with suppress(OSError):
            os.unlink(temp)
        raise


# -- the client ---------------------------------------------------------------------------------------


class PgBouncerAdmin:
    """One session on a PgBouncer admin console. Use :meth:`connect`, as a context manager."""

    def __init__(self, endpoint: Endpoint, conn: psycopg.Connection[Any], *, databases_file: Path | None,
                 command_timeout: float) -> None:
        self.endpoint = endpoint
        self.databases_file = databases_file
        self.command_timeout = command_timeout
        self._conn: psycopg.Connection[Any] | None = conn

    # -- connecting -----------------------------------------------------------------------------

    @classmethod
    def connect(cls, endpoint: Endpoint, *, databases_file: Path | str | None = None,
                command_timeout: float = DEFAULT_COMMAND_TIMEOUT) -> PgBouncerAdmin:
        """Log in to the admin console ``endpoint`` names (its dbname must be ``pgbouncer``).

        ``databases_file``: the ``%include``-d file holding the ``[databases]`` entries
        :meth:`redirect` may rewrite (None: redirect is refused, pause/resume work).
        """
        if endpoint.dbname != ADMIN_DATABASE:
            raise InputError(
                f"{endpoint.redacted()} names database {endpoint.dbname!r}, not PgBouncer's admin console",
                "Point --pgbouncer at the console: the same host and port as your clients use, "
                "database 'pgbouncer', as a user in PgBouncer's admin_users "
                "(postgresql://admin@pgbouncer-host:6432/pgbouncer).",
                title="Not a PgBouncer admin console",
            )
        path = Path(databases_file) if databases_file is not None else None
        return cls(endpoint, cls._login(endpoint), databases_file=path, command_timeout=command_timeout)

    @staticmethod
    def _login(endpoint: Endpoint) -> psycopg.Connection[Any]:
        try:
            return db_connect(endpoint, pooled=False)
        except ConnectError as exc:
            if "not allowed" in exc.cause:
                raise ConnectError(
                    f"{endpoint.redacted()}: PgBouncer does not let user {endpoint.user!r} into its console",
                    "Connect as a user listed in PgBouncer's admin_users (stats_users may only read).",
                ) from None
            raise

    def close(self) -> None:
        if self._conn is not None:
            with suppress(Exception):
                self._conn.close()
            self._conn = None

    def __enter__(self) -> PgBouncerAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- commands -------------------------------------------------------------------------------

    def _pgconn(self) -> pq.abc.PGconn:
        if self._conn is None or self._conn.closed:
            self._conn = self._login(self.endpoint)
        return self._conn.pgconn

    def _run(self, command: str, *, timeout: float | None = None) -> tuple[list[Row], str | None]:
        pgconn = self._pgconn()
        try:
            return _exchange(pgconn, command, self.command_timeout if timeout is None else timeout)
        except _Timeout:
            self.close()  # the answer would arrive later, out of turn: this session is done
            raise
        except psycopg.Error as exc:
            self.close()
            raise EnvironmentProblem(
                f"the connection to PgBouncer at {self.endpoint.redacted()} broke during "
                f"{command.split()[0]}: {self.endpoint.redact(str(exc)).strip().splitlines()[0] if str(exc).strip() else 'no message'}",
                "Check that PgBouncer is running (its log says why it closed the connection), then retry.",
                title="PgBouncer connection lost",
            ) from None
        except BaseException:
            self.close()  # interrupted mid-command: the session's state is unknown
            raise

    def _command(self, command: str) -> list[Row]:
        try:
            rows, error = self._run(command)
        except _Timeout:
            raise EnvironmentProblem(
                f"PgBouncer at {self.endpoint.redacted()} did not answer {command.split()[0]} within "
                f"{self.command_timeout:g}s",
                "Check that PgBouncer is not overloaded or stopped (SIGSTOP), then retry.",
                title="PgBouncer does not answer",
            ) from None
        if error is not None:
            raise self._refusal(command, error)
        return rows

    def _refusal(self, command: str, error: str) -> PgtideError:
        verb = command.split()[0]
        where = f"PgBouncer at {self.endpoint.redacted()}"
        if error.startswith("no such database"):
            known = ", ".join(repr(row["name"]) for row in self.databases() if row["name"] != ADMIN_DATABASE)
            return InputError(f"{where} has no database {error.partition(':')[2].strip()!r}",
                              f"Use a name from its [databases] section ({known or 'none defined'}); names are "
                              "case-sensitive.", title="Unknown PgBouncer database")
        if "admin access needed" in error:
            return InputError(f"{where}: user {self.endpoint.user!r} may only read the console, not run {verb}",
                              "Connect as a user listed in PgBouncer's admin_users.",
                              title="Not a PgBouncer admin")
        if "already suspended/paused" in error:
            return CheckFailed(f"{where} is paused or suspended as a whole (PAUSE or SUSPEND without a database)",
                               "Someone paused every database; RESUME PgBouncer when that operation is over, then retry.",
                               title="PgBouncer is paused")
        return EnvironmentProblem(f"{where} refused {verb}: {error}",
                                  "See PgBouncer's log for details, fix the cause and retry.",
                                  title="PgBouncer refused a command")

    # -- reading --------------------------------------------------------------------------------

    def version(self) -> str:
        """``PgBouncer 1.18.0`` (SHOW VERSION)."""
        rows = self._command("SHOW VERSION")
        return str(rows[0]["version"]) if rows else ""

    def databases(self) -> list[Row]:
        """SHOW DATABASES: name, host, port, database, pool_size, pool_mode, paused, disabled…"""
        return self._command("SHOW DATABASES")

    def database(self, db: str) -> Row:
        """The SHOW DATABASES row of ``db``; InputError if PgBouncer does not define it."""
        console_name(db)
        rows = self.databases()
        for row in rows:
            if row["name"] == db:
                return row
        known = ", ".join(repr(row["name"]) for row in rows if row["name"] != ADMIN_DATABASE)
        raise InputError(f"PgBouncer at {self.endpoint.redacted()} has no database {db!r}",
                         f"Use a name from its [databases] section ({known or 'none defined'}); names are "
                         "case-sensitive.", title="Unknown PgBouncer database")

    def route(self, db: str) -> Route:
        """Where ``db``'s server connections go now."""
        row = self.database(db)
        host = row["host"]
        return Route(str(host) if host else None, int(row["port"] or 5432), str(row["database"]))

    def is_paused(self, db: str) -> bool:
        return bool(self.database(db)["paused"])

    def pools(self) -> list[Row]:
        """SHOW POOLS: one row per (database, user): cl_active, cl_waiting, sv_active, sv_idle, maxwait…"""
        return self._command("SHOW POOLS")

    def clients(self, db: str) -> list[Row]:
        """SHOW CLIENTS of one database: user, state, addr, port, connect_time, request_time,
        link (the server it holds, '' when none), application_name…"""
        console_name(db)
        return [row for row in self._command("SHOW CLIENTS") if row["database"] == db]

    def servers(self, db: str) -> list[Row]:
        """SHOW SERVERS of one database."""
        console_name(db)
        return [row for row in self._command("SHOW SERVERS") if row["database"] == db]

    def settings(self) -> dict[str, str]:
        """SHOW CONFIG as key → value (e.g. ``query_wait_timeout``, ``pool_mode``)."""
        return {str(row["key"]): str(row["value"]) for row in self._command("SHOW CONFIG")}

    # -- the fence --------------------------------------------------------------------------------

    def pause(self, db: str, timeout: float) -> None:
        """PAUSE ``db``: from now on its clients' queries queue in PgBouncer; returns once no
        server connection of it is in use (so nothing more reaches the server through PgBouncer).

        If that takes longer than ``timeout`` seconds, the PAUSE is abandoned (its console
        session closed), ``db`` is RESUMEd and :class:`PauseTimeout` says which clients hold
        server connections. An interrupt while waiting resumes the same way, then propagates.
        CheckFailed if ``db`` is already paused (someone else's pause is not pgtide's to end).
        """
        quoted = console_name(db)
        if timeout <= 0:
            raise InputError(f"the PgBouncer pause timeout must be positive, not {timeout!r}",
                             "Give the number of seconds clients may be held, e.g. 10.",
                             title="Bad pause timeout")
        if self.database(db)["paused"]:
            raise CheckFailed(
                f"database {db!r} is already paused on PgBouncer at {self.endpoint.redacted()}",
                "Someone else (or an interrupted earlier run) paused it. Find out who (PgBouncer's log "
                "says 'PAUSE … command issued'); RESUME it once that is over, then retry.",
                title="PgBouncer database already paused",
            )
        try:
            _rows_unused, error = self._run(f"PAUSE {quoted}", timeout=timeout)
        except _Timeout:
            holders = self._undo_pause(db)
            raise self._pause_timeout(db, timeout, holders) from None
        except BaseException:
            self._undo_pause(db)
            raise
        if error is not None:
            raise self._refusal("PAUSE", error)

    def _undo_pause(self, db: str) -> list[Row]:
        """RESUME ``db`` over a fresh console session; return who held server connections."""
        self.close()
        holders: list[Row] = []
        try:
            with suppress(PgtideError):
                holders = [row for row in self.clients(db) if row.get("link")]
            self.resume(db)
        except PgtideError as exc:
            raise EnvironmentProblem(
                f"PgBouncer database {db!r} is still PAUSED at {self.endpoint.redacted()}: resuming it failed "
                f"({exc.cause})",
                f"Its clients are waiting: run RESUME {console_name(db)} on PgBouncer's console now.",
                title="PgBouncer left paused",
            ) from None
        return holders

    def _pause_timeout(self, db: str, timeout: float, holders: list[Row]) -> PauseTimeout:
        shown = [
            f"{row['user']}@{row['addr']}:{row['port']}"
            + (f" ({row['application_name']})" if row.get("application_name") else "")
            + f", connected {row['connect_time']}, last request {row['request_time']}"
            for row in holders[:10]
        ]
        if len(holders) > 10:
            shown.append(f"and {len(holders) - 10} more")
        if holders:
            who = (f"{len(holders)} client{'s' if len(holders) != 1 else ''} still "
                   f"hold{'s' if len(holders) == 1 else ''} a server connection: " + "; ".join(shown))
        else:
            who = "the clients that held server connections released them just as it gave up"
        remedy = ("The database was resumed: its clients carry on as before. Let those clients finish "
                  "their transactions — in session pooling, disconnect — or allow a longer timeout, then retry.")
        return PauseTimeout(f"PgBouncer could not pause {db!r} within {timeout:g}s: {who}", remedy, holders=holders)

    def resume(self, db: str) -> bool:
        """RESUME ``db``; False (and nothing done) when it was not paused."""
        quoted = console_name(db)
        try:
            _rows, error = self._run(f"RESUME {quoted}")
        except _Timeout:
            raise EnvironmentProblem(
                f"PgBouncer at {self.endpoint.redacted()} did not answer RESUME within {self.command_timeout:g}s; "
                f"{db!r} may still be paused",
                f"Run RESUME {quoted} on PgBouncer's console now.",
                title="PgBouncer does not answer",
            ) from None
        if error is not None:
            if "is not paused" in error:
                return False
            raise self._refusal("RESUME", error)
        return True

    @contextmanager
    def paused(self, db: str, timeout: float) -> Iterator[PgBouncerAdmin]:
        """``pause`` on entry, ``resume`` on exit — also when the block raises."""
        self.pause(db, timeout)
        try:
            yield self
        finally:
            self.resume(db)

    def reload(self) -> None:
        """RELOAD: PgBouncer re-reads its configuration files."""
        self._command("RELOAD")

    def redirect(self, db: str, host: str, port: int, dbname: str) -> Redirect:
        """Point ``db`` at ``host:port/dbname`` from now on; call it while ``db`` is paused.

        How (PgBouncer 1.18 has no console command for it): the entry of ``db`` in the
        ``databases_file`` given to :meth:`connect` — a file pgbouncer.ini ``%include``-s — gets
        host, port and dbname replaced (its other parameters kept as written), the file is
        replaced atomically with its mode and owner, and PgBouncer RELOADs. Only a database
        that file defines can be repointed, and only from a machine that can write it.

        Checked, so a wrong file cannot go unnoticed: before writing, PgBouncer's current route
        for ``db`` must be the one the file states (else the file is not what it loaded); after
        RELOAD, SHOW DATABASES must show the new route — if not, the file is put back, PgBouncer
        reloads it, and EnvironmentProblem says so. Calling it again with the same target does
        nothing (``changed`` False). ``previous`` in the result is the route to go back to.
        """
        target = self._check_target(host, port, dbname)
        if not self.is_paused(db):
            raise CheckFailed(
                f"PgBouncer database {db!r} is not paused: repointing it now would let some clients "
                "write to the old server after others moved to the new one",
                "Pause it first (pgtide's pgbouncer fence does), then repoint, then resume.",
                title="PgBouncer database not paused")
        path, original, entry, loaded = self._repointable(db)
        if loaded == target:
            return Redirect(db, previous=loaded, current=loaded, changed=False)
        self._write(path, entry.rewritten(target))
        try:
            self.reload()
            now = self.route(db)
        except BaseException:
            self._put_back(path, original)
            raise
        if now != target:
            self._put_back(path, original)
            raise EnvironmentProblem(
                f"after RELOAD PgBouncer still sends {db!r} to {now}, not {target}; {path} was put back",
                "PgBouncer did not take the new entry: its log says why (syntax, or a later definition "
                "of the same database overriding the file).",
                title="PgBouncer was not repointed",
            )
        return Redirect(db, previous=loaded, current=now, changed=True)

    def check_redirect(self, db: str) -> Route:
        """Whether :meth:`redirect` could repoint ``db`` (for a preflight): a databases file was
        given, this process may read and write it, it defines ``db`` once, and PgBouncer's
        current route for ``db`` is the one it states. Returns that route; raises what
        redirect would (InputError, EnvironmentProblem). Changes nothing."""
        path, _original, _entry, loaded = self._repointable(db)
        if not os.access(path, os.W_OK):
            raise EnvironmentProblem(f"pgtide may read but not write the PgBouncer databases file {path}",
                                     "Run pgtide as a user that may write that file, then retry.",
                                     title="PgBouncer databases file not writable")
        return loaded

    def _repointable(self, db: str) -> tuple[Path, str, _Entry, Route]:
        """The databases file, its text, ``db``'s entry in it and the route PgBouncer uses, once
        they are known to agree."""
        console_name(db)
        if self.databases_file is None:
            raise EnvironmentProblem(
                f"pgtide cannot repoint PgBouncer database {db!r}: no PgBouncer databases file was given",
                _NO_REPOINT_REMEDY, title="PgBouncer cannot be repointed")
        path = self.databases_file
        loaded = self.route(db)
        original = self._read(path)
        entry = _find_entry(original, db, path)
        stated = entry.route(db)
        if stated != loaded:
            raise EnvironmentProblem(
                f"PgBouncer sends {db!r} to {loaded}, but {path} says {stated}: that file is not what "
                "PgBouncer loaded, or it was edited since the last RELOAD",
                "Check that pgbouncer.ini %include-s this file after any other definition of the database, "
                "RELOAD PgBouncer, and retry.",
                title="PgBouncer databases file not in effect",
            )
        return path, original, entry, loaded

    @staticmethod
    def _check_target(host: str, port: int, dbname: str) -> Route:
        for label, value in (("host", host), ("dbname", dbname)):
            if not isinstance(value, str) or not value or _CONTROL.search(value):
                raise InputError(f"the new {label} for PgBouncer must be non-empty text without control "
                                 f"characters, not {value!r}",
                                 "Give the target server's host name or address and database name.",
                                 title="Bad PgBouncer target")
        if "," in host:
            raise InputError(f"the new host for PgBouncer names several hosts ({host!r})",
                             "PgBouncer would round-robin over all of them; give the one target server.",
                             title="Bad PgBouncer target")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise InputError(f"the new port for PgBouncer must be a number from 1 to 65535, not {port!r}",
                             "Give the target server's port.", title="Bad PgBouncer target")
        return Route(host, port, dbname)

    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise EnvironmentProblem(f"cannot read the PgBouncer databases file {path}: {reason}",
                                     "Run pgtide on the PgBouncer machine, as a user that may read and write that file.",
                                     title="PgBouncer databases file unreadable") from None

    @staticmethod
    def _write(path: Path, text: str) -> None:
        try:
            _write_in_place_of(path, text)
        except OSError as exc:
            raise EnvironmentProblem(f"cannot write the PgBouncer databases file {path}: {exc.strerror or exc}",
                                     "Run pgtide as a user that may write that file (and its directory), then retry.",
                                     title="PgBouncer databases file not writable") from None

    def _put_back(self, path: Path, original: str) -> None:
        self._write(path, original)
        with suppress(PgtideError):
            self.reload()
