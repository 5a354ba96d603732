"""Saved profiles: a Plan kept as a human-editable TOML file, without its secrets.

A profile lives in ``paths.profiles_dir() / "NAME.toml"``::

    # pgtide profile "prod-move" — passwords are never stored here (OS keyring or ~/.pgpass).
    source = "postgresql://app@old-host:5432/app?sslmode=require"
    target = "postgresql://app@new-host:5432/app"

    [options]
    jobs = 4
    drop_existing = false
    copy_mode = "snapshot"
    resume = true
    copy_roles = true

    [selection]
    include_databases = ["app"]

    [[selection.tables]]
    rule = "schema_only"
    database = "app"
    schema = "public"
    table = "audit_log"

Endpoints are written with ``Endpoint.to_url()``: the user's own parameters, no secret and
nothing taken from the environment or a service file, so libpq applies those again on the
day the profile is used. Selection rules are written without their origin and merge layer:
a saved selection is already merged, and the profile itself is where its rules come from.

Users edit these files by hand, so saving an edited profile goes through tomlkit and
changes only what changed: comments, blank lines and key order survive.

A password a user typed into the file (in a URL or DSN, or as a ``password`` key) is
accepted with a warning: the URL's password is used for connecting, a stray ``password``
key is ignored because it names no server. Both disappear the next time pgtide saves the
profile.
"""

from __future__ import annotations

import difflib
import os
import re
import tempfile
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import ParseError
from tomlkit.items import AoT, Comment, Null, Table, Trivia
from tomlkit.toml_document import TOMLDocument

from ..infra import paths, secrets
from ..infra.endpoint import SECRET_KEYS, Endpoint
from ..infra.errors import InputError
from .plan import Options, Plan
from .seed_config import load_seed_config, type_name
from .selection import DEFAULT_SCHEMA, Selection

__all__ = [
    "Profile",
    "ProfileSummary",
    "delete_profile",
    "duplicate_profile",
    "import_seed_config",
    "list_profiles",
    "load_profile",
    "profile_exists",
    "profile_path",
    "save_profile",
    "show_profile",
    "validate_name",
]

_NAME = re.compile(r"(?!\.)[A-Za-z0-9._-]{1,64}")
_TOP_KEYS = ("source", "target", "options", "selection")
_TITLE = "Invalid profile"


def _header(name: str) -> str:
    return f'# pgtide profile "{name}" — passwords are never stored here (OS keyring or ~/.pgpass).'


@dataclass(frozen=True)
class Profile:
    """A loaded (or just saved) profile.

    ``warnings`` are things the user should fix in the file (a password written in it).
    The parsed TOML document is kept so that saving an edited plan over this profile
    keeps the file's comments and layout.
    """

    name: str
    path: Path
    plan: Plan
    warnings: tuple[str, ...] = ()
    _document: TOMLDocument | None = field(default=None, repr=False, compare=False)

    @property
    def modified(self) -> datetime | None:
        try:
            return datetime.fromtimestamp(self.path.stat().st_mtime, tz=UTC)
        except OSError:
            return None


@dataclass(frozen=True)
class ProfileSummary:
    """One line of the profile list. ``error`` is set (and the endpoints empty) for a broken file."""

    name: str
    path: Path
    source: str
    target: str
    modified: datetime
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "source": self.source,
            "target": self.target,
            "modified": self.modified.isoformat(),
            "error": self.error,
        }


# -- names and files ---------------------------------------------------------------------------


