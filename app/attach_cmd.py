"""``pgtide attach ID`` and ``pgtide stop ID``: a detached migration, followed or stopped.

Also what ``init``/``sync`` do when they hand their work to a worker: start it, then follow
its events here exactly as if the work ran in this process — except that Ctrl-C (or a
closed terminal) detaches and leaves the worker running.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import IO, Any

from ..core.infra import events as core_events
from ..core.infra.errors import InputError
from .render import EventPrinter

#: Core events a worker logs that the terminal renders as they are (others are summarised).
_RENDERED = {cls.__name__: cls for cls in (core_events.Log, core_events.PhaseStarted, core_events.PhaseFinished,
                                           core_events.TableProgress, core_events.TableCopied, core_events.IndexProgress,
                                           core_events.CheckReported)}


def _cutover_step() -> Any:
    from ..core.engine.cutover import CutoverStep

    return CutoverStep


def event_from_record(record: dict[str, Any]) -> core_events.Event | None:
    """A logged record as the core event it was, when the terminal knows how to show it."""
    cls = _RENDERED.get(str(record.get("event")))
    if cls is None and record.get("event") == "CutoverStep":
        cls = _cutover_step()
    if cls is None:
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{k: v for k, v in record.items() if k in names})
    except TypeError:
        return None


def should_detach(args: argparse.Namespace) -> bool:
    """Detached when a person is at a terminal; in the foreground for scripts and CI (their
    exit codes and output stay as they were), unless told otherwise."""
    if getattr(args, "foreground", False):
        return False
    if getattr(args, "detach", False):
        return True
    return sys.stdin.isatty() and sys.stdout.isatty() and not os.environ.get("CI")


def follow(migration_id: str, *, as_json: bool, until: str = "WorkerFinished", out: IO[str] | None = None,
           offset: int = 0, printer: EventPrinter | None = None, stop_on_interrupt: bool = False,
           last: dict[str, Any] | None = None) -> int:
    """Render the worker's events until ``until`` is logged (its exit code) or Ctrl-C: that
    detaches (0), or with ``stop_on_interrupt`` asks the worker to stop and follows it to the end
    (a cutover: Ctrl-C means abort). ``last`` receives the final record."""
    from ..core.jobs.worker import EventLog, lock_held, send_request

    stream = out or sys.stdout
    printer = printer or EventPrinter(as_json=as_json, stream=stream)
    log = EventLog(migration_id)
    started = time.monotonic()
    while True:
        try:
            return _follow(log, migration_id, as_json=as_json, until=until, stream=stream, printer=printer,
                           offset=offset, started=started, last=last, lock_held=lock_held)
        except KeyboardInterrupt:
            if not stop_on_interrupt:
                print(f"\ndetached: the migration goes on in its worker (`pgtide attach {migration_id}` to follow "
                      f"it, `pgtide stop {migration_id}` to stop it)", file=sys.stderr)
                return 0
            print("\ninterrupted: asking the worker to abort (the fence is lifted before the switch)…",
                  file=sys.stderr)
            stop_on_interrupt = False  # a second Ctrl-C detaches
            offset = log.path.stat().st_size if log.path.exists() else 0
            if lock_held(migration_id):
                send_request(migration_id, {"command": "stop"})


def _follow(log: Any, migration_id: str, *, as_json: bool, until: str, stream: IO[str], printer: EventPrinter,
            offset: int, started: float, last: dict[str, Any] | None, lock_held: Any) -> int:
    for record in log.follow(stop=lambda: not lock_held(migration_id) and time.monotonic() - started > 1.0,
                             offset=offset):
        kind = record.get("event")
        if as_json:
            print(json.dumps(record, default=str), file=stream, flush=True)
        else:
            event = event_from_record(record)
            if event is not None:
                printer(event)
            elif kind == "LagSample":
                pass  # the dashboard's history; status shows the live value
            elif kind == "VerifyFinished":
                print(f"verify: {'all tables match' if record.get('ok') else 'DIFFERENCES FOUND'}", file=stream)
            elif kind == "WorkerFinished" and record.get("error"):
                error = record["error"]
                print(f"error: {error.get('title')}: {error.get('cause')}", file=stream)
                if error.get("remedy"):
                    print(f"  fix: {error['remedy']}", file=stream)
        if kind in (until, "WorkerFinished"):
            if last is not None:
                last.update(record)
            return int(record.get("exit_code") or 0)
    print(f"the worker of migration {migration_id} ended without a word (killed?): `pgtide migrations` shows "
          "its last state; `pgtide init` continues it", file=sys.stderr)
    return 1


def run_detached(plan: Any, command: str, *, as_json: bool, systemd: bool = False, **extra: Any) -> int:
    """Start ``command`` for ``plan`` in the migration's worker and follow it to its end."""
    from ..core.jobs.worker import EventLog, spawn
    from ..core.replication import naming
    from .worker import job_for

    migration_id = naming.migration_id(plan.source, plan.target)
    log = EventLog(migration_id)
    offset = log.path.stat().st_size if log.path.exists() else 0  # this run's events only
    pid = spawn(migration_id, job_for(plan, command, **extra), systemd=systemd)
    if not as_json:
        print(f"running in worker {pid} of migration {migration_id}: Ctrl-C detaches, the migration goes on",
              file=sys.stderr)
    return follow(migration_id, as_json=as_json, until="CommandFinished", offset=offset)


