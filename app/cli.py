"""The ``pgtide`` command: argument parsing, error rendering and exit codes.

Exit codes are stable and documented: 0 success, 1 checks failed / differences found,
2 bad usage or input, 3 cannot connect / environment, 4 interrupted (resumable).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ..core.infra import logs
from ..core.infra.errors import PgtideError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CONNECT = 3
EXIT_INTERRUPTED = 4

log = logging.getLogger("pgtide.cli")


def package_version() -> str:
    try:
        return version("pgtide")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


class _Parser(argparse.ArgumentParser):
    """argparse exits with 2 on bad usage, which is our code for bad input too."""

    def error(self, message: str) -> Any:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"pgtide: error: {message}\n")


def _cmd_ping(args: argparse.Namespace) -> int:
    from ..core.catalog.server import probe
    from ..core.infra.endpoint import Endpoint

    status = EXIT_OK
    for text in args.endpoints:
        endpoint = Endpoint.parse(text)
        info = probe(endpoint)
        if args.json:
            print(json.dumps({"endpoint": endpoint.redacted(), **info.to_dict()}))
        else:
            print(f"{endpoint.redacted()}: {info.summary()}")
    return status


def _cmd_tui(args: argparse.Namespace) -> int:
    if getattr(args, "dashboard", False) and not getattr(args, "profile", None) and not (
        getattr(args, "source", None) and getattr(args, "target", None)
    ):
        from ..core.infra.errors import InputError

        raise InputError("--dashboard needs the migration to watch",
                         "Pass --profile NAME, or --source URL and --target URL.")
    from .tui import run_tui

    return run_tui(profile=getattr(args, "profile", None), source=getattr(args, "source", None),
                   target=getattr(args, "target", None), dashboard=bool(getattr(args, "dashboard", False)))


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pgtide",
        description=(
            "Move a live PostgreSQL database to another server with near-zero downtime, "
            "and prove no row was lost; or SQLite, MySQL/MariaDB and MongoDB into PostgreSQL, "
            "kept in sync from the binlog or a change stream. Run without arguments for the full-screen app."
        ),
        epilog="Exit codes: 0 ok, 1 checks failed or differences found, 2 bad input, "
        "3 cannot connect or environment problem, 4 interrupted (resumable).",
    )
    parser.add_argument("--version", action="version", version=f"pgtide {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    from .migrate_cmd import register as register_migrate

    register_migrate(sub)

    ping = sub.add_parser(
        "ping",
        help="connect to servers and show version, wal_level and the role's privileges",
        description="Connect to each server and show what pgtide needs to know about it.",
    )
    ping.add_argument(
        "endpoints", nargs="+", metavar="URL",
        help="postgresql:// URL, keyword DSN ('host=... dbname=...') or 'service=NAME'; "
        "libpq's PG* variables, service files and ~/.pgpass apply as in psql",
    )
    ping.add_argument("--json", action="store_true", help="one JSON object per server")
    ping.set_defaults(handler=_cmd_ping)

    tui = sub.add_parser(
        "tui",
        help="open the full-screen app (the same as pgtide without arguments)",
        description="Open the full-screen app: a wizard to set up a migration, its progress, and a live dashboard.",
    )
    tui.add_argument("--profile", metavar="NAME", help="open this saved profile in the wizard")
    tui.add_argument("--source", metavar="URL", help="fill the source form with this connection string")
    tui.add_argument("--target", metavar="URL", help="fill the target form with this connection string")
    tui.add_argument("--dashboard", action="store_true",
                     help="go straight to the dashboard of a migration that is already running")
    tui.set_defaults(handler=_cmd_tui)

    demo = sub.add_parser(
        "demo",
        help="try pgtide on two throwaway local servers with a sample database",
        description=(
            "Start two throwaway PostgreSQL servers on this machine (its own server binaries), load a sample "
            "database under a light write load, and open the app with a 'demo' profile filled in. Quitting "
            "stops both servers and removes their files."
        ),
    )
    demo.set_defaults(handler=_cmd_demo)

    from .attach_cmd import register as register_attach
    from .cutover_cmd import register as register_cutover
    from .migrations_cmd import register as register_migrations
    from .profile_cmd import register
    from .schema_cmd import register as register_schema
    from .watch_cmd import register as register_watch

    register(sub)
    register_watch(sub)
    register_migrations(sub)
    register_cutover(sub)
    register_attach(sub)
    register_schema(sub)
    return parser


def _report(exc: PgtideError, as_json: bool) -> None:
    if as_json:
        print(json.dumps(exc.to_dict()), file=sys.stdout)
        return
    print(f"error: {exc.title}: {exc.cause}", file=sys.stderr)
    if exc.remedy:
        print(f"  fix: {exc.remedy}", file=sys.stderr)


#: What a shell reports for a command ended by SIGPIPE (128 + 13).
EXIT_BROKEN_PIPE = 141


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        handler = _cmd_tui  # no command: the full-screen app
    logs.configure()
    from ..core.infra.tools import install_cleanup_handlers

    # SIGTERM (systemd, CI, kill) unwinds like Ctrl-C: work in progress is cleaned up on
    # the servers and the exit code says "interrupted, resumable".
    signal.signal(signal.SIGTERM, _terminate)
    install_cleanup_handlers()
    as_json = bool(getattr(args, "json", False))
    from ..core.infra.db import connection_pools

    try:
        from .foreign_cmd import FOREIGN_COMMANDS, handler_for, is_foreign

        # A foreign source (SQLite, MySQL/MariaDB, MongoDB) runs the same verbs on its own engine.
        if getattr(args, "command", None) in FOREIGN_COMMANDS and is_foreign(args):
            handler = handler_for(args.command)
        # One small pool per server and database for the command's short queries.
        with connection_pools():
            return handler(args)
    except PgtideError as exc:
        log.info("%s", exc)
        _report(exc, as_json)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`pgtide validate --json | head -3`): end quietly, as a shell
        # tool killed by SIGPIPE would, and keep Python from failing to flush at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception:
        log.exception("unexpected error")
        print(f"error: unexpected internal error; details are in {logs.log_file()}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
