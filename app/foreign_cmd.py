"""The commands for a foreign source (SQLite, MySQL/MariaDB, MongoDB): the same verbs and exit
codes as for PostgreSQL, on core/foreign/session.py.

``main`` hands a command here when its ``--source`` is a foreign URL or file, or its
``--migration`` names a foreign migration's record.
"""

from __future__ import annotations

import argparse
import getpass
import signal
import sys
import threading
import time
from typing import Any

from ..core.infra.errors import CheckFailed, InputError
from ..core.infra.formatting import human_bytes, human_seconds, read_quoted
from .render import EventPrinter, print_json, table

FOREIGN_COMMANDS = ("validate", "estimate", "init", "sync", "status", "verify", "teardown")


def add_foreign_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("foreign sources (sqlite://, mysql://, mariadb://, mongodb://)")
    group.add_argument("--layout", choices=("typed", "jsonb"),
                       help="typed: real columns by cast rules (default for SQLite and MySQL); jsonb: one "
                            "(id, data jsonb) table per source table, the seed's layout (default for MongoDB)")
    group.add_argument("--cast", action="append", default=[], metavar="TABLE.COLUMN=TYPE",
                       help="typed layout: this column's PostgreSQL type instead of the rule's (repeatable)")
    group.add_argument("--target-schema", metavar="NAME", help="the target schema the tables go to (default public)")
    group.add_argument("--refresh-every", metavar="INTERVAL",
                       help="keep in sync by re-reading every INTERVAL (30s, 5m, 1h) instead of the change log")


def is_foreign(args: argparse.Namespace) -> bool:
    from ..core.foreign.endpoint import looks_foreign

    if looks_foreign(getattr(args, "source", None)):
        return True
    profile = getattr(args, "profile", None)
    if profile and not getattr(args, "source", None):
        from ..core.foreign.profile import is_foreign_profile

        if is_foreign_profile(profile):
            return True
    migration = getattr(args, "migration", None)
    if migration:
        from ..core.foreign.session import is_foreign_record
        from ..core.jobs.store import JobStore

        return JobStore.exists(migration) and is_foreign_record(JobStore(migration))
    return False


def handler_for(command: str) -> Any:
    return {"validate": _cmd_validate, "estimate": _cmd_estimate, "init": _cmd_init, "sync": _cmd_sync,
            "status": _cmd_status, "verify": _cmd_verify, "teardown": _cmd_teardown}[command]


def _split_filter(text: str) -> tuple[str, str]:
    """``TABLE:PREDICATE``; a table name with a colon is written in double quotes."""
    if text.startswith('"'):
        quoted = read_quoted(text)
        rest = text[quoted[1]:] if quoted else ""
        if quoted is None or not rest.startswith(":"):
            raise InputError(f"--table-filter {text!r}: expected \"TABLE\":PREDICATE", "Write TABLE:PREDICATE.")
        return quoted[0], rest[1:]
    table_name, sep, predicate = text.partition(":")
    if not sep or not table_name or not predicate.strip():
        raise InputError(f"--table-filter {text!r}: expected TABLE:PREDICATE",
                         "Write e.g. --table-filter 'orders:created_at >= ''2024-01-01''' (a JSON query for MongoDB).")
    return table_name, predicate


def _names(values: list[str] | None) -> tuple[str, ...]:
    return tuple(n.strip() for value in values or () for n in value.split(",") if n.strip())


