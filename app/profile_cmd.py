"""``pgtide profile ...``: list, show, save, delete, duplicate and import saved profiles.

Handlers return exit codes and raise PgtideError for anything the user must fix;
``app.cli.main`` renders those. Nothing here prints a password: endpoints are shown
redacted, and where a password was given on the command line we say where it can live
instead (the OS keyring with --remember-password, or ~/.pgpass).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import Any

from ..core.infra import secrets
from ..core.infra.endpoint import Endpoint
from ..core.infra.errors import EnvironmentProblem, InputError
from ..core.model import profiles
from ..core.model.selection import Selection
from .args import add_endpoint_arguments, add_option_arguments, add_selection_arguments, plan_from_args
from .foreign_cmd import add_foreign_arguments

EXIT_OK = 0
EXIT_USAGE = 2


def register(sub: Any) -> None:
    """Add the ``profile`` command to the top-level subparsers ``sub``."""
    profile = sub.add_parser(
        "profile",
        help="list, show, save, delete, duplicate or import saved profiles",
        description="Saved migration plans, kept as TOML files without passwords.",
    )
    actions = profile.add_subparsers(dest="profile_action", metavar="ACTION", required=True,
                                     parser_class=type(profile))

    listing = actions.add_parser("list", help="saved profiles, most recently changed first")
    listing.add_argument("--json", action="store_true", help="a JSON array")
    listing.set_defaults(handler=_cmd_list)

    show = actions.add_parser("show", help="one profile, with where its passwords come from")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--json", action="store_true", help="a JSON object")
    show.set_defaults(handler=_cmd_show)

    save = actions.add_parser(
        "save",
        help="save servers, selection and options as a profile (updates an existing one)",
        description="Save a profile. If NAME exists it is the starting point and the flags change it; "
        "the file's comments and layout are kept. Passwords are never written to the file.",
    )
    save.add_argument("name", metavar="NAME")
    add_endpoint_arguments(save)
    add_selection_arguments(save)
    add_option_arguments(save)
    add_foreign_arguments(save)
    _add_remember_password(save)
    save.set_defaults(handler=_cmd_save)

    delete = actions.add_parser("delete", help="delete a profile (stored passwords stay in the keyring)")
    delete.add_argument("name", metavar="NAME")
    delete.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(handler=_cmd_delete)

    duplicate = actions.add_parser("duplicate", help="copy a profile under a new name")
    duplicate.add_argument("name", metavar="NAME")
    duplicate.add_argument("new_name", metavar="NEW")
    duplicate.set_defaults(handler=_cmd_duplicate)

    imported = actions.add_parser(
        "import",
        help="make a profile from a seed-format config file",
        description="Read a seed-format TOML config file into profile NAME. A new profile needs --source "
        "and --target; for an existing one only the selection is replaced (and the servers, if given).",
    )
    imported.add_argument("config_file", metavar="SEED_CONFIG.toml")
    imported.add_argument("--as", dest="as_name", metavar="NAME", required=True, help="the profile to write")
    add_endpoint_arguments(imported)
    _add_remember_password(imported)
    imported.set_defaults(handler=_cmd_import)


def _add_remember_password(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--remember-password", action="store_true",
        help="store a password given in --source/--target in the OS keyring (never in the profile)",
    )


# -- passwords given on the command line ----------------------------------------------------


def _pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _pgpass_template(endpoint: Endpoint) -> str:
    return f"{_pgpass_field(endpoint.host)}:{endpoint.port}:*:{_pgpass_field(endpoint.user)}:PASSWORD"


def _with_password(source: Endpoint | None, target: Endpoint | None) -> list[tuple[str, Endpoint]]:
    return [(label, endpoint) for label, endpoint in (("source", source), ("target", target))
            if endpoint is not None and endpoint.password]


def _check_keyring(given: list[tuple[str, Endpoint]], remember: bool) -> None:
    """Refuse --remember-password without a keyring before anything is written."""
    if not (remember and given):
        return
    usable, reason = secrets.keyring_status()
    if not usable:
        lines = " and ".join(_pgpass_template(endpoint) for _label, endpoint in given)
        raise EnvironmentProblem(
            f"cannot remember the password: {reason}; nothing was saved",
            f"Add {lines} to ~/.pgpass (mode 0600; write : and \\ in the password as \\: and \\\\), "
            "or set PGPASSWORD, then save the profile without --remember-password.",
            title="No OS keyring",
        )


def _store_or_explain(given: list[tuple[str, Endpoint]], remember: bool) -> None:
    """Store passwords in the keyring (--remember-password), or say where they can live."""
    if remember:
        if not given:
            print("note: --remember-password: neither --source nor --target contains a password; "
                  "nothing to store", file=sys.stderr)
        stored: set[str] = set()
        for label, endpoint in given:
            if endpoint.identity in stored:
                continue
            assert endpoint.password is not None
            secrets.set_password(endpoint, endpoint.password)
            stored.add(endpoint.identity)
            print(f"stored the {label} password for {endpoint.identity} in the OS keyring")
        return
    if not given:
        return
    usable, _reason = secrets.keyring_status()
    for label, endpoint in given:
        where = ("pass --remember-password to keep it in the OS keyring, or add the line "
                 if usable else "there is no OS keyring here; add the line ")
        print(
            f"note: the {label} password was not saved (profiles never hold passwords); {where}"
            f"{_pgpass_template(endpoint)} to ~/.pgpass (mode 0600) or set PGPASSWORD",
            file=sys.stderr,
        )


# -- handlers ----------------------------------------------------------------------------------


def _cmd_list(args: argparse.Namespace) -> int:
    summaries = profiles.list_profiles()
    if args.json:
        print(json.dumps([summary.to_dict() for summary in summaries], indent=2))
        return EXIT_OK
    if not summaries:
        print("no saved profiles; create one with: pgtide profile save NAME --source URL --target URL")
        return EXIT_OK
    width = max(len(summary.name) for summary in summaries)
    for summary in summaries:
        when = summary.modified.astimezone().strftime("%Y-%m-%d %H:%M")
        if summary.error:
            print(f"{summary.name:<{width}}  {when}  broken: {summary.error}")
        else:
            print(f"{summary.name:<{width}}  {when}  {summary.source} -> {summary.target}")
    return EXIT_OK


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, str) else str(value)


def _cmd_show(args: argparse.Namespace) -> int:
    shown = profiles.show_profile(args.name)
    if args.json:
        print(json.dumps(shown, indent=2))
        return EXIT_OK
    print(f"profile {shown['name']}  ({shown['path']})")
    for key in ("source", "target"):
        print(f"  {key:<7} {shown[key]}")
        print(f"          {shown[key + '_password']}")
    print("options")
    print("  " + ", ".join(f"{key} = {_toml_value(value)}" for key, value in shown["options"].items()))
    print("selection")
    selection = Selection.from_dict(shown["selection"])
    lines = []
    if selection.include_databases:
        lines.append("only databases: " + ", ".join(rule.name for rule in selection.include_databases))
    if selection.exclude_databases:
        lines.append("all databases but: " + ", ".join(rule.name for rule in selection.exclude_databases))
    lines.extend(replace(rule, origin="").describe() for rule in selection.rules)
    for line in lines or ["everything (no rules)"]:
        print(f"  {line}")
    for warning in shown["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    return EXIT_OK


def _cmd_save(args: argparse.Namespace) -> int:
    name = profiles.validate_name(args.name)
    from .foreign_cmd import save_profile as save_foreign

    if save_foreign(name, args):
        return EXIT_OK
    base: profiles.Profile | None = None
    if profiles.profile_exists(name):
        base = profiles.load_profile(name)
        if not args.profile:
            args.profile = name  # start from the saved profile; flags override it
    elif args.profile:
        base = profiles.load_profile(args.profile)
    plan = plan_from_args(args)
    given = _with_password(plan.source, plan.target)
    _check_keyring(given, args.remember_password)
    saved = profiles.save_profile(name, plan, base=base)
    _store_or_explain(given, args.remember_password)
    print(f"{'updated' if base is not None and base.name == name else 'saved'} profile {name} ({saved.path})")
    return EXIT_OK


def _cmd_delete(args: argparse.Namespace) -> int:
    name = profiles.validate_name(args.name)
    if not profiles.profile_exists(name):
        profiles.delete_profile(name)  # raises the "unknown profile" error with the list
    if not args.yes:
        if not sys.stdin.isatty():
            raise InputError(
                f"not deleting profile {name} without confirmation: stdin is not a terminal",
                f"Pass --yes to delete it: pgtide profile delete {name} --yes",
                title="Confirmation needed",
            )
        try:
            answer = input(f"Delete profile {name}? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print(f"kept profile {name}")
            return EXIT_OK
    profiles.delete_profile(name)
    print(f"deleted profile {name}")
    return EXIT_OK


def _cmd_duplicate(args: argparse.Namespace) -> int:
    copy = profiles.duplicate_profile(args.name, args.new_name)
    print(f"copied profile {args.name} to {copy.name} ({copy.path})")
    return EXIT_OK


def _cmd_import(args: argparse.Namespace) -> int:
    name = profiles.validate_name(args.as_name)
    source = Endpoint.parse(args.source) if args.source else None
    target = Endpoint.parse(args.target) if args.target else None
    given = _with_password(source, target)
    _check_keyring(given, args.remember_password)
    existed = profiles.profile_exists(name)
    saved = profiles.import_seed_config(args.config_file, name, source=source, target=target)
    rules = len(saved.plan.selection.rules)
    print(f"{'updated' if existed else 'saved'} profile {name} with {rules} rule(s) from {args.config_file} "
          f"({saved.path})")
    _store_or_explain(given, args.remember_password)
    return EXIT_OK
