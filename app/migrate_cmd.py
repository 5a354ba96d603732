"""``pgtide validate | estimate | init | sync | teardown``: the engine, headless."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from typing import Any

from ..core.infra.errors import CheckFailed, InputError
from .args import (
    add_endpoint_arguments,
    add_option_arguments,
    add_selection_arguments,
    plan_from_args,
    session_from_args,
)
from .attach_cmd import add_detach_arguments, run_detached, should_detach
from .foreign_cmd import add_foreign_arguments
from .render import EventPrinter, estimate_table, print_json, table


def _confirm(question: str, args: argparse.Namespace) -> bool:
    if getattr(args, "yes", False):
        return True
    if not sys.stdin.isatty():
        raise InputError("confirmation needed, but there is no terminal to ask on",
                         "Pass --yes (-y) to proceed without asking.")
    answer = input(f"{question} [y/N] ").strip().lower()
    return answer in ("y", "yes")


def _offer_fixes(plan: Any, report: Any, args: argparse.Namespace, printer: EventPrinter) -> Any:
    """--fix: list every fixable check's statements and where each runs, ask, run them, and
    validate again (the new report is returned; the old one when nothing was run)."""
    from ..core.engine.fixes import apply_fixes, restart_pending
    from ..core.engine.validate import validate

    fixes = report.fixes
    if not fixes:
        if not args.json:
            print("\nnothing pgtide can fix by itself" if not report.ok else "\nnothing to fix")
        return report
    if args.json:
        print_json({"event": "fixes", "fixes": [
            {"check": f.check, "database": f.database, "why": f.why, "restart_needed": f.restart_needed,
             "statements": [{"server": s.server, "database": s.database, "sql": s.sql} for s in f.statements]}
            for f in fixes]})
    else:
        print(f"\n{len(fixes)} fix(es) pgtide can apply:")
        for fix in fixes:
            print(f"  [{fix.check}{' / ' + fix.database if fix.database else ''}] {fix.why}")
            for statement in fix.statements:
                print(f"      on the {statement.server} server, database {statement.database}: {statement.sql}")
            if fix.restart_needed:
                print("      (restart needed afterwards: pgtide never restarts a server)")
    if not _confirm(f"Run these {sum(len(f.statements) for f in fixes)} statement(s)?", args):
        print("nothing changed")
        return report
    apply_fixes(plan, fixes, emit=printer)
    if not args.json:
        print("\napplied; checking again:")
    again = validate(plan, emit=printer)
    for note in restart_pending(plan, [f.setting for f in fixes if f.setting]):
        if args.json:
            print_json({"event": "restart_needed", "detail": note})
        else:
            print(f"restart needed: {note}")
    return again


def _cmd_validate(args: argparse.Namespace) -> int:
    from ..core.engine.validate import validate

    plan = plan_from_args(args)
    printer = EventPrinter(as_json=args.json)
    report = validate(plan, emit=printer)
    if args.fix:
        report = _offer_fixes(plan, report, args, printer)
    errors = len(report.errors)
    warnings = sum(1 for c in report.checks if c.status == "warning")
    if args.json:
        print_json({"event": "summary", "ok": report.ok, "errors": errors, "warnings": warnings})
    else:
        print(f"\n{'ready' if report.ok else 'NOT ready'}: {errors} error(s), {warnings} warning(s)")
    return 0 if report.ok else 1


def _cmd_estimate(args: argparse.Namespace) -> int:
    from ..core.catalog.estimate import estimate
    from ..core.catalog.scope import build_scope

    plan = plan_from_args(args, need_target=False)
    result = estimate(build_scope(plan.source, plan.selection, replicate=False))
    if args.json:
        print_json({"event": "estimate", **asdict(result)})
    else:
        print(estimate_table(result))
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    from ..core.catalog.estimate import estimate
    from ..core.engine import migrate
    from ..core.engine.validate import validate

    plan = plan_from_args(args)
    printer = EventPrinter(as_json=args.json, quiet_checks=not args.verbose)
    report = validate(plan, emit=printer)
    if args.fix and report.fixes:
        report = _offer_fixes(plan, report, args, printer)
    # A selection the source refuses (a bad filter, a missing table) is bad input: say it
    # in full, with its fix and exit code 2, rather than as one failed check among others.
    bad_input = next((c for c in report.errors if c.name == "selection"), None)
    if bad_input is not None:
        raise InputError(bad_input.observed, bad_input.remedy, title="Invalid selection")
    if not report.ok or report.scope is None:
        raise CheckFailed(
            f"{len(report.errors)} check(s) failed: " + "; ".join(c.name for c in report.errors),
            "Fix what the checks above say (run `pgtide validate` for the full list), then run init again.",
        )
    result = estimate(report.scope)
    if not args.json:
        print(estimate_table(result))
    else:
        print_json({"event": "estimate", **asdict(result)})
    if not _confirm("Proceed?", args):
        print("nothing done")
        return 0
    if should_detach(args) or args.systemd:
        code = run_detached(plan, "init", as_json=args.json, systemd=args.systemd)
        if code == 0 and not args.json:
            print("\nReplication is running (the worker watches it: `pgtide attach`, `pgtide stop`). "
                  "Watch it with `pgtide status`, prove it with `pgtide verify`.")
        return code
    results = migrate.init(plan, scope=report.scope, emit=printer)
    if args.json:
        print_json({"event": "summary", "databases": [asdict(r) for r in results]})
    else:
        print(table([[r.database, r.status, str(r.tables), f"{r.rows:,}", f"{r.seconds:.1f}s"] for r in results],
                    ["Database", "State", "Tables", "Rows", "Time"]))
        print("\nReplication is running. Watch it with `pgtide status`, prove it with `pgtide verify`.")
    return 0


def _recopy_targets(texts: list[str], databases: tuple[str, ...]) -> dict[str, list[tuple[str, str]]]:
    """``--recopy`` values (table, schema.table, db.schema.table) per database."""
    from ..core.model.selection import parse_qualified_name

    out: dict[str, list[tuple[str, str]]] = {}
    for text in texts:
        parts = parse_qualified_name(text, what="--recopy table")
        if len(parts) == 3:
            database, schema, name = parts
        elif len(databases) == 1:
            database = databases[0]
            schema, name = parts if len(parts) == 2 else ("public", parts[0])
        else:
            raise InputError(f"--recopy {text}: the migration has several databases ({', '.join(databases)})",
                             "Name the table as database.schema.table.")
        if database not in databases:
            raise InputError(f"--recopy {text}: database {database!r} is not part of this migration",
                             "Databases of this migration: " + ", ".join(databases))
        out.setdefault(database, []).append((schema, name))
    return out


def _cmd_sync_action(args: argparse.Namespace) -> int:
    """--recopy, --enable, --skip-failed-transaction: acting on a running subscription."""

    session = session_from_args(args)
    databases = session.databases(args.database)
    printer = EventPrinter(as_json=args.json)
    if args.recopy:
        for database, tables in _recopy_targets(args.recopy, databases).items():
            done = session.recopy(database, tables, emit=printer)
            print_json({"event": "recopy", "database": database, "tables": done}) if args.json else \
                print(f"{database}: copying again under a fresh snapshot: {', '.join(done)} "
                      "(`pgtide status` shows them until ready; then `pgtide verify`)")
        return 0
    if args.enable:
        for database in databases:
            enabled = session.enable(database, emit=printer)
            if not args.json:
                print(f"{database}: {'enabled' if enabled else 'already enabled'}")
        return 0
    return _skip_failed(args, session, databases, printer)


def _skip_failed(args: argparse.Namespace, session: Any, databases: tuple[str, ...], printer: EventPrinter) -> int:
    from ..core.monitor.state import format_lsn, parse_lsn

    if len(databases) != 1:
        raise InputError("--skip-failed-transaction acts on one database", "Add --database NAME.")
    database = databases[0]
    lsn = None
    if args.lsn:
        try:
            lsn = parse_lsn(args.lsn)
        except ValueError:
            raise InputError(f"--lsn {args.lsn!r} is not an LSN", "Pass it as shown by status, e.g. 0/1583B10.") from None
    with session.monitor([database]) as monitor:
        db = monitor.poll().databases[0]
    if lsn is None:
        lsn = db.target.failed_lsn
        if lsn is None:
            raise InputError(f"{database}: the failing transaction's LSN is not known"
                             + (f" ({db.target.last_error})" if db.target.last_error else ""),
                             "pgtide reads it from the target's server log (superuser or pg_read_server_files, "
                             "logging_collector on); else find 'finished at X/Y' in that log and pass --lsn X/Y.")
    print(f"{database}: the failing transaction (finished at {format_lsn(lsn)})"
          + (f" on table {db.target.failed_table}" if db.target.failed_table else "")
          + (f": {db.target.last_error}" if db.target.last_error else ""))
    print("WARNING: every change of that transaction is thrown away on the target (not only the failing row): "
          "those rows will differ from the source. Run `pgtide verify` afterwards; it names them.")
    if not _confirm("Skip it?", args):
        print("nothing done")
        return 0
    session.skip_failed_transaction(database, lsn, emit=printer)
    return 0


def _cmd_sync(args: argparse.Namespace) -> int:
    from ..core.engine import migrate

    actions = [name for name, given in (("--recopy", bool(args.recopy)), ("--enable", args.enable),
                                        ("--skip-failed-transaction", args.skip_failed_transaction)) if given]
    if len(actions) > 1:
        raise InputError(f"{' and '.join(actions)} are separate steps", "Run one at a time.")
    if args.lsn and not args.skip_failed_transaction:
        raise InputError("--lsn goes with --skip-failed-transaction", "Add --skip-failed-transaction, or drop --lsn.")
    if actions:
        return _cmd_sync_action(args)
    plan = plan_from_args(args)
    printer = EventPrinter(as_json=args.json)
    if should_detach(args) or args.systemd:
        return run_detached(plan, "sync", as_json=args.json, systemd=args.systemd, copy_data=not args.no_copy_data)
    results = migrate.sync(plan, emit=printer, copy_data=not args.no_copy_data)
    if args.json:
        print_json({"event": "summary", "databases": [asdict(r) for r in results]})
    else:
        print(table([[r.database, r.status] for r in results], ["Database", "State"]))
    return 0


def _cmd_teardown(args: argparse.Namespace) -> int:

    session = session_from_args(args)
    databases = args.database or None
    what = ", ".join(databases) if databases else f"every database of migration {session.migration_id}"
    if not _confirm(f"Drop pgtide's subscription, slot and publication for {what}?", args):
        print("nothing done")
        return 0
    removed = session.teardown(databases, keep_sequences=args.keep_sequences, emit=EventPrinter(as_json=args.json))
    if args.json:
        print_json({"event": "summary", "removed": removed})
    elif not removed:
        print("nothing to remove")
    return 0


def register(sub: Any) -> None:
    def command(name: str, help_text: str, *, options: bool = True, target: bool = True) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
        add_endpoint_arguments(parser, target=target)
        add_selection_arguments(parser)
        if options:
            add_option_arguments(parser)
        add_foreign_arguments(parser)
        parser.add_argument("--json", action="store_true", help="one JSON object per event")
        return parser

    validate = command("validate", "check that source, target and selection are ready; changes nothing "
                                   "(unless --fix)")
    validate.add_argument("--fix", action="store_true",
                          help="list the statements that fix the failing checks pgtide can fix (replica identity, "
                               "extensions, ALTER SYSTEM), and the server each runs on; ask, run them, check again")
    validate.add_argument("--yes", "-y", action="store_true", help="with --fix: do not ask")
    validate.set_defaults(handler=_cmd_validate)

    estimate = command("estimate", "bytes to move and time per database", options=False, target=False)
    estimate.set_defaults(handler=_cmd_estimate)

    init = command("init", "copy schema and data under a replication snapshot, then start replication")
    init.add_argument("--yes", "-y", action="store_true", help="do not ask before starting")
    init.add_argument("--verbose", "-v", action="store_true", help="also list the checks that passed")
    init.add_argument("--fix", action="store_true",
                      help="first apply the fixes validate --fix offers (listed, asked for unless --yes), then check "
                           "again and start")
    add_detach_arguments(init)
    init.set_defaults(handler=_cmd_init)

    sync = command("sync", "publication + subscription; PostgreSQL copies the data (or it is already there)")
    sync.add_argument("--no-copy-data", action="store_true", help="the rows are already on the target")
    sync.add_argument("--migration", metavar="ID", help="with the actions below: the recorded migration to act on")
    sync.add_argument("--database", action="append", metavar="NAME",
                      help="with the actions below: only this database (repeatable)")
    sync.add_argument("--recopy", action="append", default=[], metavar="TABLE",
                      help="action: copy this table again under a fresh snapshot while the rest streams (after a "
                           "type change or a dropped column; `pgtide schema diff` names them); repeatable")
    sync.add_argument("--enable", action="store_true",
                      help="action: enable the subscription again after fixing what stopped it (status shows the error)")
    sync.add_argument("--skip-failed-transaction", action="store_true",
                      help="action: throw away the remote transaction that stopped the subscription (ALTER "
                           "SUBSCRIPTION ... SKIP, PostgreSQL 15+) and enable it; its rows are lost on the target")
    sync.add_argument("--lsn", metavar="X/Y", help="with --skip-failed-transaction: the failing transaction's finish "
                                                   "LSN, when status cannot read it from the target's log")
    sync.add_argument("--yes", "-y", action="store_true", help="with --skip-failed-transaction: do not ask")
    add_detach_arguments(sync)
    sync.set_defaults(handler=_cmd_sync)

    teardown = command("teardown", "drop pgtide's subscription, slot and publication (idempotent)", options=False)
    teardown.add_argument("--migration", metavar="ID", help="the recorded migration to tear down (see `pgtide migrations`)")
    teardown.add_argument("--database", action="append", metavar="NAME", help="only this database (repeatable)")
    teardown.add_argument("--keep-sequences", action="store_true",
                          help="leave the target's sequences and materialized views as they are (by default a "
                               "database that was not cut over gets them set from the source)")
    teardown.add_argument("--yes", "-y", action="store_true", help="do not ask")
    teardown.set_defaults(handler=_cmd_teardown)
