"""Cutover: hand the application's writes from the source to the target, with about a second
of write downtime, nothing lost and nothing applied twice.

The order, and why (docs/architecture.md §7):

1. *Preflight*, changing nothing: every database streaming, lag under a threshold, the
   published tables' columns alike on both sides, a clean verify (run now if there is
   none), the sessions and roles the fence will stop, the right to stop them, login roles
   the application would lack on the target, an estimate of the downtime.
2. *Materialized views* refreshed on the target before the fence: their rows are a
   snapshot of their last refresh anyway, and a refresh inside the fence would add its
   whole run time to the downtime.
3. *Fence* (``roles``, ``pgbouncer`` or ``none``), then wait until no session of the
   migrated databases holds a write transaction and none is prepared. Downtime starts here.
4. *Drain*: the source's WAL insert position once writes stopped; wait (polling every
   20 ms) until the target's apply worker is past it, then one synchronous commit on the
   target so what it applied is on its disk before replication ends.
5. *Sequences* set on the target from the drained source (copy/sequences.py).
6. *Final verify* of the tables written since the last verify (or all): a difference
   aborts the cutover, which lifts the fence.
7. *Switch*: the subscription, slot and publication dropped — or, with ``reverse``, a
   publication on the target and a subscription on the source (``copy_data = false,
   origin = none``) made before the target takes a write. Downtime ends here.

Everything before the switch is undone on any failure or interruption (the fence lifted,
replication left streaming). The record (``cutover`` in the migration's state) says where a
cutover stands, so a crash while fenced is lifted by ``--abort`` or continued by a rerun,
and one interrupted after the switch finishes on the next run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import psycopg
from psycopg import sql

from ..copy.matviews import refresh_matviews
from ..copy.sequences import DEFAULT_MARGIN, sync_sequences
from ..infra.db import connect
from ..infra.endpoint import Endpoint
from ..infra.errors import CheckFailed, InputError, MigrationFailed, PgtideError
from ..infra.events import Cancelled, CancelToken, CheckReported, Emit, Event, Log, discard
from ..infra.formatting import human_bytes, human_seconds
from ..jobs.state import DatabaseState, check_transition
from ..monitor.poll import ApplyProgress, current_insert_lsn, lsn_reached
from ..monitor.state import ReplicationState
from ..replication import naming
from .fence import ClientSession, FencedRole, RolesFence, client_sessions, may_fence, wait_for_quiet, writable

if TYPE_CHECKING:
    from ..model.plan import Plan
    from ..session import MigrationSession

FenceKind = Literal["roles", "pgbouncer", "none"]
VerifyMode = Literal["changed", "full", "none"]

#: Preflight checks ``--force`` may pass over: each is a judgement the user can make (the
#: others would lose data or cannot work).
FORCEABLE = frozenset({"lag", "last verify", "login roles", "superuser sessions"})


@dataclass(frozen=True)
class CutoverOptions:
    fence: FenceKind = "roles"
    #: The PgBouncer admin console (dbname ``pgbouncer``) for ``fence="pgbouncer"``.
    pgbouncer: Endpoint | None = None
    #: The file PgBouncer ``%include``s for ``[databases]``: PgBouncer 1.18 cannot be
    #: repointed from its console, so pgtide rewrites the database's line and RELOADs.
    pgbouncer_databases_file: Path | None = None
    #: Where PgBouncer reaches the target, when not where pgtide does (host, port).
    pgbouncer_target: tuple[str, int] | None = None
    lag_threshold: int = 16 * 1024 * 1024
    sequence_margin: int = DEFAULT_MARGIN
    verify: VerifyMode = "changed"
    reverse: bool = False
    unfence_source: bool = False
    copy_role_passwords: bool = False
    force: bool = False
    #: How long to wait for open write transactions to end once the fence is up.
    quiet_timeout: float = 15.0
    #: How long the target may take to apply everything up to the fence position.
    drain_timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.fence == "pgbouncer" and self.pgbouncer is None:
            raise InputError("--fence pgbouncer needs the PgBouncer admin console",
                             "Pass --pgbouncer postgresql://admin@host:6432/pgbouncer.")
        if self.fence == "pgbouncer" and self.pgbouncer_databases_file is None:
            raise InputError("--fence pgbouncer needs the file PgBouncer reads its [databases] from",
                             "Pass --pgbouncer-databases-file PATH (a file pgbouncer.ini %include-s; pgtide "
                             "rewrites the migrated databases' lines there and RELOADs PgBouncer).")
        if self.sequence_margin < 0:
            raise InputError(f"--sequence-margin {self.sequence_margin}: must be 0 or more",
                             "Pass a number of increments, e.g. --sequence-margin 100.")
        if self.lag_threshold < 0:
            raise InputError("--max-lag must not be negative", "Pass a size such as 16MB.")


# -- events ------------------------------------------------------------------------------------------

StepState = Literal["started", "done", "failed", "skipped"]


@dataclass(frozen=True)
class CutoverStep(Event):
    """One step of the cutover; ``at`` is when it happened (wall clock)."""

    step: str
    state: StepState
    detail: str = ""
    seconds: float | None = None


@dataclass(frozen=True)
class PreflightCheck:
    name: str
    status: Literal["ok", "warning", "error"]
    observed: str
    remedy: str = ""
    database: str | None = None

    @property
    def forceable(self) -> bool:
        return self.name in FORCEABLE


@dataclass
class Preflight:
    databases: tuple[str, ...]
    checks: list[PreflightCheck] = field(default_factory=list)
    sessions: list[ClientSession] = field(default_factory=list)
    #: (role, database) pairs the roles fence will set read-only.
    roles: list[tuple[str, str]] = field(default_factory=list)
    #: Login roles with sessions on the source that have no password on the target.
    passwordless: list[str] = field(default_factory=list)
    lag_bytes: dict[str, int] = field(default_factory=dict)
    #: Bytes per second the target applied while the preflight ran (None: not measurable).
    apply_rate: float | None = None
    estimate_seconds: float | None = None
    #: Databases a previous cutover already switched (a resumed run finishes them).
    switched: tuple[str, ...] = ()
    #: The record of an earlier cutover that did not finish.
    unfinished: dict[str, Any] | None = None

    def errors(self, *, force: bool) -> list[PreflightCheck]:
        return [c for c in self.checks if c.status == "error" and not (force and c.forceable)]

    def ok(self, *, force: bool = False) -> bool:
        return not self.errors(force=force)


@dataclass
class CutoverResult:
    databases: tuple[str, ...]
    #: Fence up → switch done, as pgtide measured it (None: nothing was fenced this run).
    downtime_seconds: float | None
    steps: list[tuple[str, float]]
    sequences: int
    matviews: list[str]
    verified_tables: int
    reverse: bool
    source_fenced: bool
    next_steps: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"databases": list(self.databases), "downtime_seconds": self.downtime_seconds,
                "steps": [{"step": s, "seconds": t} for s, t in self.steps], "sequences": self.sequences,
                "matviews": self.matviews, "verified_tables": self.verified_tables, "reverse": self.reverse,
                "source_fenced": self.source_fenced, "next_steps": self.next_steps}


class CutoverAborted(MigrationFailed):
    default_title = "Cutover aborted"


class CutoverInterrupted(CutoverAborted):
    exit_code = 4
    default_title = "Cutover interrupted"


# -- SQL ----------------------------------------------------------------------------------------------

_LAG_SQL = ("SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint, confirmed_flush_lsn::text "
            "FROM pg_replication_slots WHERE slot_name = %s")

# Columns of the publication's tables, one query per side (names are compared as text).
_PUBLISHED_SQL = "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s ORDER BY 1, 2"
_COLUMNS_SQL = """
SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
ORDER BY 1, 2, a.attnum
"""

def _quoted(*parts: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in parts)


# -- the cutover -----------------------------------------------------------------------------------


class Cutover:
    """One cutover of a recorded migration; front ends call :meth:`preflight`, show it, ask,
    then :meth:`run` (or :meth:`abort` for a crashed one)."""

    def __init__(self, session: MigrationSession, options: CutoverOptions | None = None, *,
                 emit: Emit = discard, cancel: CancelToken | None = None) -> None:
        self.session = session
        self.options = options or CutoverOptions()
        self.emit = emit
        self.cancel = cancel or CancelToken()
        self.plan = session.plan
        self.source = writable(self.plan.source)
        self.steps: list[tuple[str, float]] = []
        self._switched: list[str] = []

    # -- the record ------------------------------------------------------------------------------

    def _record(self) -> dict[str, Any]:
        recorded = self.session.store.meta().get("cutover")
        return dict(recorded) if isinstance(recorded, dict) else {}

    def _save(self, **fields: Any) -> None:
        self.session.store.record_meta("cutover", {**self._record(), **fields, "updated_at": time.time()})

    def _names(self, database: str) -> naming.ReplicationNames:
        return naming.replication_names(self.plan.source, self.plan.target, database)

    @contextmanager
    def _step(self, name: str, detail: str = "") -> Iterator[None]:
        self.emit(CutoverStep(name, "started", detail))
        started = time.monotonic()
        try:
            yield
        except BaseException as exc:
            self.emit(CutoverStep(name, "failed", _reason(exc), time.monotonic() - started))
            raise
        seconds = time.monotonic() - started
        self.steps.append((name, seconds))
        self.emit(CutoverStep(name, "done", detail, seconds))

    def _check(self, preflight: Preflight, name: str, status: Literal["ok", "warning", "error"], observed: str,
               remedy: str = "", database: str | None = None) -> None:
        check = PreflightCheck(name, status, observed, remedy, database)
        preflight.checks.append(check)
        self.emit(CheckReported(name, status, observed, remedy, database))

    # -- preflight -------------------------------------------------------------------------------

    def preflight(self) -> Preflight:
        """What the cutover would do and whether it can; changes nothing on any server."""
        record = self._record()
        databases = self.session.databases(include_cut_over=True)
        switched = tuple(d for d in databases if self.session.store.state(d) is DatabaseState.CUT_OVER)
        pending = tuple(d for d in databases if d not in switched)
        preflight = Preflight(databases, switched=switched,
                              unfinished=record if record.get("state") not in (None, "done", "aborted") else None)
        if preflight.unfinished and self.running_elsewhere():
            self._check(preflight, "earlier cutover", "error", "a cutover of this migration is running right now",
                        f"Wait for it (`pgtide attach {self.session.migration_id}`); never --abort a running one.")
            return preflight
        if preflight.unfinished and preflight.unfinished.get("state") == "fenced":
            since = human_seconds(time.time() - float(preflight.unfinished.get("fenced_at", time.time())))
            self._check(preflight, "earlier cutover", "warning",
                        f"a cutover was interrupted {since} ago with writes fenced "
                        f"({len(preflight.unfinished.get('fenced', []))} role(s)); they are still fenced",
                        "Run the cutover again to finish it, or `pgtide cutover --abort` to lift the fence.")
        if not pending:
            if switched:
                self._check(preflight, "databases", "ok", f"{', '.join(switched)} already switched to the target"
                            + (": finishing the steps left" if record.get("state") == "switched" else ""))
            else:
                self._check(preflight, "databases", "error", "this migration has no database to cut over",
                            "Start it with `pgtide init`, then cut over once `pgtide status` shows it streaming.")
            return preflight
        started = time.monotonic()
        flushed_before = self._replication_checks(preflight, pending)
        self._schema_checks(preflight, pending)
        self._verify_check(preflight, pending)
        self._fence_checks(preflight, pending)
        self._role_checks(preflight)
        if self.options.reverse:
            self._reverse_checks(preflight)
        self._estimate(preflight, pending, flushed_before, time.monotonic() - started)
        return preflight

    def _replication_checks(self, preflight: Preflight, databases: Sequence[str]) -> dict[str, int]:
        with self.session.monitor(list(databases)) as monitor:
            status = monitor.poll()
            # A subscription that was just created or restarted catches up in a moment:
            # give it that moment rather than refusing.
            deadline = time.monotonic() + 10
            while any(db.state is ReplicationState.CATCHING_UP for db in status.databases) \
                    and time.monotonic() < deadline:
                self.cancel.wait(0.5)
                status = monitor.poll()
        flushed: dict[str, int] = {}
        for db in status.databases:
            if db.state is not ReplicationState.STREAMING or db.target.pending_tables:
                pending = ", ".join(f"{t.schema}.{t.name}" for t in db.target.pending_tables[:5])
                self._check(preflight, "streaming", "error",
                            f"{db.state.value}: {db.reason}" + (f" (tables not ready: {pending})" if pending else ""),
                            "Wait until `pgtide status` shows every database streaming, then run the cutover.",
                            db.database)
                continue
            self._check(preflight, "streaming", "ok", "every table streaming", database=db.database)
        for database in databases:
            with connect(self.source.with_dbname(database)) as conn:
                row = conn.execute(_LAG_SQL, [self._names(database).slot]).fetchone()
            if row is None or row[0] is None:
                continue  # reported above: no slot
            lag, confirmed = int(row[0]), row[1]
            preflight.lag_bytes[database] = lag
            flushed[database] = _lsn(confirmed)
            if lag > self.options.lag_threshold:
                self._check(preflight, "lag", "error",
                            f"{human_bytes(lag)} behind (threshold {human_bytes(self.options.lag_threshold)})",
                            "Wait for the target to catch up (watch `pgtide status`), or raise --max-lag.", database)
            else:
                self._check(preflight, "lag", "ok", f"{human_bytes(lag)} behind", database=database)
        return flushed

    def _schema_checks(self, preflight: Preflight, databases: Sequence[str]) -> None:
        for database in databases:
            with connect(self.source.with_dbname(database)) as conn:
                tables = conn.execute(_PUBLISHED_SQL, [self._names(database).publication]).fetchall()
                arrays = [[t[0] for t in tables], [t[1] for t in tables]]
                source_columns = _columns(conn.execute(_COLUMNS_SQL, arrays).fetchall())
            with connect(self.plan.target.with_dbname(database)) as conn:
                target_columns = _columns(conn.execute(_COLUMNS_SQL, arrays).fetchall())
            differences = []
            for table in sorted(source_columns):
                theirs = target_columns.get(table)
                if theirs is None:
                    differences.append(f"{table} missing on the target")
                elif theirs != source_columns[table]:
                    differences.append(f"{table}: {_column_difference(source_columns[table], theirs)}")
            if differences:
                self._check(preflight, "schema", "error",
                            f"{len(differences)} table(s) differ: " + "; ".join(differences[:5]),
                            "Make the target's tables match the source (the same ALTER TABLE on the target), "
                            "then run the cutover again.", database)
            else:
                self._check(preflight, "schema", "ok", f"{len(source_columns)} published table(s) alike",
                            database=database)

    def _verify_check(self, preflight: Preflight, databases: Sequence[str]) -> None:
        last = self.session.store.meta().get("last_verify")
        if isinstance(last, dict) and last.get("ok"):
            age = human_seconds(time.time() - float(last.get("at", time.time())))
            self._check(preflight, "last verify", "ok", f"clean, {age} ago")
            return
        if self.options.verify == "none" and not isinstance(last, dict):
            self._check(preflight, "last verify", "error", "never verified, and --verify none skips the final one",
                        "Run `pgtide verify` first, or leave --verify at its default.")
            return
        self.emit(Log("info", "no clean verify recorded: verifying every table now (replication keeps running)"))
        report = self.session.verify()
        if report.ok:
            self._check(preflight, "last verify", "ok", f"clean, just now ({len(report.tables)} table(s))")
        else:
            tables = ", ".join(t.display for t in report.differing_tables[:5])
            self._check(preflight, "last verify", "error", f"differences in {tables}",
                        "Find out why with `pgtide verify` (rows it lists), fix them, then cut over; "
                        "a cutover now would move those differences into production.")

    def _fence_checks(self, preflight: Preflight, databases: Sequence[str]) -> None:
        with connect(self.source.with_dbname("postgres")) as conn:
            preflight.sessions = client_sessions(conn, databases)
            may_signal, may_alter = may_fence(conn)
        preflight.roles = sorted({(s.role, s.database) for s in preflight.sessions})
        listed = "; ".join(s.describe() for s in preflight.sessions[:8]) + (
            f" and {len(preflight.sessions) - 8} more" if len(preflight.sessions) > 8 else "")
        if self.options.fence == "none":
            self._check(preflight, "fence", "warning" if preflight.sessions else "ok",
                        (f"--fence none: {len(preflight.sessions)} session(s) still connected ({listed})"
                         if preflight.sessions else "--fence none: no application session is connected"),
                        "Stop the application first: with --fence none, pgtide does not stop its writes."
                        if preflight.sessions else "")
            return
        if self.options.fence == "pgbouncer":
            self._pgbouncer_check(preflight, databases)
            return
        roles = ", ".join(f"{r}@{d}" for r, d in preflight.roles) or "none connected now"
        self._check(preflight, "fence", "ok",
                    f"roles to set read-only: {roles}; sessions to end: {len(preflight.sessions)}"
                    + (f" ({listed})" if preflight.sessions else ""))
        if not (may_signal and may_alter):
            self._check(preflight, "fence rights", "error",
                        "the migration role may not " + " and ".join(
                            what for what, ok in (("end other roles' sessions", may_signal),
                                                  ("set other roles' defaults", may_alter)) if not ok),
                        "Run the cutover as a superuser, or GRANT pg_signal_backend and CREATEROLE to the "
                        "migration role; or stop the application yourself and pass --fence none.")
        supers = sorted({s.role for s in preflight.sessions if s.superuser})
        if supers:
            self._check(preflight, "superuser sessions", "warning",
                        f"superuser role(s) {', '.join(supers)} connected: such a session can turn the "
                        "read-only default off, so the fence does not bind it",
                        "Make sure those clients stop writing (the fence is against applications, not a "
                        "security boundary).")

    def _pgbouncer_check(self, preflight: Preflight, databases: Sequence[str]) -> None:

        assert self.options.pgbouncer is not None
        try:
            with _bouncer(self.options) as admin:
                known = {str(d.get("name")) for d in admin.databases()}
                missing = [d for d in databases if d not in known]
                for database in databases:
                    if database not in missing:
                        admin.check_redirect(database)  # the file can be rewritten: before any PAUSE
                wait_limit = float(admin.settings().get("query_wait_timeout", "120") or 120)
        except PgtideError as exc:
            self._check(preflight, "fence", "error", f"PgBouncer: {exc.cause}", exc.remedy)
            return
        if missing:
            self._check(preflight, "fence", "error", f"PgBouncer has no database {', '.join(missing)}",
                        "Name the migrated databases in PgBouncer's [databases] as on the source.")
        elif 0 < wait_limit < self.options.quiet_timeout + self.options.drain_timeout:
            self._check(preflight, "fence", "warning",
                        f"PgBouncer's query_wait_timeout is {wait_limit:g} s: clients queued longer than that "
                        "get an error", "Raise query_wait_timeout in pgbouncer.ini for the cutover, or accept it.")
        else:
            self._check(preflight, "fence", "ok",
                        f"PgBouncer will pause {', '.join(databases)}; {len(preflight.sessions)} session(s) "
                        "on the source in all (those not through PgBouncer are not paused)")

    def _role_checks(self, preflight: Preflight) -> None:
        roles = sorted({s.role for s in preflight.sessions})
        if not roles:
            return
        try:
            with connect(self.plan.target.with_dbname("postgres")) as conn:
                rows = conn.execute("SELECT rolname, rolcanlogin, rolpassword IS NULL FROM pg_authid "
                                    "WHERE rolname = ANY(%s)", [roles]).fetchall()
        except psycopg.errors.InsufficientPrivilege:
            self._check(preflight, "login roles", "warning",
                        "cannot read pg_authid on the target to see whether the application's roles can log in",
                        "Check that " + ", ".join(roles) + " can log in on the target before pointing the "
                        "application at it.")
            return
        found = {name: (login, nopassword) for name, login, nopassword in rows}
        missing = [r for r in roles if r not in found]
        preflight.passwordless = [r for r in roles if r in found and found[r][1]]
        cannot_login = [r for r in roles if r in found and not found[r][0]]
        problems = ([f"missing on the target: {', '.join(missing)}"] if missing else []) + (
            [f"no password on the target: {', '.join(preflight.passwordless)}"] if preflight.passwordless else []) + (
            [f"NOLOGIN on the target: {', '.join(cannot_login)}"] if cannot_login else [])
        if not problems:
            self._check(preflight, "login roles", "ok", f"{', '.join(roles)} can log in on the target")
            return
        if self.options.copy_role_passwords and preflight.passwordless and not missing and not cannot_login:
            self._check(preflight, "login roles", "ok",
                        f"the SCRAM verifiers of {', '.join(preflight.passwordless)} will be copied from the source")
            return
        self._check(preflight, "login roles", "error", "the application's roles: " + "; ".join(problems),
                    "Pass --copy-role-passwords (copies SCRAM verifiers, never plaintext; needs a superuser on "
                    "the source), or on the target run ALTER ROLE <name> PASSWORD '...' / CREATE ROLE; "
                    "--force if the application logs in another way (certificates, trust).")

    def _reverse_checks(self, preflight: Preflight) -> None:
        versions = {}
        for side, endpoint in (("source", self.source), ("target", self.plan.target)):
            with connect(endpoint.with_dbname("postgres")) as conn:
                row = conn.execute("SELECT current_setting('server_version_num')::int, "
                                   "current_setting('wal_level')").fetchone()
                assert row is not None
                versions[side] = row
        old = [side for side, (version, _) in versions.items() if version < 160000]
        if old:
            self._check(preflight, "reverse", "error",
                        f"--reverse needs PostgreSQL 16 or later on both servers ({' and '.join(old)} is older): "
                        "without origin = none, changes would loop",
                        "Cut over without --reverse (keep a backup of the source for a rollback).")
        elif versions["target"][1] != "logical":
            self._check(preflight, "reverse", "error", f"the target's wal_level is {versions['target'][1]}",
                        "Set wal_level = logical on the target (a restart), or cut over without --reverse.")
        elif any(s.role == self._own_role() for s in preflight.sessions) and self.options.fence == "roles":
            self._check(preflight, "reverse", "error",
                        f"the application uses pgtide's own role {self._own_role()!r}: the roles fence makes it "
                        "read-only on the source, and the reverse subscription applies as that role",
                        "Give the application its own role, or use --fence pgbouncer / none with --reverse.")
        else:
            self._check(preflight, "reverse", "ok", "the target will publish its changes back to the source")

    def _own_role(self) -> str:
        with connect(self.source.with_dbname("postgres")) as conn:
            row = conn.execute("SELECT current_user").fetchone()
        return str(row[0]) if row else ""

    def _estimate(self, preflight: Preflight, databases: Sequence[str], flushed_before: dict[str, int],
                  elapsed: float) -> None:
        applied = 0
        for database in databases:
            with connect(self.source.with_dbname(database)) as conn:
                row = conn.execute(_LAG_SQL, [self._names(database).slot]).fetchone()
            if row and row[1] and database in flushed_before:
                applied += max(0, _lsn(row[1]) - flushed_before[database])
        if elapsed > 0.5 and applied:
            preflight.apply_rate = applied / elapsed
        lag = sum(preflight.lag_bytes.values())
        drain = lag / preflight.apply_rate if preflight.apply_rate else (0.0 if not lag else None)
        if drain is None:
            self._check(preflight, "estimate", "ok", f"{human_bytes(lag)} to drain; apply rate not measurable yet")
            return
        # A second for the fence and the switch on a nearby server; the drain at the rate seen.
        preflight.estimate_seconds = 1.0 + drain
        self._check(preflight, "estimate", "ok",
                    f"about {human_seconds(preflight.estimate_seconds)} of write downtime "
                    f"({human_bytes(lag)} to drain" + (f" at {human_bytes(int(preflight.apply_rate))}/s"
                                                       if preflight.apply_rate else "") + ", plus the final verify)")

    # -- run ---------------------------------------------------------------------------------------

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One cutover (or abort) of a migration at a time, across processes: a second one would
        take the first one's fence for a crashed run's and lift it mid-cutover."""
        import fcntl
        import os

        path = self.session.store.path.with_name("cutover.lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InputError("a cutover of this migration is running right now (in another process)",
                                 f"Follow it with `pgtide attach {self.session.migration_id}` if it runs in the "
                                 "worker; do not abort it from here.", title="Cutover running") from None
            self._holding = True
            yield
        finally:
            self._holding = False
            os.close(fd)

    def running_elsewhere(self) -> bool:
        from ..jobs.worker import file_lock_held

        if getattr(self, "_holding", False):
            return False  # this very run
        return file_lock_held(self.session.store.path.with_name("cutover.lock"))

    def run(self, preflight: Preflight | None = None) -> CutoverResult:
        with self._exclusive():
            return self._run(preflight)

    def _run(self, preflight: Preflight | None) -> CutoverResult:
        preflight = preflight or self.preflight()
        errors = preflight.errors(force=self.options.force)
        if errors:
            raise CheckFailed(f"{len(errors)} preflight check(s) failed: "
                              + "; ".join(f"{c.name}: {c.observed}" for c in errors),
                              "Fix what the checks say, then run the cutover again"
                              + (" (--force passes over: " + ", ".join(sorted(FORCEABLE)) + ")"
                                 if any(c.forceable for c in errors) else "") + ". Nothing was changed.")
        pending = tuple(d for d in preflight.databases if d not in preflight.switched)
        sequences = 0
        matviews: list[str] = []
        verified = 0
        fence_started: float | None = None
        switch_done: float | None = None
        if not pending and self._record().get("state") in ("fenced", "switched"):
            # Killed after the switch, before PgBouncer was resumed (or the fence lifted as
            # asked): finish that now.
            with self._step("finish switch", "the switch was done by an earlier run"):
                self._fencer(preflight).after_switch(preflight.switched, unfence=self.options.unfence_source)
        if pending:
            with self._step("materialized views"):
                for database in pending:
                    matviews += refresh_matviews(self.source.with_dbname(database),
                                                 self.plan.target.with_dbname(database))
            self.cancel.check()
            fence_started = time.monotonic()
            fencer = self._fencer(preflight)
            try:
                with self._step("fence", f"--fence {self.options.fence}"):
                    # Recorded before the fence goes up: a crash halfway leaves a record that
                    # --abort and a rerun act on.
                    self._save(state="fenced", fence=self.options.fence, fenced_at=time.time(),
                               databases=list(pending))
                    fencer.up(pending)
                with self._step("quiet", "no open write transaction, none prepared"):
                    wait_for_quiet(self.source, pending, timeout=self.options.quiet_timeout, cancel=self.cancel)
                with self._step("drain"):
                    self._drain(pending)
                with self._step("sequences"):
                    for database in pending:
                        report = sync_sequences(self.source.with_dbname(database),
                                                self.plan.target.with_dbname(database),
                                                margin=self.options.sequence_margin)
                        sequences += len(report.changed)
                        for name in report.clamped:
                            self.emit(Log("warning", f"sequence {name} is at its maximum on the target", database))
                if self.options.copy_role_passwords and preflight.passwordless:
                    with self._step("role passwords"):
                        self._copy_role_passwords(preflight.passwordless)
                if self.options.verify != "none":
                    with self._step("final verify", f"--verify {self.options.verify}"):
                        verified = self._final_verify(pending)
                self.cancel.check()
                fencer.check_holding(pending)
                with self._step("switch", "with a reverse subscription" if self.options.reverse else ""):
                    for database in pending:
                        self._switch(database)
                switch_done = time.monotonic()
            except BaseException as exc:
                self._abort_run(fencer, pending, list(self._switched), exc)
                raise  # _abort_run raises its own error; this keeps mypy's flow analysis honest
            fencer.after_switch(pending, unfence=self.options.unfence_source)
            if self.options.fence == "pgbouncer":
                switch_done = time.monotonic()  # clients write again once PgBouncer resumed them
        self._save(state="done", finished_at=time.time(),
                   **({"downtime_seconds": switch_done - fence_started}
                      if switch_done is not None and fence_started is not None else {}))
        source_fenced = self.options.fence == "roles" and not self.options.unfence_source and bool(pending)
        next_steps = ["Point the application at the target now."]
        if source_fenced:
            next_steps.append("The source stays read-only for the fenced roles; `pgtide cutover --abort` "
                              "is no longer possible, `pgtide teardown` lifts the fence when you are done.")
        if self.options.reverse:
            next_steps.append("Changes on the target flow back to the source (rollback window); "
                              "`pgtide teardown` ends that.")
        return CutoverResult(
            preflight.databases,
            None if switch_done is None or fence_started is None else switch_done - fence_started,
            self.steps, sequences, matviews, verified, self.options.reverse, source_fenced, next_steps)

    def _fencer(self, preflight: Preflight) -> _Fencer:
        if self.options.fence == "roles":
            return _RolesFencer(self)
        if self.options.fence == "pgbouncer":
            return _PgBouncerFencer(self)
        return _Fencer(self)

    def _abort_run(self, fencer: _Fencer, pending: Sequence[str], switched: Sequence[str],
                   exc: BaseException) -> None:
        # What the servers say, not only what this run noted: a subscription already gone
        # means that database switched, whatever failed after (a publication, the record).
        switched = sorted(set(switched) | {d for d in pending if self._subscription_gone(d)})
        left = [d for d in pending if d not in switched]
        lifted = ""
        lift_failed = False
        try:
            fencer.down(left)
            lifted = "the fence is lifted" if self.options.fence != "none" else "nothing was fenced"
        except (PgtideError, psycopg.Error) as lift_error:
            lift_failed = True
            lifted = (f"the fence could NOT be lifted ({_reason(lift_error)}): run `pgtide cutover --abort` "
                      "as soon as the source is reachable")
        state = "switched" if switched else ("fenced" if lift_failed else "aborted")
        self._save(state=state, aborted_at=time.time(), reason=_reason(exc),
                   **({"switched": list(switched)} if switched else {}))
        where = (f"{', '.join(switched)} switched already (run the cutover again to finish); " if switched else "")
        cause = f"{_reason(exc)}: {where}{lifted}; replication keeps streaming, nothing was lost"
        remedy = "Fix the cause above, then run `pgtide cutover` again."
        if isinstance(exc, (KeyboardInterrupt, Cancelled)):
            raise CutoverInterrupted(cause, "Run `pgtide cutover` again when ready.") from None
        if isinstance(exc, PgtideError) and exc.remedy:
            remedy = exc.remedy
        raise CutoverAborted(cause, remedy) from exc

    def _subscription_gone(self, database: str) -> bool:
        try:
            with connect(self.plan.target.with_dbname(database)) as conn:
                return conn.execute("SELECT 1 FROM pg_subscription WHERE subname = %s AND subdbid = "
                                    "(SELECT oid FROM pg_database WHERE datname = current_database())",
                                    [self._names(database).subscription]).fetchone() is None
        except (PgtideError, psycopg.Error):
            return False  # cannot tell: the record's word stands

    def _drain(self, databases: Sequence[str]) -> None:
        with connect(self.source.with_dbname("postgres")) as conn:
            position = current_insert_lsn(conn)
            block = int(conn.execute("SELECT current_setting('wal_block_size')").fetchone()[0])  # type: ignore[index]
            # A synchronous commit flushes the WAL up to here at once: with synchronous_commit
            # off on the source, the last commits would otherwise wait for the WAL writer
            # before the walsender may send them (measured: 0.39 s of drain → 0.02-0.13 s).
            # local: a synchronous standby that is down must not hold the cutover.
            conn.execute("SET synchronous_commit = local")
            conn.execute("SELECT pg_current_xact_id()")
        deadline = time.monotonic() + self.options.drain_timeout
        for database in databases:
            subscription = self._names(database).subscription
            with connect(self.plan.target.with_dbname(database), pooled=False) as conn:
                progress = ApplyProgress(conn, subscription)
                while not lsn_reached(progress.lsn(), position, block):
                    if time.monotonic() > deadline:
                        raise MigrationFailed(
                            f"{database}: the target did not apply up to the fence position in "
                            f"{self.options.drain_timeout:.0f} s",
                            "See `pgtide status` for why the subscription is behind (its last error), then "
                            "run the cutover again.")
                    self.cancel.check()
                    self.cancel.wait(0.02)
                # The apply worker commits without waiting for its WAL flush; one synchronous
                # commit here flushes everything it applied before the subscription is dropped.
                conn.execute("SET synchronous_commit = local")
                conn.execute("SELECT pg_current_xact_id()")

    def _final_verify(self, databases: Sequence[str]) -> int:
        """Verify, fenced: the rows written since the last clean verify where that bound holds,
        whole tables where it does not (engine/since_verify.py); everything with --verify full."""
        from ..verify.compare import VerifyOptions
        from . import since_verify

        full: list[str] | None = None  # None: every table
        last = self.session.store.meta().get("last_verify")
        recorded = last.get("marks") if isinstance(last, dict) and last.get("ok") else None
        checked = 0
        if self.options.verify == "changed" and isinstance(recorded, dict):
            full = []
            bounded: list[tuple[Any, ...]] = []
            resolved = self.session.store.meta().get("resolved", {})
            for database in databases:
                mark = recorded.get(database)
                source = self.source.with_dbname(database)
                target = self.plan.target.with_dbname(database)
                now_source = since_verify.current_stats(source)
                now_target = since_verify.current_stats(target)
                before = (mark or {}).get("source", {}).get("stats", {})
                before_target = (mark or {}).get("target", {}).get("stats", {})
                # Written since, on either side (a stray write on the target counts). The
                # counters are trusted only where every application session was ended (the
                # roles fence: a backend publishes its counts when it exits); with PgBouncer's
                # or no fence live sessions may not have published theirs yet, so every table
                # gets the bounded compare.
                trust = self.options.fence == "roles"
                # Only the migrated tables that carry rows (statistics also count matviews, and
                # tables the selection left out).
                migrated = {t for t, entry in resolved.get(database, {}).items() if entry.get("mode") != "schema_only"}
                written = [t for t, (writes, _) in now_source.items() if t in migrated and (
                           not trust or before.get(t, [None])[0] != writes
                           or before_target.get(t, [None])[0] != now_target.get(t, [None])[0])]
                if not written:
                    continue
                keys = since_verify.primary_keys(source)
                for table in written:
                    schema, name = table.split(".", 1)
                    entry = resolved.get(database, {}).get(table, {})
                    # A row filter or time window: rows outside it are rightly absent on the target.
                    mode = "filtered" if entry.get("where") or entry.get("time_cutoff") else entry.get("mode")
                    vacuumed = (before.get(table, [0, None])[1] != now_source[table][1]
                                or (mark or {}).get("target", {}).get("stats", {}).get(table, [0, None])[1]
                                != now_target.get(table, [0, -1])[1])
                    if mark is None or mode != "full" or len(keys.get(table, [])) != 1 or vacuumed:
                        full.append(_quoted(database, schema, name))
                        continue
                    bounded.append((database, source, target, schema, name, keys[table][0],
                                    {"source": mark["source"]["xmin"], "target": mark["target"]["xmin"]}))
            # The bounded tables side by side (each already reads both servers at once).
            with ThreadPoolExecutor(max_workers=4, thread_name_prefix="pgtide-fenced-verify") as pool:
                outcomes = list(pool.map(lambda job: (job[0], since_verify.compare_written(*job[1:])), bounded))
            for database, result in outcomes:
                table = result.table
                checked += 1
                if not result.ok:
                    counts = ("" if result.source_rows == result.target_rows else
                              f"{result.source_rows:,} rows on the source, {result.target_rows:,} on the target; ")
                    raise MigrationFailed(
                        f"the final verify found differences in {database}.{table}: {counts}"
                        + (f"rows differ at {result.key_list}" if result.differing else ""),
                        "Look at them with `pgtide verify`; the cutover did not switch anything.",
                        title="Differences found")
                self.emit(Log("info", f"{table}: the {result.compared:,} row(s) written since the last verify "
                                      "match", database))
            if not full:
                if not checked:
                    self.emit(Log("info", "no table was written since the last clean verify"))
                return checked
        # Writes are fenced and replication drained: nothing is in flight, a static compare is
        # exact. Every table at once (the servers have nothing else to do).
        report = self.session.verify(tables=full, options=VerifyOptions(live=False, jobs=4), cancel=self.cancel)
        if not report.ok:
            listed = ", ".join(f"{t.display} ({t.difference_count} difference(s))" for t in report.differing_tables[:5])
            raise MigrationFailed(f"the final verify found differences: {listed}",
                                  "Look at them with `pgtide verify`; the cutover did not switch anything.",
                                  title="Differences found")
        return checked + len(report.tables)

    def _switch(self, database: str) -> None:
        from .migrate import teardown_database

        names = self._names(database)
        reverse: dict[str, str] = {}
        # Checked before anything is dropped: a record that cannot take the move must stop
        # the cutover while replication still runs, not after.
        check_transition(database, self.session.store.state(database), DatabaseState.CUT_OVER)
        with connect(self.source.with_dbname(database)) as conn:
            # What flows forward now is what flows back (read before the publication goes).
            tables = [(s, t) for s, t in conn.execute(_PUBLISHED_SQL, [names.publication])]
        teardown_database(replace(self.plan, source=self.source), database, self.emit)
        self._switched.append(database)  # from here on the target is the primary, whatever fails next
        self._save(switched=sorted({*self._record().get("switched", []), database}))
        self.session.store.transition(database, DatabaseState.CUT_OVER, cutover_at=time.time())
        if self.options.reverse and tables:
            reverse = self._reverse(database, names, tables)
            self.session.store.update(database, reverse=reverse)
        self.emit(Log("info", "switched: the target is the primary" + (" (changes flow back to the source)"
                                                                        if reverse else ""), database))

    def _reverse(self, database: str, names: naming.ReplicationNames,
                 tables: Sequence[tuple[str, str]]) -> dict[str, str]:
        publication, subscription = f"{names.publication}_back", f"{names.subscription}_back"
        statement = sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(
            sql.Identifier(publication), sql.SQL(", ").join(sql.Identifier(s, t) for s, t in tables))
        with connect(self.plan.target.with_dbname(database)) as conn:
            if not conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", [publication]).fetchone():
                conn.execute(statement)
        conninfo = self.plan.target.with_dbname(database).conninfo(
            include_password=self.plan.options.subscription_password, application_name="pgtide_reverse")
        with connect(self.source.with_dbname(database)) as conn:
            if not conn.execute("SELECT 1 FROM pg_subscription WHERE subname = %s", [subscription]).fetchone():
                conn.execute(sql.SQL(
                    "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} "
                    "WITH (copy_data = false, origin = none, slot_name = {})").format(
                    sql.Identifier(subscription), sql.Literal(conninfo), sql.Identifier(publication),
                    sql.Literal(subscription)))
        return {"publication": publication, "subscription": subscription, "slot": subscription}

    def _copy_role_passwords(self, roles: Sequence[str]) -> None:
        with connect(self.source.with_dbname("postgres")) as conn:
            rows = conn.execute("SELECT rolname, rolpassword FROM pg_authid WHERE rolname = ANY(%s) "
                                "AND rolpassword LIKE 'SCRAM-SHA-256$%%'", [list(roles)]).fetchall()
        skipped = sorted(set(roles) - {name for name, _ in rows})
        with connect(self.plan.target.with_dbname("postgres")) as conn:
            for name, verifier in rows:
                # A verifier, not a password: the server stores it as given. ALTER ROLE takes no
                # parameters, so it travels as a quoted literal.
                conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(name), sql.Literal(verifier)))
        if skipped:
            self.emit(Log("warning", "no SCRAM verifier to copy for " + ", ".join(skipped)
                          + " (no password, or an md5 one): set their passwords on the target"))

    # -- abort -----------------------------------------------------------------------------------

    def abort(self) -> list[str]:
        """Lift the fence an interrupted cutover left (``pgtide cutover --abort``)."""
        with self._exclusive():
            record = self._record()
            if not (record.get("fenced") or record.get("paused")) or record.get("state") == "done":
                raise InputError("no cutover of this migration left writes fenced"
                                 + (f" (the last one is {record['state']})" if record.get("state") else ""),
                                 "Nothing to abort.", title="Nothing to abort")
            switched = set(record.get("switched", [])) | {
                d for d in record.get("databases", []) if self.session.store.state(d) is DatabaseState.CUT_OVER}
            left = [d for d in record.get("databases", []) if d not in switched]
            if not left:
                raise InputError("every database of that cutover was switched already: the target is the primary",
                                 "Lifting the fence now would let the application write to the old source. Run "
                                 "`pgtide cutover` again to finish it, or `pgtide teardown`.",
                                 title="Already switched")
            fence = record.get("fence", self.options.fence)
            if fence == "pgbouncer" and self.options.pgbouncer is None:
                raise InputError("that cutover paused PgBouncer", "Pass --pgbouncer URL (and its "
                                 "--pgbouncer-databases-file) so pgtide can RESUME it.")
            fencer = _RolesFencer(self) if fence == "roles" else (
                _PgBouncerFencer(self) if fence == "pgbouncer" else _Fencer(self))
            fencer.restore({**record, "fenced": [e for e in record.get("fenced", []) if e.get("database") in left],
                            "paused": [d for d in record.get("paused", []) if d in left]})
            self._save(state="aborted", aborted_at=time.time(), reason="aborted by the user")
            return left


