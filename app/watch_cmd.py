"""``pgtide status`` and ``pgtide verify``: watching a migration, and proving it complete.

Rendering only; every fact comes from ``core.monitor`` and ``core.verify``. Text goes to
stdout as plain aligned tables (they must read well in CI logs); ``--json`` prints one JSON
object per line instead. Progress lines go to stderr, and only on a terminal.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC
from typing import IO, Any

from ..core.infra.errors import InputError
from ..core.infra.formatting import human_bytes, human_seconds
from ..core.infra.formatting import text_table as shared_text_table
from .args import add_endpoint_arguments, add_selection_arguments, session_from_args

EXIT_OK = 0
EXIT_FAILED = 1

DEFAULT_WATCH_SECONDS = 2.0
#: A day: anything longer is surely a typo, and time.sleep() refuses some huge values.
MAX_WATCH_SECONDS = 86400.0
DEFAULT_MAX_KEYS = 20


def _finite_seconds(text: str) -> float:
    """argparse type: a finite, non-negative number of seconds (argparse exits 2 otherwise)."""
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"needs a finite number of seconds, not {text!r}")
    return value


def register(sub: Any) -> None:
    """Add the ``status`` and ``verify`` subcommands to the CLI."""
    status = sub.add_parser(
        "status",
        help="show each database's replication: state, lag, retained WAL, tables ready, errors",
        description=(
            "Show the replication of each migrated database: state (copying, catching up, streaming, "
            "stalled, broken), lag in bytes and time, WAL the slot retains on the source, tables ready, "
            "errors. Exit code 0 when every database is healthy, 1 when one is stalled or broken."
        ),
    )
    add_endpoint_arguments(status, migration=True)
    add_selection_arguments(status)
    status.add_argument(
        "--watch", nargs="?", type=float, const=DEFAULT_WATCH_SECONDS, default=None, metavar="SECONDS",
        help=f"poll again every SECONDS (default {DEFAULT_WATCH_SECONDS:g}) until Ctrl-C",
    )
    status.add_argument("--json", action="store_true", help="one JSON object per database (per poll)")
    status.set_defaults(handler=cmd_status)

    verify = sub.add_parser(
        "verify",
        help="compare every migrated table on source and target, row by row, and name differences",
        description=(
            "Compare each migrated table on the source and the target with chunked checksums, and name "
            "every differing row by primary key (missing on the target, extra on the target, different). "
            "Against a live subscription, differences still in flight are re-checked after the target "
            "caught up. Exit code 0 when everything matches, 1 when something differs."
        ),
    )
    add_endpoint_arguments(verify, migration=True)
    add_selection_arguments(verify)
    verify.add_argument(
        "--table", action="append", default=[], metavar="T",
        help="verify only this table (table, schema.table, db.table or db.schema.table); repeatable",
    )
    verify.add_argument("--max-keys", type=int, default=DEFAULT_MAX_KEYS, metavar="N",
                        help=f"differing keys listed per table (default {DEFAULT_MAX_KEYS})")
    verify.add_argument("--jobs", "-j", type=int, default=2, metavar="N",
                        help="tables verified at once (default 2)")
    verify.add_argument("--recheck-timeout", type=_finite_seconds, default=30.0, metavar="SECONDS",
                        help="longest wait for the target to catch up before a difference counts (default 30)")
    verify.add_argument("--static", action="store_true",
                        help="do not re-check differences against the live subscription")
    verify.add_argument("--json", action="store_true", help="one JSON object per table, then a summary object")
    verify.set_defaults(handler=cmd_verify)


# -- formatting helpers -------------------------------------------------------------------------------


def text_table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    return shared_text_table(rows, headers, rule=False)


# -- status -----------------------------------------------------------------------------------------


def status_rows(status: Any) -> list[list[str]]:
    rows = []
    for db in status.databases:
        target = db.target
        errors = (target.apply_error_count or 0) + (target.sync_error_count or 0)
        retained = human_bytes(db.retained_wal_bytes)
        if db.retained_warning != "ok":
            retained += f" ({db.retained_warning.upper()})"
        rows.append([
            db.database,
            db.state.value,
            human_bytes(db.lag_bytes),
            human_seconds(db.lag_seconds),
            retained,
            f"{target.tables_ready}/{target.tables_total}" if target.exists else "-",
            str(errors) if target.exists and target.apply_error_count is not None else "-",
            human_seconds(db.eta_seconds) if db.eta_seconds is not None else "-",
            db.reason + (f"; {db.retained_reason}" if db.retained_warning != "ok" else ""),
        ])
    return rows


STATUS_HEADERS = ("DATABASE", "STATE", "LAG", "LAG TIME", "RETAINED WAL", "TABLES", "ERRORS", "ETA", "REASON")


def _status_ok(status: Any) -> bool:
    return status.healthy and not status.drifted and all(db.retained_warning != "critical" for db in status.databases)


def drift_lines(status: Any) -> list[str]:
    """Below the table: each drifted table, what differs, and the command that deals with it."""
    lines = []
    for db in status.databases:
        drift = db.drift
        if drift is None:
            continue
        if drift.error:
            lines.append(f"{db.database}: schema drift not read: {drift.error}")
            continue
        for table in drift.tables:
            lines.append(f"{db.database}: DRIFT {table.display}: {table.summary()}")
        if drift.statements:
            lines.append(f"{db.database}: `pgtide schema apply` runs {len(drift.statements)} additive statement(s) "
                         "(`pgtide schema diff` lists them)")
        if drift.recopy_tables:
            lines.append(f"{db.database}: re-copy needed: pgtide sync --recopy "
                         + " --recopy ".join(drift.recopy_tables))
    return lines


def cmd_status(args: argparse.Namespace, *, out: IO[str] | None = None) -> int:
    from ..core.infra.errors import ConnectError
    from ..core.jobs.state import DatabaseState

    out = out or sys.stdout
    # nan compares false with everything and inf never wakes up: neither is an interval.
    if args.watch is not None and not (math.isfinite(args.watch) and 0 < args.watch <= MAX_WATCH_SECONDS):
        raise InputError(f"--watch needs a positive number of seconds up to {MAX_WATCH_SECONDS:g}, "
                         f"not {args.watch:g}", "Pass e.g. --watch 2.")
    session = session_from_args(args)
    tty = bool(getattr(out, "isatty", lambda: False)()) and not args.json
    cut_over = [d for d in session.databases(include_cut_over=True) if session.store.state(d) is DatabaseState.CUT_OVER]
    for database in cut_over:
        entry = session.store.database(database)
        back = " (its changes flow back to the source: `pgtide teardown` ends that)" if entry.get("reverse") else ""
        if args.json:
            print(json.dumps({"database": database, "state": "cut over", "cutover_at": entry.get("cutover_at")}),
                  file=out)
        else:
            print(f"{database}: cut over — the target is the primary, nothing replicates into it{back}", file=out)
    if cut_over and not session.databases():
        return EXIT_OK  # a finished migration is healthy
    with session.monitor() as monitor:
        if args.watch is None:
            status = monitor.poll()
            _print_status(status, args.json, out, clear=False)
            return EXIT_OK if _status_ok(status) else EXIT_FAILED
        try:
            while True:
                started = time.monotonic()
                try:
                    status = monitor.poll()
                    _print_status(status, args.json, out, clear=tty)
                except ConnectError as exc:  # keep watching: the server may come back
                    message = {"error": "ConnectError", "cause": exc.cause, "remedy": exc.remedy}
                    print(json.dumps(message) if args.json else f"error: {exc.cause}", file=out, flush=True)
                # Re-armed after each poll: a slow server stretches the interval, polls never overlap.
                time.sleep(max(0.0, args.watch - (time.monotonic() - started)))
        except KeyboardInterrupt:
            return EXIT_OK


def _print_status(status: Any, as_json: bool, out: IO[str], *, clear: bool) -> None:
    if as_json:
        for db in status.databases:
            print(json.dumps(db.to_dict(), default=str), file=out)
        out.flush()
        return
    text = text_table(status_rows(status), STATUS_HEADERS)
    stamp = status.polled_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if clear:
        out.write("\033[H\033[2J")
    print(f"{stamp}\n{text}", file=out, flush=True)
    for line in drift_lines(status):
        print(line, file=out, flush=True)
    if not clear:
        print(file=out, flush=True)


# -- verify -----------------------------------------------------------------------------------------


class _Progress:
    """A one-line progress indicator on stderr (terminals only)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.enabled = bool(getattr(stream, "isatty", lambda: False)())
        self._lock = threading.Lock()
        self._last = 0.0

    def __call__(self, event: Any) -> None:
        if not self.enabled:
            return
        from ..core.verify.compare import ChunkVerified, Rechecking, TableStarted, TableVerified

        with self._lock:
            now = time.monotonic()
            if isinstance(event, TableStarted):
                text = f"[{event.index}/{event.total}] {event.database}.{event.schema}.{event.name}"
            elif isinstance(event, ChunkVerified):
                if now - self._last < 0.2 and event.done != event.total:
                    return
                text = f"{event.database}.{event.schema}.{event.name}: {event.done}/{event.total} slices"
            elif isinstance(event, Rechecking):
                text = f"{event.database}.{event.schema}.{event.name}: {event.reason}"
            elif isinstance(event, TableVerified):
                text = ""
            else:
                return
            self._last = now
            self.stream.write("\r\033[K" + text[:150])
            self.stream.flush()


