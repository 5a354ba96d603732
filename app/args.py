"""Command-line arguments shared by the commands, and building a Plan from them.

Layering, lowest first: a saved profile (``--profile``), then a seed config file
(``--config``), then the flags on the command line. Parsing of every syntax lives in
core; this module only wires argparse to it.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..core.infra.endpoint import Endpoint
from ..core.infra.errors import InputError
from ..core.model.plan import Options, Plan
from ..core.model.selection import Selection

if TYPE_CHECKING:
    from ..core.session import MigrationSession

ENDPOINT_HELP = (
    "postgresql:// URL, keyword DSN ('host=... dbname=...') or 'service=NAME'; libpq's PG* "
    "variables, service files and ~/.pgpass apply as in psql"
)


def add_endpoint_arguments(parser: argparse.ArgumentParser, *, target: bool = True,
                           migration: bool = False) -> None:
    parser.add_argument("--source", metavar="URL", help="the server to migrate from: " + ENDPOINT_HELP
                        + "; or SQLite, MySQL/MariaDB, MongoDB: sqlite:///PATH.db (or the path), "
                        "mysql://USER@HOST:3306/DB, mariadb://…, mongodb://USER@HOST:27017/DB")
    if target:
        parser.add_argument("--target", metavar="URL", help="the server to migrate to: " + ENDPOINT_HELP)
    if migration:
        parser.add_argument("--migration", metavar="ID",
                            help="act on this recorded migration (see `pgtide migrations`) instead of --source/--target")


def add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("what to migrate (seed-compatible)")
    group.add_argument("--include-databases", action="append", metavar="A,B", help="only these databases")
    group.add_argument("--exclude-databases", action="append", metavar="A,B", help="all databases but these")
    group.add_argument(
        "--include-tables", action="append", metavar="T",
        help="only these tables: table, schema.table, db.table or db.schema.table (quote with \"...\")",
    )
    group.add_argument("--exclude-tables", action="append", metavar="T", help="all tables but these")
    group.add_argument("--schema-only-tables", action="append", metavar="T", help="copy the definition, no rows")
    group.add_argument(
        "--table-filter", action="append", metavar="[DB.][SCHEMA.]TABLE:PREDICATE",
        help="copy and replicate only the rows matching a SQL predicate",
    )
    group.add_argument(
        "--time-filter", action="append", metavar="[DB.][SCHEMA.]TABLE:COLUMN:N UNIT",
        help="copy and replicate only rows of the last N seconds/minutes/hours/days/weeks/months/years",
    )
    group.add_argument("--config", metavar="FILE", help="seed-format TOML file with per-database rules")
    group.add_argument("--profile", metavar="NAME", help="start from a saved profile (flags override it)")


def add_option_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("how to run")
    group.add_argument("--jobs", "-j", type=int, metavar="N", help="parallel workers per database (default 4)")
    group.add_argument("--drop-existing", action="store_true", default=None,
                       help="drop and recreate non-empty target databases")
    group.add_argument("--no-resume", dest="resume", action="store_false", default=None,
                       help="start over instead of continuing an interrupted run")
    group.add_argument("--copy", dest="copy_mode", choices=("snapshot", "server"),
                       help="snapshot: pgtide copies (default); server: the subscription copies")
    group.add_argument("--no-subscription-password", dest="subscription_password", action="store_false",
                       default=None, help="keep the source password out of the target's pg_subscription "
                       "(the target server then needs a .pgpass entry for the source)")


def selection_from_args(args: argparse.Namespace) -> Selection:
    """The flags' selection only (no profile, no config file)."""
    return Selection.from_cli(
        include_databases=getattr(args, "include_databases", None),
        exclude_databases=getattr(args, "exclude_databases", None),
        include_tables=getattr(args, "include_tables", None),
        exclude_tables=getattr(args, "exclude_tables", None),
        schema_only_tables=getattr(args, "schema_only_tables", None),
        table_filters=getattr(args, "table_filter", None),
        time_filters=getattr(args, "time_filter", None),
    )


def _option_overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = ("jobs", "drop_existing", "resume", "copy_mode", "subscription_password")
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def plan_from_args(args: argparse.Namespace, *, need_target: bool = True) -> Plan:
    """Profile, then config file, then flags — each layer overriding the one before."""
    from ..core.model.seed_config import load_seed_config

    source: Endpoint | None = None
    target: Endpoint | None = None
    selection = Selection()
    options = Options()
    profile_name = getattr(args, "profile", None)
    if profile_name:
        from ..core.model.profiles import load_profile

        profile = load_profile(profile_name)
        source, target, selection, options = (
            profile.plan.source, profile.plan.target, profile.plan.selection, profile.plan.options
        )
    if getattr(args, "config", None):
        selection = selection.merge(load_seed_config(args.config))
    selection = selection.merge(selection_from_args(args))
    if getattr(args, "source", None):
        source = Endpoint.parse(args.source)
    if getattr(args, "target", None):
        target = Endpoint.parse(args.target)
    if source is None:
        raise InputError("no source server given", "Pass --source URL, or --profile NAME of a saved profile.")
    if target is None:
        if need_target:
            raise InputError("no target server given", "Pass --target URL, or --profile NAME of a saved profile.")
        target = source
    overrides = _option_overrides(args)
    if overrides:
        options = Options(**{**options.to_dict(), **overrides})
    return Plan(source, target, selection, options)


def _selection_given(args: argparse.Namespace) -> bool:
    names = ("include_databases", "exclude_databases", "include_tables", "exclude_tables", "schema_only_tables",
             "table_filter", "time_filter", "config", "profile")
    return any(getattr(args, name, None) for name in names)


def session_from_args(args: argparse.Namespace, *, out: Any = None) -> MigrationSession:
    """The recorded migration a command acts on: by --migration ID, or found from the servers."""
    import sys

    from ..core.session import MigrationSession

    migration = getattr(args, "migration", None)
    if migration:
        if getattr(args, "source", None) or getattr(args, "target", None) or getattr(args, "profile", None):
            raise InputError("--migration names the servers already",
                             "Pass either --migration ID or --source/--target (or --profile), not both.")
        session = MigrationSession.from_record(migration)
        if _selection_given(args):
            session.plan = replace(session.plan, selection=selection_from_args(args))
            session.notes.append(f"using the selection given, not the one recorded for migration {migration}")
    else:
        session = MigrationSession.open(plan_from_args(args), selection_given=_selection_given(args))
    for note in session.notes:
        print(f"note: {note}", file=out or sys.stderr)
    return session