class _Fencer:
    """``--fence none``: the user stopped the application."""

    def __init__(self, cutover: Cutover) -> None:
        self.cutover = cutover

    def up(self, databases: Sequence[str]) -> None:
        pass

    def down(self, databases: Sequence[str]) -> None:
        pass

    def after_switch(self, databases: Sequence[str], *, unfence: bool) -> None:
        pass

    def restore(self, record: dict[str, Any]) -> None:
        pass

    def check_holding(self, databases: Sequence[str]) -> None:
        """Just before the switch: nothing got past the fence."""


class _RolesFencer(_Fencer):
    def __init__(self, cutover: Cutover) -> None:
        super().__init__(cutover)
        self.fence = RolesFence(cutover.source, [], record=self._record)
        record = cutover._record()
        if record.get("state") not in ("done", "aborted"):
            # A cutover that crashed with the fence (partly) up: its entries hold what each role
            # had before; fencing them again would record "on" as the value to go back to.
            self.fence.fenced = [FencedRole(**entry) for entry in record.get("fenced", [])]

    def _record(self, fenced: list[FencedRole]) -> None:
        self.cutover._save(fenced=[f.to_dict() for f in fenced])

    def up(self, databases: Sequence[str]) -> None:
        self.fence.databases = list(databases)
        ended = self.fence.apply()
        roles = ", ".join(sorted({f"{f.role}@{f.database}" for f in self.fence.fenced})) or "none"
        self.cutover.emit(Log("info", f"read-only for {roles}; {len(ended)} session(s) ended"))

    def down(self, databases: Sequence[str]) -> None:
        # What this run holds and what the record holds (an interrupt can land between the two).
        recorded = [FencedRole(**e) for e in self.cutover._record().get("fenced", [])]
        known = {(f.role, f.database) for f in self.fence.fenced}
        self.fence.fenced += [f for f in recorded if (f.role, f.database) not in known]
        lifted = self.fence.lift([f for f in self.fence.fenced if f.database in databases])
        self.cutover._save(fenced=[f.to_dict() for f in self.fence.fenced])
        if lifted:
            self.cutover.emit(Log("info", "fence lifted: " + ", ".join(f"{f.role}@{f.database}" for f in lifted)))

    def after_switch(self, databases: Sequence[str], *, unfence: bool) -> None:
        if unfence:
            self.down(databases)

    def check_holding(self, databases: Sequence[str]) -> None:
        self.fence.databases = list(databases)
        self.fence.check_holding()

    def restore(self, record: dict[str, Any]) -> None:
        entries = [FencedRole(**entry) for entry in record.get("fenced", [])]
        self.fence.lift(entries)
        # Only what was lifted leaves the record: a switched database's fence stays for teardown.
        lifted = {(f.role, f.database) for f in entries}
        self.cutover._save(fenced=[e for e in self.cutover._record().get("fenced", [])
                                   if (e.get("role"), e.get("database")) not in lifted])