def validate_name(name: str) -> str:
    """``name`` if it can name a profile file; InputError otherwise."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InputError(
            f"{name!r} cannot be a profile name",
            "Use 1 to 64 letters, digits, '-', '_' or '.', not starting with a dot (e.g. prod-move).",
            title="Invalid profile name",
        )
    return name


def profile_path(name: str) -> Path:
    return paths.profiles_dir() / f"{validate_name(name)}.toml"


def profile_exists(name: str) -> bool:
    return profile_path(name).is_file()


def _existing_names() -> list[str]:
    directory = paths.profiles_dir()
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.toml") if not p.name.startswith(".") and p.is_file())


def _unknown_profile(name: str) -> InputError:
    names = _existing_names()
    if not names:
        remedy = "There are no saved profiles yet; create one with: pgtide profile save NAME --source URL --target URL."
    else:
        close = difflib.get_close_matches(name, names, n=1)
        remedy = (f"Did you mean {close[0]}? " if close else "") + "Existing profiles: " + ", ".join(names) + "."
    return InputError(f'there is no profile named "{name}" in {paths.profiles_dir()}', remedy,
                      title="Unknown profile")


def _read_text(name: str) -> tuple[Path, str]:
    path = profile_path(name)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _unknown_profile(name) from None
    except OSError as exc:
        raise InputError(f"cannot read profile {path}: {exc.strerror or exc}",
                         "Check the file's permissions.", title=_TITLE) from None
    try:
        return path, raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text (byte {exc.start})", "Save the file as UTF-8.",
                         title=_TITLE) from None


def _atomic_write(path: Path, text: str, *, exclusive: bool = False) -> None:
    """Write ``text`` to ``path`` whole or not at all, mode 0600.

    ``exclusive`` refuses to replace an existing file (without a window where two writers
    could both think the name was free).
    """
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.stem}.", suffix=".tmp")
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(temp, 0o600)
        if exclusive:
            try:
                os.link(temp, path)
            except FileExistsError:
                raise _name_taken(path.stem) from None
            except OSError:
                # No hard links on this file system: check, then replace.
                if path.exists():
                    raise _name_taken(path.stem) from None
                os.replace(temp, path)
        else:
            os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass  # some platforms cannot fsync a directory; the rename itself is atomic
    finally:
        os.close(dir_fd)


def _name_taken(name: str) -> InputError:
    return InputError(f'a profile named "{name}" already exists',
                      f"Choose another name, or delete it first with: pgtide profile delete {name}",
                      title="Profile exists")


# -- reading -----------------------------------------------------------------------------------


def _render_path(keys: tuple[str | int, ...]) -> str:
    out = ""
    for key in keys:
        out += f"[{key + 1}]" if isinstance(key, int) else ("." if out else "") + key
    return out


def _strip_password_keys(value: Any, keys: tuple[str | int, ...], found: list[str]) -> Any:
    """A copy of ``value`` without keys named like a libpq secret; their paths go to ``found``."""
    if isinstance(value, Mapping):
        kept = {}
        for key, item in value.items():
            if key in SECRET_KEYS:
                found.append(_render_path((*keys, key)))
                continue
            kept[key] = _strip_password_keys(item, (*keys, key), found)
        return kept
    if isinstance(value, list):
        return [_strip_password_keys(item, (*keys, index), found) for index, item in enumerate(value)]
    return value


def _with_prefix(exc: InputError, old: str, new: str, fallback: str) -> InputError:
    """Re-anchor an error of a nested reader at this file: ``old`` becomes ``new``."""
    cause = exc.cause
    cause = new + cause[len(old):] if old and cause.startswith(old) else fallback + cause
    return InputError(cause, exc.remedy, title=_TITLE)


def _move_password_warning(name: str, what: str) -> str:
    return (
        f'profile "{name}": {what}. Move it to the OS keyring (pgtide profile save {name} '
        "--remember-password) or to ~/.pgpass, then delete it from the file."
    )


def _parse(name: str, path: Path, text: str) -> Profile:
    try:
        document = tomlkit.parse(text)
    except ParseError as exc:
        # tomlkit quotes the offending character; blank it, it may be part of a password.
        problem = re.sub(r"'.*?'", "…", str(exc).split(" at line ")[0])
        raise InputError(
            f"{path}: TOML syntax error at line {exc.line}, column {exc.col}: {problem}",
            'Fix the syntax at that line: strings need double quotes, e.g. source = "postgresql://…".',
            title=_TITLE,
        ) from None
    found: list[str] = []
    data = _strip_password_keys(document.unwrap(), (), found)
    warnings = [
        _move_password_warning(name, f"{where} holds a password; it is ignored (it names no server)")
        for where in found
    ]
    unknown = [key for key in data if key not in _TOP_KEYS]
    if unknown:
        raise InputError(f"{path}: unknown key {unknown[0]!r}",
                         f"A profile has only these top-level keys: {', '.join(_TOP_KEYS)}.", title=_TITLE)

    endpoints: dict[str, Endpoint] = {}
    for key in ("source", "target"):
        if key not in data:
            raise InputError(f"{path}: missing key {key!r}",
                             f'Add a line such as {key} = "postgresql://USER@HOST:5432/DBNAME".', title=_TITLE)
        value = data[key]
        if not isinstance(value, str):
            raise InputError(f"{path}: {key} must be a string (a postgresql:// URL or DSN), not {type_name(value)}",
                             f'Write e.g. {key} = "postgresql://USER@HOST:5432/DBNAME".', title=_TITLE)
        try:
            endpoint = Endpoint.parse(value)
        except InputError as exc:
            raise _with_prefix(exc, "", "", f"{path}: {key}: ") from None
        if any(endpoint.params.get(secret) for secret in SECRET_KEYS):
            warnings.append(_move_password_warning(name, f"the {key} connection string contains a password"))
        endpoints[key] = endpoint

    options_data = data.get("options", {})
    if not isinstance(options_data, Mapping):
        raise InputError(f"{path}: options must be a table ([options]), not {type_name(options_data)}",
                         "Write the options under an [options] header.", title=_TITLE)
    prefix = f"{path}: [options]"
    try:
        options = Options.from_dict(dict(options_data), source=prefix)
    except InputError as exc:
        raise _with_prefix(exc, prefix, prefix, prefix + ": ") from None

    selection_data = data.get("selection", {})
    if not isinstance(selection_data, Mapping):
        raise InputError(f"{path}: selection must be a table ([selection]), not {type_name(selection_data)}",
                         "Write the selection under a [selection] header.", title=_TITLE)
    origin = f'profile "{name}"'
    try:
        selection = Selection.from_dict(selection_data, source=origin)
    except InputError as exc:
        raise _with_prefix(exc, origin + ": ", f"{path}: selection.", f"{path}: [selection]: ") from None

    plan = Plan(endpoints["source"], endpoints["target"], selection, options)
    return Profile(name, path, plan, tuple(warnings), document)


def load_profile(name: str) -> Profile:
    """Read profile ``name``. Every problem with the file is an InputError naming the key."""
    path, text = _read_text(name)
    return _parse(name, path, text)


# -- writing -----------------------------------------------------------------------------------


def _selection_data(selection: Selection) -> dict[str, Any]:
    """``Selection.to_dict`` without provenance, databases as plain names, no empty lists."""
    raw = selection.to_dict()
    out: dict[str, Any] = {}
    for key in ("include_databases", "exclude_databases"):
        if raw[key]:
            out[key] = [entry["name"] for entry in raw[key]]
    tables = [{k: v for k, v in rule.items() if k not in ("origin", "layer")} for rule in raw["tables"]]
    if tables:
        out["tables"] = tables
    return out


def _plan_data(plan: Plan) -> dict[str, Any]:
    return {
        "source": plan.source.to_url(),
        "target": plan.target.to_url(),
        "options": plan.options.to_dict(),
        "selection": _selection_data(plan.selection),
    }


def _fresh_document(name: str, data: Mapping[str, Any]) -> TOMLDocument:
    document = tomlkit.document()
    document.add(tomlkit.comment(_header(name)[2:]))
    document.add("source", data["source"])
    document.add("target", data["target"])
    for key in ("options", "selection"):
        table = tomlkit.table()
        for sub_key, value in data[key].items():
            table.add(sub_key, value)
        document.add(key, table)
    return document


def _same(old: Any, new: Any) -> bool:
    """Equal and of the same types all the way down (so ``1`` never stands for ``true``)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        return old.keys() == new.keys() and all(_same(old[k], new[k]) for k in old)
    if isinstance(old, list) and isinstance(new, list):
        return len(old) == len(new) and all(_same(a, b) for a, b in zip(old, new, strict=True))
    return type(old) is type(new) and old == new


