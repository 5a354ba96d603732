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
from .render import EventPrinter, estimate_table, print_json, table


def _confirm(question: str, args: argparse.Namespace) -> bool:
    if getattr(args, "yes", False):
        return True
    if not sys.stdin.isatty():
        raise InputError("confirmation needed, but there is no terminal to ask on",
                         "Pass --yes (-y) to proceed without asking.")
    answer = input(f"{question} [y/N] ").strip().lower()
    return answer in ("y", "yes")


def _cmd_validate(args: argparse.Namespace) -> int:
    from ..core.engine.validate import validate

    plan = plan_from_args(args)
    report = validate(plan, emit=EventPrinter(as_json=args.json))
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
    if should_detach(args):
        code = run_detached(plan, "init", as_json=args.json)
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


def _cmd_sync(args: argparse.Namespace) -> int:
    from ..core.engine import migrate

    plan = plan_from_args(args)
    printer = EventPrinter(as_json=args.json)
    if should_detach(args):
        return run_detached(plan, "sync", as_json=args.json, copy_data=not args.no_copy_data)
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
        parser.add_argument("--json", action="store_true", help="one JSON object per event")
        return parser

    validate = command("validate", "check that source, target and selection are ready; changes nothing")
    validate.set_defaults(handler=_cmd_validate)

    estimate = command("estimate", "bytes to move and time per database", options=False, target=False)
    estimate.set_defaults(handler=_cmd_estimate)

    init = command("init", "copy schema and data under a replication snapshot, then start replication")
    init.add_argument("--yes", "-y", action="store_true", help="do not ask before starting")
    init.add_argument("--verbose", "-v", action="store_true", help="also list the checks that passed")
    add_detach_arguments(init)
    init.set_defaults(handler=_cmd_init)

    sync = command("sync", "publication + subscription; PostgreSQL copies the data (or it is already there)")
    sync.add_argument("--no-copy-data", action="store_true", help="the rows are already on the target")
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