def _known(migration_id: str) -> None:
    from ..core.jobs.store import JobStore

    if not JobStore.exists(migration_id):
        raise InputError(f"no migration {migration_id!r} is recorded on this machine",
                         "Run `pgtide migrations` to list the recorded ones.", title="Unknown migration")


def _cmd_attach(args: argparse.Namespace) -> int:
    from ..core.jobs.worker import worker_info

    _known(args.migration_id)
    info = worker_info(args.migration_id)
    if not info.alive:
        print(f"migration {args.migration_id}: worker {info.state}; its events so far:", file=sys.stderr)
    return follow(args.migration_id, as_json=args.json)


def _cmd_stop(args: argparse.Namespace) -> int:
    from ..core.jobs.worker import lock_held, send_request

    _known(args.migration_id)
    answer = send_request(args.migration_id, {"command": "stop"})
    deadline = time.monotonic() + args.timeout
    while lock_held(args.migration_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    if lock_held(args.migration_id):
        print(f"asked the worker to stop (it was {answer.get('phase')}); it is still cleaning up — "
              f"`pgtide attach {args.migration_id}` shows it", file=sys.stderr)
        return 1
    print(f"worker of migration {args.migration_id} stopped (it was {answer.get('phase')}); "
          "`pgtide init` continues the migration", file=sys.stderr)
    return 0


def _cmd_control(args: argparse.Namespace) -> int:
    from ..core.jobs.worker import send_request

    _known(args.migration_id)
    answer = send_request(args.migration_id, {"command": args.action})
    if not answer.get("ok"):
        raise InputError(f"the worker refused: {answer.get('error')}", "Run `pgtide attach` to see what it does.",
                         title="Request refused")
    done = {"verify": "verify started (its result appears in `pgtide attach` and `pgtide migrations`)",
            "pause": "apply paused for " + (", ".join(answer.get("databases", [])) or "no database (already paused)")
                     + "; the slot keeps every change meanwhile",
            "resume": "apply resumed for " + (", ".join(answer.get("databases", [])) or "no database (not paused)")}
    print(done[args.action], file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    attach = sub.add_parser("attach", help="follow a migration's worker (Ctrl-C detaches, it keeps running)",
                            description="Follow the events of a migration's worker in this terminal: phases, "
                                        "progress, errors. Ctrl-C detaches; the worker keeps running.")
    attach.add_argument("migration_id", metavar="ID", help="the migration (see `pgtide migrations`)")
    attach.add_argument("--json", action="store_true", help="the events as JSON lines")
    attach.set_defaults(handler=_cmd_attach)
    stop = sub.add_parser("stop", help="ask a migration's worker to stop cleanly (a rerun continues)",
                          description="Ask the worker to cancel what it does, as Ctrl-C in the foreground "
                                      "would: a copy in progress is undone on the servers, replication that "
                                      "already streams keeps streaming. `pgtide init` continues later.")
    stop.add_argument("migration_id", metavar="ID", help="the migration (see `pgtide migrations`)")
    stop.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                      help="how long to wait for the worker to finish cleaning up (default 60)")
    stop.set_defaults(handler=_cmd_stop)
    control = sub.add_parser("control", help="ask a migration's worker to verify, or to pause/resume apply",
                             description="Ask the running worker of a migration to verify now, or to pause or "
                                         "resume the subscription's apply (the slot keeps the changes).")
    control.add_argument("migration_id", metavar="ID", help="the migration (see `pgtide migrations`)")
    control.add_argument("action", choices=("verify", "pause", "resume"))
    control.set_defaults(handler=_cmd_control)


def add_detach_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--detach", action="store_true",
                       help="run in a worker process that outlives this terminal (the default at a terminal)")
    group.add_argument("--foreground", action="store_true",
                       help="run in this process (the default when not at a terminal, e.g. scripts and CI)")
    parser.add_argument("--systemd", action="store_true",
                        help="start the worker under `systemd-run --user --scope`, so it survives logging out "
                             "where systemd ends a user's processes (KillUserProcesses)")