def _body(container: Any) -> list[tuple[Any, Any]] | None:
    """The item list of a tomlkit table or document (None if tomlkit changes shape)."""
    inner = container.value if isinstance(container, Table) else container
    body = getattr(inner, "body", None)
    return body if isinstance(body, list) else None


def _forget_comments_above(body: list[tuple[Any, Any]] | None, index: int) -> list[str]:
    """Blank the comment lines directly above ``body[index]`` and return them.

    A blank line ends the block (a comment separated by one is about something else).
    Items are replaced by ``Null`` rather than removed, as tomlkit itself does, so the
    container's index of its keys stays valid.
    """
    taken: list[str] = []
    if body is None:
        return taken
    index -= 1
    while index >= 0 and body[index][0] is None and isinstance(body[index][1], (Comment, Null)):
        if isinstance(body[index][1], Comment):
            taken.insert(0, body[index][1].as_string())
        body[index] = (None, Null())
        index -= 1
    return taken


def _index_of(body: list[tuple[Any, Any]] | None, key: str) -> int | None:
    for index, (item_key, _item) in enumerate(body or []):
        if item_key is not None and getattr(item_key, "key", None) == key:
            return index
    return None


def _add_key(container: MutableMapping[str, Any], key: str, value: Any) -> None:
    """Add a new key after the container's last plain key.

    tomlkit appends at the very end, which puts a key below a comment written for the next
    header, or below a [[table]] it would then belong to. Values (not tables) go right
    after the last value instead.
    """
    body = _body(container)
    inner = container.value if isinstance(container, Table) else container
    if body is not None and not isinstance(value, Mapping) and not (
        isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value)
    ):
        plain = [index for index, (item_key, item) in enumerate(body)
                 if item_key is not None and not isinstance(item, (Table, AoT))]
        position = plain[-1] + 1 if plain else 0
        if position < len(body) and hasattr(inner, "_insert_at"):
            try:
                inner._insert_at(position, key, value)
                return
            except (ValueError, KeyError, TypeError):
                pass  # an unusual layout: fall back to tomlkit's own placement
    container[key] = value