@contextmanager
def _bouncer(options: CutoverOptions) -> Iterator[Any]:
    from ..infra.pgbouncer import PgBouncerAdmin

    assert options.pgbouncer is not None
    with PgBouncerAdmin.connect(options.pgbouncer, databases_file=options.pgbouncer_databases_file) as admin:
        yield admin


class _PgBouncerFencer(_Fencer):
    """PAUSE (clients queue instead of failing), then repoint to the target and RESUME."""

    def up(self, databases: Sequence[str]) -> None:
        with _bouncer(self.cutover.options) as admin:
            for database in databases:
                # Recorded first: a crash mid-PAUSE leaves a record that resumes it.
                self.cutover._save(paused=sorted({*self.cutover._record().get("paused", []), database}))
                admin.pause(database, timeout=self.cutover.options.quiet_timeout)

    def down(self, databases: Sequence[str]) -> None:
        with _bouncer(self.cutover.options) as admin:
            for database in databases:
                admin.resume(database)
                self.cutover._save(paused=[d for d in self.cutover._record().get("paused", []) if d != database])

    def after_switch(self, databases: Sequence[str], *, unfence: bool) -> None:
        target = self.cutover.plan.target
        host, port = self.cutover.options.pgbouncer_target or (target.host, int(target.port or 5432))
        with _bouncer(self.cutover.options) as admin:
            for database in databases:
                try:
                    admin.redirect(database, host, port, database)
                except PgtideError as exc:
                    # Resuming now would send the application to the old source, writable and no
                    # longer replicated: its writes would be lost. Paused, clients wait.
                    raise MigrationFailed(
                        f"{database} is switched to the target, but PgBouncer could not be repointed: {exc.cause}",
                        "PgBouncer keeps the clients paused: point its [databases] entry at the target, RELOAD "
                        f"and RESUME {database} yourself (or fix the cause and run `pgtide cutover` again).",
                        title="PgBouncer not repointed") from exc
                admin.resume(database)
                self.cutover._save(paused=[d for d in self.cutover._record().get("paused", []) if d != database])

    def restore(self, record: dict[str, Any]) -> None:
        self.down(record.get("paused", []))


