"""``python -m pgtide.app.worker ID``: the detached worker of one migration (core/jobs/worker.py).

It reads its job from stdin (then closed), takes the migration's lock, runs the command
(init or sync) with every event in the event log, then keeps watching the replication —
a lag sample per database every second, a verify when asked — until ``pgtide stop``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import sys
import threading
from dataclasses import asdict
from types import FrameType
from typing import Any

from ..core.infra.events import Cancelled, CancelToken, Event

log = logging.getLogger("pgtide.worker")

#: How often the watching worker samples lag (the dashboard's lag history comes from these).
SAMPLE_SECONDS = 1.0


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def plan_from_job(job: dict[str, Any]) -> Any:
    from ..core.infra.endpoint import Endpoint
    from ..core.model.plan import Options, Plan
    from ..core.model.selection import Selection

    return Plan(Endpoint.parse(job["source"]), Endpoint.parse(job["target"]),
                Selection.from_dict(job["selection"], source="the worker's job"),
                Options.from_dict(job["options"], source="the worker's job"))


def cutover_fields(options: Any) -> dict[str, Any]:
    """CutoverOptions as JSON for the worker's pipe (the PgBouncer console's password included)."""
    fields = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
    fields["pgbouncer"] = options.pgbouncer.conninfo() if options.pgbouncer else None
    fields["pgbouncer_databases_file"] = str(options.pgbouncer_databases_file) \
        if options.pgbouncer_databases_file else None
    return fields


def cutover_options(fields: dict[str, Any]) -> Any:
    from pathlib import Path

    from ..core.engine.cutover import CutoverOptions
    from ..core.infra.endpoint import Endpoint

    values = dict(fields)
    values["pgbouncer"] = Endpoint.parse(values["pgbouncer"]) if values.get("pgbouncer") else None
    values["pgbouncer_databases_file"] = Path(values["pgbouncer_databases_file"]) \
        if values.get("pgbouncer_databases_file") else None
    values["pgbouncer_target"] = tuple(values["pgbouncer_target"]) if values.get("pgbouncer_target") else None
    return CutoverOptions(**values)


def job_for(plan: Any, command: str, **extra: Any) -> dict[str, Any]:
    """What the worker needs to run ``command`` on ``plan`` (secrets included: pipe only)."""
    return {"command": command, "source": plan.source.conninfo(), "target": plan.target.conninfo(),
            "selection": plan.selection.to_dict(), "options": plan.options.to_dict(), **extra}


class _Worker:
    def __init__(self, migration_id: str, job: dict[str, Any]) -> None:
        from ..core.jobs.worker import EventLog

        self.migration_id = migration_id
        self.job = job
        self.events = EventLog(migration_id)
        self.cancel = CancelToken()
        self.verify_wanted = threading.Event()
        self.phase = "starting"
        self.session: Any = None

    def emit(self, event: Event) -> None:
        self.events.append(event.to_dict())

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request.get("command")
        if command == "stop":
            self.cancel.cancel()
            return {"ok": True, "phase": self.phase}
        if command == "verify":
            self.verify_wanted.set()
            return {"ok": True, "phase": self.phase}
        if command == "state":
            return {"ok": True, "phase": self.phase, "pid": os.getpid()}
        if command in ("pause", "resume"):
            if self.session is None or self.phase != "watching":
                return {"ok": False, "error": f"the worker is {self.phase}: apply can be paused once it streams"}
            from ..core.replication.subscription import set_apply_enabled

            changed = set_apply_enabled(self.session.plan, self.session.databases(), enabled=command == "resume")
            self.events.append({"event": "Log", "level": "info", "database": None,
                                "text": f"apply {'resumed' if command == 'resume' else 'paused'} for "
                                        + (", ".join(changed) or "no database")})
            return {"ok": True, "phase": self.phase, "databases": changed}
        return {"ok": False, "error": f"unknown request {command!r}"}

    def run(self) -> int:
        if self.job["command"] == "foreign-sync":
            return self.run_foreign()
        from ..core.session import MigrationSession

        plan = plan_from_job(self.job)
        session = MigrationSession.open(plan, selection_given=True)
        self.session = session
        command = self.job["command"]
        self.phase = command
        if command == "cutover":
            result = session.cutover(cutover_options(self.job["cutover"]), emit=self.emit, cancel=self.cancel).run()
            self.events.append({"event": "CommandFinished", "command": command, "exit_code": 0,
                                "result": result.to_dict()})
            return 0
        if command == "init":
            results = session.init(emit=self.emit, cancel=self.cancel)
        elif command == "sync":
            results = session.sync(emit=self.emit, copy_data=bool(self.job.get("copy_data", True)))
        else:
            raise ValueError(f"unknown worker command {command!r}")
        self.events.append({"event": "CommandFinished", "command": command, "exit_code": 0,
                            "databases": [asdict(r) for r in results]})
        if self.job.get("watch", True) and any(r.status == "streaming" for r in results):
            self.watch(session)
        return 0

    def run_foreign(self) -> int:
        """A foreign source's sync: the change stream (or the refresh) until stopped, with a
        progress event per second and a verify when asked."""
        from dataclasses import replace

        from ..core.foreign.session import ForeignSession
        from ..core.infra.endpoint import Endpoint

        session = ForeignSession.from_record(self.migration_id)
        session.plan = replace(session.plan, source=session.plan.source.with_password(self.job.get("source_password")),
                               target=Endpoint.parse(self.job["target"]),
                               refresh_every=self.job.get("refresh_every") or session.plan.refresh_every)
        self.session = session
        self.phase = "watching"
        stop = self.cancel.event
        last = [0.0]

        def progress(summary: dict[str, Any]) -> None:
            import time

            if time.monotonic() - last[0] >= SAMPLE_SECONDS or summary.get("mode") == "refresh":
                last[0] = time.monotonic()
                self.events.append({"event": "ForeignProgress", **summary})
            if self.verify_wanted.is_set():
                self.verify_wanted.clear()
                report = session.verify(cancel=self.cancel)
                self.events.append({"event": "VerifyFinished", "ok": report.ok, **report.summary()})

        self.events.append({"event": "Log", "level": "info", "database": session.plan.database,
                            "text": f"keeping {session.plan.target.redacted()} in sync with "
                                    f"{session.plan.source.redacted()}"})
        def started(mode: str) -> None:
            # What `pgtide sync` follows until: the sync runs; the worker goes on until stopped.
            self.events.append({"event": "CommandFinished", "command": "foreign-sync", "exit_code": 0,
                                "mode": mode})

        session.sync(stop=stop, emit=self.emit, on_progress=progress, on_started=started)
        return 0

    def watch(self, session: Any) -> None:
        """Lag samples and verifies on request, until stopped."""
        self.phase = "watching"
        with session.monitor() as monitor:
            while not self.cancel.cancelled:
                try:
                    status = monitor.poll()
                    for db in status.databases:
                        self.events.append({"event": "LagSample", "database": db.database, "state": db.state.value,
                                            "lag_bytes": db.lag_bytes, "lag_seconds": db.lag_seconds})
                except Exception as exc:  # a server that went away comes back; keep watching
                    self.events.append({"event": "Log", "level": "warning", "text": f"status: {exc}",
                                        "database": None})
                if self.verify_wanted.is_set():
                    self.verify_wanted.clear()
                    self.phase = "verifying"
                    report = session.verify(cancel=self.cancel)
                    self.events.append({"event": "VerifyFinished", "ok": report.ok, **report.summary()})
                    self.phase = "watching"
                self.cancel.wait(SAMPLE_SECONDS)


def main(argv: list[str] | None = None) -> int:
    from ..core.infra import logs
    from ..core.infra.db import connection_pools
    from ..core.infra.errors import PgtideError
    from ..core.infra.tools import install_cleanup_handlers
    from ..core.jobs.worker import ControlServer, WorkerLock, announce, read_job

    args = sys.argv[1:] if argv is None else argv
    migration_id = args[0]
    job = read_job(sys.stdin.buffer)
    logs.configure()
    lock = WorkerLock(migration_id)
    token = announce(migration_id, str(job.get("command")))
    signal.signal(signal.SIGTERM, _terminate)
    install_cleanup_handlers()
    # Its own session already: a hangup of the terminal that started it never arrives, and
    # one sent on purpose must not end a copy either (`pgtide stop` is the way).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    worker = _Worker(migration_id, job)
    control = ControlServer(migration_id, worker.handle).start()
    exit_code, error = 1, None
    try:
        with connection_pools():
            exit_code = worker.run()
    except (KeyboardInterrupt, Cancelled) as exc:
        exit_code, error = 4, {"title": "Interrupted", "cause": "stopped" if isinstance(exc, Cancelled)
                               else "ended by a signal", "remedy": "Run `pgtide init` again to continue."}
    except PgtideError as exc:
        exit_code, error = exc.exit_code, exc.to_dict()
    except Exception as exc:
        log.exception("worker failed")
        error = {"title": "Internal error", "cause": str(exc), "remedy": f"Details are in {logs.log_file()}."}
    finally:
        with contextlib.suppress(Exception):
            worker.events.append({"event": "WorkerFinished", "exit_code": exit_code, "error": error,
                                  "worker": token, "phase": worker.phase})
        control.stop()
        lock.release()
    return exit_code


if __name__ == "__main__":
    raise SystemExit(main())
