"""``pgtide cutover``: preflight, confirmation, the steps as they happen, the measured downtime."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import IO, Any

from ..core.infra.errors import CheckFailed, InputError
from ..core.infra.events import Event
from ..core.infra.formatting import human_seconds, parse_size
from .args import add_endpoint_arguments, add_selection_arguments, session_from_args
from .attach_cmd import add_detach_arguments, follow, should_detach
from .render import EventPrinter, print_json


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (e.g. 10.0.0.5:5432)")
    return host.strip("[]"), int(port)


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _StepPrinter(EventPrinter):
    """Steps with their wall-clock time and duration; everything else as the other commands print it."""

    def __call__(self, event: Event) -> None:
        from ..core.engine.cutover import CutoverStep

        if isinstance(event, CutoverStep) and not self.as_json:
            import time as _time

            stamp = _time.strftime("%H:%M:%S", _time.localtime(event.at)) + f".{int(event.at * 1000) % 1000:03d}"
            took = f" ({human_seconds(event.seconds)})" if event.seconds is not None and event.state != "started" else ""
            detail = f": {event.detail}" if event.detail else ""
            with self._lock:
                self._line(f"{stamp}  {event.step:<18} {event.state}{took}{detail}")
            return
        super().__call__(event)


def _confirm(databases: tuple[str, ...], args: argparse.Namespace, out: IO[str]) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise InputError("the cutover needs a confirmation, but there is no terminal to ask on",
                         "Pass --yes to cut over without asking (after `pgtide cutover --check`).")
    expected = databases[0] if len(databases) == 1 else "cutover"
    print(f"\nThis fences writes on the source and switches {', '.join(databases)} to the target.", file=out)
    answer = input(f"Type {expected!r} to cut over (anything else cancels): ").strip()
    return answer == expected


def cmd_cutover(args: argparse.Namespace, *, out: IO[str] | None = None) -> int:
    from ..core.engine.cutover import CutoverOptions
    from ..core.infra.endpoint import Endpoint

    stream = out or sys.stdout
    options = CutoverOptions(
        fence=args.fence, pgbouncer=Endpoint.parse(args.pgbouncer) if args.pgbouncer else None,
        pgbouncer_databases_file=Path(args.pgbouncer_databases_file) if args.pgbouncer_databases_file else None,
        pgbouncer_target=args.pgbouncer_target,
        lag_threshold=args.max_lag, sequence_margin=args.sequence_margin, verify=args.verify,
        reverse=args.reverse, unfence_source=args.unfence_source, copy_role_passwords=args.copy_role_passwords,
        force=args.force)
    session = session_from_args(args)
    printer = _StepPrinter(as_json=args.json, stream=stream)
    cutover = session.cutover(options, emit=printer)
    if args.abort:
        databases = cutover.abort()
        message = f"fence lifted for {', '.join(databases)}; replication keeps streaming"
        print_json({"event": "summary", "aborted": databases}) if args.json else print(message, file=stream)
        return 0
    preflight = cutover.preflight()
    errors = preflight.errors(force=args.force)
    if errors:
        raise CheckFailed("; ".join(f"{c.name}: {c.observed}" for c in errors),
                          "Fix what the checks above say, then run the cutover again. Nothing was changed.",
                          title=f"{len(errors)} preflight check(s) failed")
    if args.check:
        if args.json:
            print_json({"event": "summary", "ok": True, "estimate_seconds": preflight.estimate_seconds})
        else:
            print("\nready to cut over" + (f" (about {human_seconds(preflight.estimate_seconds)} of write downtime)"
                                           if preflight.estimate_seconds else ""), file=stream)
        return 0
    pending = tuple(d for d in preflight.databases if d not in preflight.switched) or preflight.databases
    if not _confirm(pending, args, stream):
        print("nothing done", file=stream)
        return 0
    if should_detach(args) or args.systemd:
        code, summary = _in_worker(session, options, printer, as_json=args.json, systemd=args.systemd)
        if summary is None:
            return code
    else:
        # A hangup (the SSH session dropped) unwinds like Ctrl-C: the fence is lifted before the
        # process goes, never left up by a default-action death.
        import signal

        def _hangup(signum: int, frame: object) -> None:
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGHUP, _hangup)
        try:
            summary = cutover.run(preflight).to_dict()
        finally:
            signal.signal(signal.SIGHUP, previous)
    if args.json:
        print_json({"event": "summary", **summary})
        return 0
    print("", file=stream)
    if summary["downtime_seconds"] is not None:
        print(f"cut over {', '.join(summary['databases'])}: write downtime "
              f"{human_seconds(summary['downtime_seconds'])} (fence up to switch done, as pgtide measured it)",
              file=stream)
    print(f"{summary['sequences']} sequence(s) set, {len(summary['matviews'])} materialized view(s) refreshed, "
          f"{summary['verified_tables']} table(s) verified while fenced", file=stream)
    for step in summary["next_steps"]:
        print(f"next: {step}", file=stream)
    return 0


def _in_worker(session: Any, options: Any, printer: EventPrinter, *, as_json: bool,
               systemd: bool = False) -> tuple[int, Any]:
    """The cutover in the migration's worker: a lost terminal (SSH, a closed window) no longer
    kills it with writes fenced. Ctrl-C still aborts it (the fence is lifted before the switch)."""
    import time

    from ..core.jobs.worker import EventLog, lock_held, send_request, spawn, worker_info
    from .worker import cutover_fields, job_for

    migration = session.migration_id
    if lock_held(migration):
        # The worker that watches a streaming migration hands over; anything else is busy.
        answer = send_request(migration, {"command": "state"})
        if answer.get("phase") != "watching":
            raise InputError(f"the worker of migration {migration} is {answer.get('phase')}",
                             f"Wait for it (`pgtide attach {migration}`), then cut over.", title="Worker busy")
        send_request(migration, {"command": "stop"})
        deadline = time.monotonic() + 30
        while lock_held(migration) and time.monotonic() < deadline:
            time.sleep(0.1)
        if lock_held(migration):
            raise InputError(f"the worker of migration {migration} (pid {worker_info(migration).pid}) did not stop",
                             f"Stop it with `pgtide stop {migration}`, then cut over.", title="Worker busy")
    log = EventLog(migration)
    offset = log.path.stat().st_size if log.path.exists() else 0
    pid = spawn(migration, job_for(session.plan, "cutover", cutover=cutover_fields(options), watch=False),
                systemd=systemd)
    if not as_json:
        print(f"cutting over in worker {pid} of migration {migration} (Ctrl-C aborts; a lost terminal does not)",
              file=sys.stderr)
    last: dict[str, Any] = {}
    code = follow(migration, as_json=as_json, until="CommandFinished", offset=offset, printer=printer,
                  stop_on_interrupt=True, last=last)
    return code, last.get("result") if last.get("event") == "CommandFinished" else None


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "cutover",
        help="finish the migration: fence writes, drain, set sequences, verify, switch to the target",
        description=(
            "Finish a streaming migration with about a second of write downtime. A preflight changes nothing "
            "and says what will happen; then writes on the source are fenced, the target drains up to the "
            "fence, sequences are set past the source's values, the tables written since the last verify are "
            "verified, and the subscription is switched off (or reversed with --reverse). Any failure before "
            "the switch lifts the fence and leaves replication streaming. Exit code 0 on success, 1 when a "
            "check or the final verify fails, 4 when interrupted."
        ),
    )
    add_endpoint_arguments(parser, migration=True)
    add_selection_arguments(parser)
    parser.add_argument("--fence", choices=("roles", "pgbouncer", "none"), default="roles",
                        help="roles: set the connected roles read-only and end their sessions (default); pgbouncer: "
                             "PAUSE in PgBouncer, RESUME towards the target; none: you stopped the application")
    parser.add_argument("--pgbouncer", metavar="URL",
                        help="the PgBouncer admin console for --fence pgbouncer (…/pgbouncer)")
    parser.add_argument("--pgbouncer-databases-file", metavar="PATH",
                        help="the file pgbouncer.ini %%include-s for [databases]: pgtide repoints the migrated "
                             "databases there and RELOADs (PgBouncer cannot be repointed from its console)")
    parser.add_argument("--pgbouncer-target", type=_host_port, metavar="HOST:PORT",
                        help="where PgBouncer reaches the target, when not where pgtide does")
    parser.add_argument("--max-lag", type=_size, default=16 * 1024 * 1024, metavar="SIZE",
                        help="largest lag the preflight accepts (default 16MB)")
    parser.add_argument("--sequence-margin", type=int, default=100, metavar="N",
                        help="increments added to each sequence beyond the highest value used (default 100)")
    parser.add_argument("--verify", choices=("changed", "full", "none"), default="changed",
                        help="final verify while fenced: tables written since the last verify (default), all, or none")
    parser.add_argument("--reverse", action="store_true",
                        help="replicate the target's changes back to the source for a rollback window (PostgreSQL 16+)")
    parser.add_argument("--unfence-source", action="store_true", help="lift the fence on the source after the switch")
    parser.add_argument("--copy-role-passwords", action="store_true",
                        help="copy the application roles' SCRAM verifiers to the target (never plaintext)")
    parser.add_argument("--force", action="store_true",
                        help="pass over the checks that allow it: lag, last verify, login roles, superuser sessions")
    parser.add_argument("--check", action="store_true", help="run the preflight only (changes nothing)")
    parser.add_argument("--abort", action="store_true",
                        help="lift the fence an interrupted cutover left; replication keeps streaming")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask for the database name")
    add_detach_arguments(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per event")
    parser.set_defaults(handler=cmd_cutover)