# -- after the cutover, and without one ------------------------------------------------------------


def prepare_target_for_writes(plan: Plan, databases: Sequence[str], *, emit: Emit = discard) -> None:
    """What a teardown without cutover does so the target takes writes: sequences past the
    source's values and populated materialized views refreshed. A server that cannot be
    reached is a warning, never a reason to keep the slot on the source."""
    for database in databases:
        source, target = writable(plan.source.with_dbname(database)), plan.target.with_dbname(database)
        try:
            report = sync_sequences(source, target)
            emit(Log("info", f"set {len(report.changed)} sequence(s) on the target past the source's values", database))
            refreshed = refresh_matviews(source, target)
            if refreshed:
                emit(Log("info", f"refreshed {len(refreshed)} materialized view(s) on the target", database))
        except (PgtideError, psycopg.Error) as exc:
            emit(Log("warning", f"could not prepare the target's sequences and materialized views: {_reason(exc)}; "
                                "set them before the application writes there (pgtide teardown again does it)",
                     database))


def end_cutover(session: MigrationSession, databases: Sequence[str], *, emit: Emit = discard) -> list[str]:
    """teardown of cut-over databases: the reverse path removed and the source's fence lifted."""
    from .migrate import drop_publication, drop_slot, drop_subscription

    plan = session.plan
    removed: list[str] = []
    failed: list[str] = []
    for database in databases:
        reverse = session.store.database(database).get("reverse") or {}
        steps: list[tuple[str, Callable[[], bool]]] = []
        if reverse:
            source, target = writable(plan.source.with_dbname(database)), plan.target.with_dbname(database)
            steps = [
                (f"reverse subscription {reverse['subscription']} on the source",
                 partial(drop_subscription, source, reverse["subscription"])),
                (f"reverse slot {reverse['slot']} on the target", partial(drop_slot, target, reverse["slot"])),
                (f"reverse publication {reverse['publication']} on the target",
                 partial(drop_publication, target, reverse["publication"])),
            ]
        for what, action in steps:
            try:
                if action():
                    removed.append(what)
                    emit(Log("info", f"dropped {what}", database))
            except (PgtideError, psycopg.Error) as exc:
                failed.append(f"{what}: {_reason(exc)}")
    record = session.store.meta().get("cutover")
    fenced = [FencedRole(**entry) for entry in (record or {}).get("fenced", []) if entry.get("database") in databases]
    if fenced and not failed:
        try:
            RolesFence(plan.source, databases, record=lambda _: None).lift(fenced)
            session.store.record_meta("cutover", {**(record or {}), "fenced": []})
            removed.append("the read-only fence on the source (" + ", ".join(f"{f.role}@{f.database}" for f in fenced)
                           + ")")
        except (PgtideError, psycopg.Error) as exc:
            failed.append(f"the fence on the source: {_reason(exc)}")
    if failed:
        raise MigrationFailed("could not remove " + "; ".join(failed),
                              "Run `pgtide teardown` again once both servers accept the connection.",
                              title="Teardown incomplete")
    return removed