def plan_from_args(args: argparse.Namespace, *, need_target: bool = True) -> Any:
    from ..core.foreign.endpoint import ForeignEndpoint
    from ..core.foreign.plan import ForeignPlan, default_layout, parse_interval
    from ..core.infra.endpoint import Endpoint
    from ..core.infra.secrets import with_stored_password

    base = None
    if getattr(args, "profile", None):
        from ..core.foreign.profile import load_foreign_profile

        base = load_foreign_profile(args.profile)
    if getattr(args, "source", None):
        source = ForeignEndpoint.parse(args.source)
    elif base is not None:
        source = base.source
    else:
        raise InputError("no source given", "Pass --source URL, or --profile NAME of a saved profile.")
    if source.kind != "sqlite" and source.resolved_password() is None and sys.stdin.isatty():
        source = source.with_password(getpass.getpass(f"password for {source.redacted()} (empty for none): ") or None)
    target_text = getattr(args, "target", None) or (base.target.conninfo() if base is not None else None)
    if not target_text:
        if need_target:
            raise InputError("no target server given", "Pass --target postgresql://USER@HOST/DBNAME.")
        target_text = "dbname=postgres"
    if getattr(args, "time_filter", None):
        raise InputError("--time-filter is for PostgreSQL sources",
                         "Write the window as a row filter in the source's language: --table-filter TABLE:PREDICATE.")
    filters = dict(base.filters) if base is not None else {}
    filters.update(_split_filter(text) for text in getattr(args, "table_filter", None) or ())
    casts: dict[str, str] = dict(base.casts) if base is not None else {}
    for text in getattr(args, "cast", None) or ():
        key, sep, pg_type = text.partition("=")
        if not sep or "." not in key or not pg_type.strip():
            raise InputError(f"--cast {text!r}: expected TABLE.COLUMN=TYPE", "Write e.g. --cast orders.note=text.")
        casts[key.strip()] = pg_type.strip()
    refresh = getattr(args, "refresh_every", None)

    def pick(flag: tuple[str, ...], recorded: tuple[str, ...]) -> tuple[str, ...]:
        return flag or recorded

    return ForeignPlan(
        source, with_stored_password(Endpoint.parse(target_text)),
        layout=getattr(args, "layout", None) or (base.layout if base is not None else default_layout(source)),
        include=pick(_names(getattr(args, "include_tables", None)), base.include if base else ()),
        exclude=pick(_names(getattr(args, "exclude_tables", None)), base.exclude if base else ()),
        schema_only=pick(_names(getattr(args, "schema_only_tables", None)), base.schema_only if base else ()),
        filters=filters, casts=casts,
        target_schema=getattr(args, "target_schema", None) or (base.target_schema if base else "public"),
        jobs=getattr(args, "jobs", None) or (base.jobs if base else 4),
        drop_existing=bool(getattr(args, "drop_existing", False)),
        resume=getattr(args, "resume", None) is not False,
        refresh_every=parse_interval(refresh) if refresh else (base.refresh_every if base else None))


def session_from_args(args: argparse.Namespace, *, need_target: bool = True) -> Any:
    from ..core.foreign.session import ForeignSession

    migration = getattr(args, "migration", None)
    if migration:
        if getattr(args, "source", None) or getattr(args, "target", None):
            raise InputError("--migration names the servers already",
                             "Pass either --migration ID or --source/--target, not both.")
        return ForeignSession.from_record(migration)
    return ForeignSession(plan_from_args(args, need_target=need_target))


def _print_report(report: Any, args: argparse.Namespace, printer: EventPrinter) -> int:
    errors = len(report.errors)
    warnings = sum(1 for c in report.checks if c.status == "warning")
    if args.json:
        print_json({"event": "summary", "ok": report.ok, "errors": errors, "warnings": warnings})
    else:
        print(f"\n{'ready' if report.ok else 'NOT ready'}: {errors} error(s), {warnings} warning(s)")
    return 0 if report.ok else 1


def _cmd_validate(args: argparse.Namespace) -> int:
    session = session_from_args(args)
    printer = EventPrinter(as_json=args.json)
    return _print_report(session.validate(emit=printer), args, printer)


def _cmd_estimate(args: argparse.Namespace) -> int:
    from ..core.jobs.store import measured_throughput

    session = session_from_args(args, need_target=False)
    adapter = session.open_adapter()
    try:
        tables = session.source_tables(adapter)
    finally:
        adapter.close()
    size = sum(t.size_bytes for t in tables if session.plan.mode(t.name) != "schema_only")
    seconds = size / measured_throughput()
    if args.json:
        print_json({"event": "estimate", "tables": [{"table": t.name, "rows": t.rows, "rows_exact": t.rows_exact,
                                                      "bytes": t.size_bytes} for t in tables],
                    "bytes": size, "seconds": seconds})
        return 0
    rows = [[t.name, f"{t.rows:,}{'' if t.rows_exact else ' (est.)'}", human_bytes(t.size_bytes),
             session.plan.mode(t.name)] for t in tables]
    print(table(rows, ["table", "rows", "size", "copy"]))
    print(f"\n{len(tables)} table(s), {human_bytes(size)}: about {human_seconds(seconds)}")
    return 0