def _sync(container: MutableMapping[str, Any], new: Mapping[str, Any]) -> None:
    """Make ``container`` hold ``new``, touching only what differs (tomlkit keeps the rest)."""
    body = _body(container)
    for key in [key for key in container if key not in new]:
        index = _index_of(body, key)
        if index is not None:
            _forget_comments_above(body, index)
        del container[key]
    for key, value in new.items():
        if key not in container:
            _add_key(container, key, value)
            continue
        old = container[key]
        plain = old.unwrap() if hasattr(old, "unwrap") else old
        if _same(plain, value):
            continue
        if isinstance(value, Mapping) and isinstance(old, MutableMapping):
            _sync(old, value)
        elif isinstance(old, AoT) and isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
            _sync_tables(old, value, body, _index_of(body, key))
        else:
            container[key] = value


def _rule_identity(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a selection rule is about, as opposed to its content (a predicate, a window)."""
    name = entry.get("name")
    if isinstance(name, list):
        return (entry.get("rule"), tuple(str(part) for part in name))
    return (entry.get("rule"), entry.get("database"), entry.get("schema", DEFAULT_SCHEMA), entry.get("table"))


def _sync_tables(old: AoT, new: list[Mapping[str, Any]], parent_body: list[tuple[Any, Any]] | None,
                 index_in_parent: int | None) -> None:
    """Array of tables: match entries by the rule they hold, not by position.

    A rule the user kept stays where it is, with its comments, even if rules before it
    were removed; a changed rule is updated in place; new rules are appended.
    """
    unmatched = list(new)
    keep: set[int] = set()
    for index, table in enumerate(old):
        plain = table.unwrap()
        match = next((entry for entry in unmatched if _rule_identity(entry) == _rule_identity(plain)), None)
        if match is None:
            continue
        unmatched.remove(match)
        keep.add(index)
        if "schema" not in plain and match.get("schema") == DEFAULT_SCHEMA:
            match = {k: v for k, v in match.items() if k != "schema"}  # implied: leave it unwritten
        _sync(table, match)
    for index in reversed(range(len(old))):
        if index in keep:
            continue
        # The comment above a [[header]] is stored at the end of whatever precedes it: the
        # previous entry, or the parent table for the first one. It goes with its entry;
        # the comment at the end of this entry belongs to the next one and moves with it.
        if index > 0:
            previous = _body(old[index - 1])
            _forget_comments_above(previous, len(previous or []))
        elif index_in_parent is not None:
            _forget_comments_above(parent_body, index_in_parent)
        own = _body(old[index])
        following = _forget_comments_above(own, len(own or []))
        del old[index]
        if following and index < len(old):
            successor = old[index]
            successor.trivia.indent = "".join(following) + successor.trivia.indent
        elif following and index > 0:
            _append_comments(old[index - 1], following)
    if not unmatched:
        return
    # Comments at the end of the last entry are about what follows the array: keep them last.
    trailing: list[str] = []
    if len(old):
        last = _body(old[len(old) - 1])
        trailing = _forget_comments_above(last, len(last or []))
    for entry in unmatched:
        if len(old) and not old[len(old) - 1].as_string().endswith("\n\n"):
            old[len(old) - 1].add(tomlkit.nl())  # a blank line between rules, as we write them
        old.append(entry)
    if trailing:
        old[len(old) - 1].add(tomlkit.nl())
        _append_comments(old[len(old) - 1], trailing)


def _append_comments(table: Table, lines: list[str]) -> None:
    for line in lines:
        table.add(Comment(Trivia(comment_ws="", comment=line.strip())))


def _retitle(text: str, old_name: str, new_name: str) -> str:
    """Rename the header comment we wrote, if the user left it alone."""
    old_header = _header(old_name)
    if old_name != new_name and text.startswith(old_header):
        return _header(new_name) + text[len(old_header):]
    return text


def save_profile(name: str, plan: Plan, *, base: Profile | None = None) -> Profile:
    """Write ``plan`` as profile ``name`` (replacing it) and return it as loaded back.

    With ``base`` (the profile the plan was loaded from and edited), the file keeps base's
    comments, blank lines and key order: only changed values are replaced, removed keys
    deleted and new keys appended. Without it the file is written fresh. No secret is ever
    written: endpoints go through ``Endpoint.to_url()``.
    """
    path = profile_path(name)
    data = _plan_data(plan)
    if base is not None and base._document is not None:
        document = tomlkit.parse(_retitle(base._document.as_string(), base.name, name))
        _sync(document, data)
    else:
        document = _fresh_document(name, data)
    # Removed entries can leave blank lines behind at the end; one final newline is enough.
    text = document.as_string().rstrip("\n") + "\n"
    _atomic_write(path, text)
    return _parse(name, path, text)


# -- managing ----------------------------------------------------------------------------------


def list_profiles() -> list[ProfileSummary]:
    """Every profile, most recently modified first. A broken file is listed with its error."""
    directory = paths.profiles_dir()
    if not directory.is_dir():
        return []
    summaries: list[ProfileSummary] = []
    for path in directory.glob("*.toml"):
        if path.name.startswith(".") or not path.is_file():
            continue
        try:
            modified = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
        except OSError:
            continue  # deleted while we were listing
        name = path.stem
        try:
            validate_name(name)
            profile = load_profile(name)
        except InputError as exc:
            error = exc.cause
            from ..foreign.profile import is_foreign_profile, load_foreign_profile

            try:
                if is_foreign_profile(name):  # a SQLite/MySQL/MongoDB source: its own keys
                    foreign = load_foreign_profile(name)
                    summaries.append(ProfileSummary(name, path, foreign.source.redacted(),
                                                    foreign.target.redacted(), modified))
                    continue
            except InputError as foreign_exc:
                error = foreign_exc.cause
            summaries.append(ProfileSummary(name, path, "", "", modified, error))
            continue
        summaries.append(ProfileSummary(name, path, profile.plan.source.redacted(),
                                        profile.plan.target.redacted(), modified))
    summaries.sort(key=lambda s: (-s.modified.timestamp(), s.name))
    return summaries


def delete_profile(name: str) -> None:
    """Remove profile ``name``. Stored passwords stay: they belong to servers, not profiles."""
    path = profile_path(name)
    try:
        path.unlink()
    except FileNotFoundError:
        raise _unknown_profile(name) from None


def duplicate_profile(name: str, new_name: str) -> Profile:
    """Copy profile ``name`` to ``new_name`` (comments and all); refuses to overwrite."""
    validate_name(new_name)
    source = load_profile(name)
    target_path = profile_path(new_name)
    if target_path.exists():
        raise _name_taken(new_name)
    assert source._document is not None
    text = _retitle(source._document.as_string(), name, new_name)
    _atomic_write(target_path, text, exclusive=True)
    return _parse(new_name, target_path, text)


def _as_endpoint(value: str | Endpoint | None) -> Endpoint | None:
    if value is None or isinstance(value, Endpoint):
        return value
    return Endpoint.parse(value)


def import_seed_config(
    path: str | os.PathLike[str],
    name: str,
    *,
    source: str | Endpoint | None = None,
    target: str | Endpoint | None = None,
) -> Profile:
    """Save the selection of a seed-format config file as profile ``name``.

    A new profile needs ``source`` and ``target`` (a profile always names both servers).
    If the profile exists, only its selection is replaced (and its endpoints when given);
    its options and comments stay.
    """
    validate_name(name)
    selection = load_seed_config(path)
    existing = load_profile(name) if profile_exists(name) else None
    source_endpoint = _as_endpoint(source) or (existing.plan.source if existing else None)
    target_endpoint = _as_endpoint(target) or (existing.plan.target if existing else None)
    if source_endpoint is None or target_endpoint is None:
        missing = " and ".join(k for k, v in (("source", source_endpoint), ("target", target_endpoint)) if v is None)
        raise InputError(
            f'profile "{name}" does not exist yet, so it needs a {missing}',
            "Pass --source URL and --target URL, or import into an existing profile.",
        )
    options = existing.plan.options if existing else Options()
    return save_profile(name, Plan(source_endpoint, target_endpoint, selection, options), base=existing)


def _password_display(endpoint: Endpoint) -> str:
    if endpoint.password:
        return "password written in the profile file (move it to the OS keyring or ~/.pgpass)"
    return secrets.password_source(endpoint)


def show_profile(name: str) -> dict[str, Any]:
    """Profile ``name`` for display or JSON: redacted endpoints, never a password."""
    profile = load_profile(name)
    plan = profile.plan
    modified = profile.modified
    return {
        "name": profile.name,
        "path": str(profile.path),
        "modified": modified.isoformat() if modified else None,
        "source": plan.source.redacted(),
        "target": plan.target.redacted(),
        "source_password": _password_display(plan.source),
        "target_password": _password_display(plan.target),
        "options": plan.options.to_dict(),
        "selection": _selection_data(plan.selection),
        "warnings": list(profile.warnings),
    }