def _columns(rows: Sequence[tuple[Any, ...]]) -> dict[str, list[tuple[str, str, bool]]]:
    tables: dict[str, list[tuple[str, str, bool]]] = {}
    for schema, table, column, type_name, not_null in rows:
        tables.setdefault(f"{schema}.{table}", []).append((column, type_name, bool(not_null)))
    return tables


def _column_difference(source: list[tuple[str, str, bool]], target: list[tuple[str, str, bool]]) -> str:
    theirs = {c[0]: c for c in target}
    ours = {c[0]: c for c in source}
    parts = [f"column {c} only on the source" for c in ours if c not in theirs]
    parts += [f"column {c} only on the target" for c in theirs if c not in ours]
    for name in ours.keys() & theirs.keys():
        if ours[name][1] != theirs[name][1]:
            parts.append(f"{name} is {ours[name][1]} on the source, {theirs[name][1]} on the target")
        elif ours[name][2] != theirs[name][2]:
            parts.append(f"{name} is {'NOT NULL' if ours[name][2] else 'nullable'} on the source only")
    return ", ".join(parts) or "columns in another order"


def _lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, PgtideError):
        return exc.cause
    if isinstance(exc, psycopg.Error):
        return exc.diag.message_primary or str(exc)
    if isinstance(exc, (KeyboardInterrupt, Cancelled)):
        return "interrupted"
    return str(exc) or type(exc).__name__


def describe_check(check: PreflightCheck) -> str:
    where = f"{check.database}: " if check.database else ""
    return f"{where}{check.observed}"


Confirm = Callable[[Preflight], bool]