def _confirm(question: str, args: argparse.Namespace) -> bool:
    from .migrate_cmd import _confirm as confirm  # migrate_cmd imports this module

    return confirm(question, args)


def _cmd_init(args: argparse.Namespace) -> int:
    session = session_from_args(args)
    printer = EventPrinter(as_json=args.json, quiet_checks=not getattr(args, "verbose", False))
    report = session.validate(emit=printer)
    bad = next((c for c in report.errors if c.name in ("selection", "layout")), None)
    if bad is not None:
        raise InputError(bad.observed, bad.remedy, title="Invalid selection")
    if not report.ok:
        raise CheckFailed(f"{len(report.errors)} check(s) failed: " + "; ".join(c.name for c in report.errors),
                          "Fix what the checks above say (run `pgtide validate` for the full list), then run init again.")
    if session.plan.drop_existing and not _confirm(
            f"--drop-existing replaces tables of the same names in {session.plan.target.redacted()} "
            f"schema {session.plan.target_schema}. Go on?", args):
        print("nothing changed")
        return 0
    started = time.monotonic()
    tables = session.init(emit=printer)
    capture = session.capture()
    if args.json:
        print_json({"event": "summary", "migration": session.migration_id, "tables": tables,
                    "seconds": round(time.monotonic() - started, 3), "change_capture": capture.ok})
    else:
        print(f"\nmigration {session.migration_id}: {len(tables)} table(s) copied in "
              f"{human_seconds(time.monotonic() - started)}")
        if capture.ok:
            print(f"keep it in sync: pgtide sync --migration {session.migration_id}")
        elif session.plan.refresh_every:
            print(f"keep it in sync: pgtide sync --migration {session.migration_id} (refresh every "
                  f"{session.plan.refresh_every:g}s)")
        else:
            print(f"a one-shot copy: {capture.observed}. {capture.remedy}")
    return 0


def _cmd_sync(args: argparse.Namespace) -> int:
    from .attach_cmd import should_detach

    session = session_from_args(args)
    if getattr(args, "refresh_every", None) and getattr(args, "migration", None):
        from dataclasses import replace

        from ..core.foreign.plan import parse_interval

        session.plan = replace(session.plan, refresh_every=parse_interval(args.refresh_every))
    if should_detach(args):
        return _sync_detached(session, args)
    printer = EventPrinter(as_json=args.json)
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    last = [0.0]

    def progress(summary: dict[str, Any]) -> None:
        now = time.monotonic()
        if args.json:
            print_json({"event": "progress", **summary})
        elif now - last[0] >= 5 or summary.get("mode") == "refresh":
            last[0] = now
            if summary.get("mode") == "refresh":
                print(f"refresh: {summary['inserted']} inserted, {summary['updated']} updated, "
                      f"{summary['deleted']} deleted in {summary['seconds']:.1f}s", flush=True)
            else:
                lag = summary.get("lag_seconds")
                print(f"streaming: {summary['changes']:,} changes applied"
                      + (f", lag {lag:.1f}s" if lag is not None else ""), flush=True)

    if not args.json:
        print(f"keeping migration {session.migration_id} in sync; Ctrl-C stops (a rerun continues where it stopped)",
              file=sys.stderr)
    try:
        session.sync(stop=stop, emit=printer, on_progress=progress)
    finally:
        signal.signal(signal.SIGINT, previous)
    return 4 if stop.is_set() else 0


def _sync_detached(session: Any, args: argparse.Namespace) -> int:
    from ..core.jobs.worker import EventLog
    from .attach_cmd import follow

    log = EventLog(session.migration_id)
    offset = log.path.stat().st_size if log.path.exists() else 0
    pid = session.start_worker(systemd=bool(getattr(args, "systemd", False)))
    if not args.json:
        print(f"syncing in worker {pid} of migration {session.migration_id}: Ctrl-C detaches, the sync goes on; "
              f"`pgtide stop {session.migration_id}` ends it", file=sys.stderr)
    return follow(session.migration_id, as_json=args.json, until="CommandFinished", offset=offset)