def cmd_verify(args: argparse.Namespace, *, out: IO[str] | None = None) -> int:
    from ..core.verify.compare import VerifyOptions

    out = out or sys.stdout
    if args.max_keys < 0:
        raise InputError(f"--max-keys must be 0 or more, not {args.max_keys}", "Pass e.g. --max-keys 20.")
    session = session_from_args(args)
    options = VerifyOptions(
        max_keys=args.max_keys, jobs=args.jobs, recheck_timeout=args.recheck_timeout, live=not args.static,
    )
    progress = _Progress(sys.stderr) if not args.json else None
    report = session.verify(tables=args.table, options=options, on_event=progress)
    if progress is not None and progress.enabled:
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()
    if args.json:
        for result in report.tables:
            print(json.dumps(result.to_dict(), default=str), file=out)
        print(json.dumps({"summary": report.summary(), "live_databases": list(report.live_databases)}), file=out)
        out.flush()
    else:
        print(render_report(report, args.max_keys), file=out, flush=True)
    return EXIT_OK if report.ok else EXIT_FAILED


_STATUS_LABEL = {
    "match": "match",
    "differ": "DIFFERS",
    "schema_differs": "SCHEMA DIFFERS",
    "skipped": "skipped",
    "error": "ERROR",
}


def render_report(report: Any, max_keys: int) -> str:
    lines: list[str] = []
    rows = []
    for result in report.tables:
        if result.schema_only:
            rows_text = "schema only"
        elif result.method == "row hash":
            rows_text = f"{result.source_rows} / {result.target_rows} rows (no key)"
        elif result.source_rows is not None:
            rows_text = f"{result.source_rows} / {result.target_rows} rows"
        else:
            rows_text = "-"
        detail = ""
        if result.difference_count:
            detail = f"missing {result.missing}, extra {result.extra}, different {result.different}"
        elif result.error:
            detail = result.error
        elif result.status != "match" and result.notes:
            detail = result.notes[-1]
        rows.append([result.display, _STATUS_LABEL[result.status], rows_text, f"{result.seconds:.1f} s", detail])
    lines.append(text_table(rows, ("TABLE", "RESULT", "ROWS (SOURCE / TARGET)", "TIME", "DIFFERENCES")))
    for result in report.tables:
        if result.ok and not result.resolved_in_flight:
            continue
        shown = result.differences[:max_keys]
        if not shown and not result.notes and not result.resolved_in_flight:
            continue
        lines.append("")
        lines.append(f"{result.display}:")
        for difference in shown:
            lines.append("  " + difference.describe(result.key_columns))
        hidden = result.difference_count - len(shown)
        if hidden > 0:
            lines.append(f"  ... and {hidden} more (raise --max-keys, or use --json)")
        if result.where:
            lines.append(f"  compared rows where {result.where}")
        if result.resolved_in_flight:
            lines.append(f"  {result.resolved_in_flight} difference(s) were changes in flight and settled")
        for note in result.notes:
            lines.append(f"  note: {note}")
    summary = report.summary()
    counts = ", ".join(
        f"{summary[key]} {label}" for key, label in
        (("match", "match"), ("differ", "differ"), ("schema_differs", "schema differs"), ("error", "failed"),
         ("skipped", "skipped"))
        if summary.get(key)
    )
    live = f"; live re-check in {', '.join(report.live_databases)}" if report.live_databases else ""
    verdict = "OK" if report.ok else "DIFFERENCES FOUND"
    lines.append("")
    lines.append(
        f"{verdict}: {summary['tables']} table(s): {counts or 'none'}; rows missing {summary['missing']}, "
        f"extra {summary['extra']}, different {summary['different']}; {report.seconds:.1f} s{live}"
    )
    return "\n".join(lines)
