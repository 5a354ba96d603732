"""``pgtide schema diff`` and ``pgtide schema apply``: schema drift, shown and (additively) fixed.

Rendering and confirmation only; the differences come from core/monitor/drift.py and the
work from core/engine/schema_sync.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import IO, Any

from ..core.infra.errors import InputError
from .args import add_endpoint_arguments, add_selection_arguments, session_from_args
from .render import EventPrinter

EXIT_OK = 0
EXIT_FAILED = 1


def register(sub: Any) -> None:
    schema = sub.add_parser(
        "schema",
        help="schema drift between source and target: show it (diff), apply the additive fixes (apply)",
        description="Logical replication does not carry DDL. `schema diff` compares the catalogs of the migrated "
                    "databases on both sides; `schema apply` runs the additive statements on the target (and sets "
                    "up tables created on the source since the copy). Tables whose rows no longer fit are named "
                    "for `pgtide sync --recopy TABLE`.",
    )
    actions = schema.add_subparsers(dest="schema_action", metavar="ACTION")
    for name, text in (("diff", "list every difference and the statement that fixes it; exit 1 when there is drift"),
                       ("apply", "list the additive statements, ask, run them on the target (never drops anything)")):
        parser = actions.add_parser(name, help=text, description=text)
        add_endpoint_arguments(parser, migration=True)
        add_selection_arguments(parser)
        parser.add_argument("--database", action="append", metavar="NAME", help="only this database (repeatable)")
        parser.add_argument("--json", action="store_true", help="one JSON object per database")
        if name == "apply":
            parser.add_argument("--yes", "-y", action="store_true", help="do not ask")
        parser.set_defaults(handler=cmd_schema_diff if name == "diff" else cmd_schema_apply)
    schema.set_defaults(handler=_need_action)


def _need_action(args: argparse.Namespace) -> int:
    raise InputError("`pgtide schema` needs an action", "Run `pgtide schema diff` or `pgtide schema apply`.")


def _reports(args: argparse.Namespace) -> tuple[Any, list[Any]]:

    session = session_from_args(args)
    databases = list(session.databases(args.database))
    return session, session.drift(databases)


def report_lines(report: Any) -> list[str]:
    """One database's drift as text: each table, what differs, the statements, the re-copies."""
    if report.error:
        return [f"{report.database}: drift could not be read: {report.error}"]
    if not report.drifted:
        return [f"{report.database}: no schema drift"]
    lines = [f"{report.database}: {len(report.tables)} table(s) drifted"]
    for table in report.tables:
        lines.append(f"  {table.display} [{table.action}]")
        for difference in table.differences:
            lines.append(f"    - {difference.detail}")
            for statement in difference.statements:
                lines.append(f"        {statement.server}: {statement.sql}")
    if report.recopy_tables:
        lines.append(f"  re-copy needed: pgtide sync --recopy {' --recopy '.join(report.recopy_tables)}")
    return lines


def _report_json(report: Any) -> dict[str, Any]:
    return {
        "database": report.database, "drifted": report.drifted, "error": report.error,
        "tables": [{"table": t.display, "action": t.action,
                    "differences": [{"kind": d.kind, "detail": d.detail, "recopy": d.recopy,
                                     "statements": [{"server": s.server, "sql": s.sql} for s in d.statements]}
                                    for d in t.differences]} for t in report.tables],
        "statements": [{"server": s.server, "sql": s.sql} for s in report.statements],
        "recopy": list(report.recopy_tables),
    }


def cmd_schema_diff(args: argparse.Namespace, *, out: IO[str] | None = None) -> int:
    out = out or sys.stdout
    _session, reports = _reports(args)
    for report in reports:
        if args.json:
            print(json.dumps(_report_json(report)), file=out)
        else:
            print("\n".join(report_lines(report)), file=out)
    return EXIT_FAILED if any(r.drifted or r.error for r in reports) else EXIT_OK


def cmd_schema_apply(args: argparse.Namespace, *, out: IO[str] | None = None) -> int:

    out = out or sys.stdout
    session, reports = _reports(args)
    printer = EventPrinter(as_json=args.json)
    left = 0
    for report in reports:
        if not args.json:
            print("\n".join(report_lines(report)), file=out)
        statements = report.statements
        if not statements:
            left += bool(report.drifted or report.error)
            continue
        if not args.json:
            print(f"\n{report.database}: pgtide will run, in this order:", file=out)
            for statement in statements:
                print(f"  on the {statement.server} ({report.database}): {statement.sql}", file=out)
        if not _confirm(f"Run these {len(statements)} statement(s) for {report.database}?", args):
            print("nothing done", file=out)
            left += 1
            continue
        done = session.schema_apply(report, emit=printer)
        if args.json:
            print(json.dumps({"database": report.database, "applied": done, "recopy": list(report.recopy_tables)}),
                  file=out)
        if report.recopy_tables:
            left += 1
            if not args.json:
                print(f"{report.database}: still to re-copy: {', '.join(report.recopy_tables)} "
                      f"(pgtide sync --recopy {' --recopy '.join(report.recopy_tables)})", file=out)
    return EXIT_FAILED if left else EXIT_OK


def _confirm(question: str, args: argparse.Namespace) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise InputError("confirmation needed, but there is no terminal to ask on",
                         "Pass --yes (-y) to run the statements listed without asking.")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