def _cmd_status(args: argparse.Namespace) -> int:
    session = session_from_args(args)
    status = session.status()
    data = status.to_dict()
    healthy = status.state in ("copied", "streaming", "torn_down")
    if args.json:
        print_json({"event": "status", **data, "healthy": healthy})
        return 0 if healthy else 1
    print(f"migration {status.migration_id} ({session.plan.source.redacted()} → {session.plan.target.redacted()})")
    print(f"  state: {status.state or 'nothing recorded'}   sync: {status.mode}   worker: {status.worker.get('state')}")
    if status.lag_seconds is not None:
        print(f"  lag: {status.lag_seconds:.1f}s")
    if status.position:
        print(f"  change-log position applied: {status.position}")
    if status.last_refresh:
        r = status.last_refresh
        print(f"  last refresh: {r['inserted']} inserted, {r['updated']} updated, {r['deleted']} deleted, "
              f"{human_seconds(time.time() - r['at'])} ago")
    rows = [[name, str(entry.get("state") or "-"), f"{entry.get('rows', 0):,}"]
            for name, entry in sorted(status.tables.items())]
    if rows:
        print(table(rows, ["table", "copy", "rows"]))
    return 0 if healthy else 1


def _cmd_verify(args: argparse.Namespace) -> int:
    session = session_from_args(args)

    def shown(verdict: Any) -> None:
        if args.json:
            print_json({"event": "table", **verdict.to_dict()})
            return
        if verdict.skipped:
            print(f"  {verdict.table}: skipped ({verdict.skipped})")
        elif verdict.ok:
            print(f"  {verdict.table}: match ({verdict.source_rows:,} rows)")
        else:
            print(f"  {verdict.table}: DIFFERS — source {verdict.source_rows:,} rows, target {verdict.target_rows:,}; "
                  f"{verdict.missing_count} missing on the target, {verdict.extra_count} extra, "
                  f"{verdict.different_count} different")
            for label, ids in (("missing", verdict.missing), ("extra", verdict.extra),
                               ("different", verdict.different)):
                if ids:
                    print(f"      {label}: {', '.join(ids)}")

    report = session.verify(on_table=shown)
    if args.json:
        print_json({"event": "summary", "ok": report.ok, **report.summary()})
    else:
        print(f"\n{'all tables match' if report.ok else 'differences found'} ({report.seconds:.1f}s)")
    return 0 if report.ok else 1


def _cmd_teardown(args: argparse.Namespace) -> int:
    from ..core.jobs.worker import lock_held, send_request

    session = session_from_args(args)
    if not _confirm(f"Stop keeping {session.plan.target.redacted()} in sync with {session.plan.source.redacted()}? "
                    "The target's tables and rows stay.", args):
        print("nothing changed")
        return 0
    if lock_held(session.migration_id):
        send_request(session.migration_id, {"command": "stop"})
        deadline = time.monotonic() + 30
        while lock_held(session.migration_id) and time.monotonic() < deadline:
            time.sleep(0.2)
    removed = session.teardown(emit=EventPrinter(as_json=args.json))
    if args.json:
        print_json({"event": "summary", "removed": removed})
    else:
        print("\n".join(f"removed {r}" for r in removed) or "nothing to remove")
    return 0


def save_profile(name: str, args: argparse.Namespace) -> bool:
    """``pgtide profile save`` for a foreign source; False when the profile is a PostgreSQL one."""
    from ..core.foreign.profile import is_foreign_profile, save_foreign_profile
    from ..core.infra import secrets
    from ..core.model import profiles

    exists = profiles.profile_exists(name)
    if not is_foreign(args) and not (exists and not getattr(args, "source", None) and is_foreign_profile(name)):
        return False
    if exists and not getattr(args, "profile", None) and is_foreign_profile(name):
        args.profile = name  # start from the saved profile; flags override it
    plan = plan_from_args(args)
    if getattr(args, "remember_password", False) and plan.source.password:
        secrets.set_password(plan.source, plan.source.password)  # the keyring keys on .identity alone
    save_foreign_profile(name, plan)
    print(f"{'updated' if exists else 'saved'} profile {name} ({profiles.profile_path(name)})")
    return True
