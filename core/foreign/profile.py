"""Profiles of foreign-source migrations: the same TOML files and folder as PostgreSQL ones.

A profile whose ``source`` is a foreign URL or file keeps its settings under ``[foreign]``
(layout, target schema, tables, refresh interval), row filters under ``[foreign.filters]``
(table = "predicate in the source's language") and per-column type overrides under
``[foreign.casts]`` ("table.column" = "PostgreSQL type"). Saving over a loaded profile keeps
its comments (tomlkit); no password is ever written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tomlkit
from tomlkit.exceptions import ParseError

from ..infra.endpoint import Endpoint
from ..infra.errors import InputError
from ..infra.secrets import with_stored_password
from ..model.profiles import _atomic_write, _read_text, profile_path, validate_name
from .endpoint import ForeignEndpoint, looks_foreign
from .plan import ForeignPlan, default_layout, parse_interval

_TITLE = "Invalid profile"
_KEYS = ("layout", "target_schema", "include", "exclude", "schema_only", "refresh_every", "jobs", "filters", "casts")


def _document(name: str) -> tuple[Any, Any]:
    path, text = _read_text(name)
    try:
        return path, tomlkit.parse(text)
    except ParseError as exc:
        raise InputError(f"{path}: TOML syntax error at line {exc.line}, column {exc.col}",
                         "Fix the syntax at that line.", title=_TITLE) from None


def is_foreign_profile(name: str) -> bool:
    try:
        _path, document = _document(name)
    except InputError:
        return False
    source = document.get("source")
    return isinstance(source, str) and looks_foreign(source)


def _strings(path: Any, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{path}: [foreign] {key} must be a list of table names",
                         f'Write e.g. {key} = ["orders", "users"].', title=_TITLE)
    return tuple(value)


def _table_of_strings(path: Any, key: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise InputError(f"{path}: [foreign.{key}] must map names to strings",
                         f'Write e.g. [foreign.{key}] then "orders.note" = "text".', title=_TITLE)
    return {str(k): str(v) for k, v in value.items()}


def _interval(path: Any, value: Any) -> float | None:
    if value is None:
        return None
    try:
        return parse_interval(value)
    except InputError:
        raise InputError(f"{path}: [foreign] refresh_every must be seconds or a text like \"5m\"",
                         'Write e.g. refresh_every = "5m".', title=_TITLE) from None


def load_foreign_profile(name: str) -> ForeignPlan:
    """Profile ``name`` as a foreign plan (passwords from the keyring or the environment)."""
    path, document = _document(name)
    data = document.unwrap()
    unknown = sorted(set(data) - {"source", "target", "foreign"})
    if unknown:
        raise InputError(f"{path}: unknown key {unknown[0]!r} for a foreign-source profile",
                         "A foreign-source profile has source, target and a [foreign] table.", title=_TITLE)
    for key in ("source", "target"):
        if not isinstance(data.get(key), str):
            raise InputError(f"{path}: {key} must be a URL string", f'Add {key} = "…".', title=_TITLE)
    section = data.get("foreign", {})
    if not isinstance(section, Mapping):
        raise InputError(f"{path}: foreign must be a table ([foreign])", "Write it under a [foreign] header.",
                         title=_TITLE)
    bad = sorted(set(section) - set(_KEYS))
    if bad:
        raise InputError(f"{path}: unknown key {bad[0]!r} in [foreign]", f"Known keys: {', '.join(_KEYS)}.",
                         title=_TITLE)
    source = ForeignEndpoint.parse(data["source"])
    if source.password is not None:
        raise InputError(f"{path}: the source URL holds a password",
                         "Remove it from the file: pgtide asks for it, or reads the OS keyring or "
                         "PGTIDE_SOURCE_PASSWORD.", title=_TITLE)
    return ForeignPlan(
        source, with_stored_password(Endpoint.parse(data["target"])),
        layout=section.get("layout", default_layout(source)),
        include=_strings(path, "include", section.get("include", [])),
        exclude=_strings(path, "exclude", section.get("exclude", [])),
        schema_only=_strings(path, "schema_only", section.get("schema_only", [])),
        filters=_table_of_strings(path, "filters", section.get("filters", {})),
        casts=_table_of_strings(path, "casts", section.get("casts", {})),
        target_schema=str(section.get("target_schema", "public")), jobs=int(section.get("jobs", 4)),
        refresh_every=_interval(path, section.get("refresh_every")))


def _data(plan: ForeignPlan) -> dict[str, Any]:
    section: dict[str, Any] = {"layout": plan.layout, "target_schema": plan.target_schema}
    for key, value in (("include", plan.include), ("exclude", plan.exclude), ("schema_only", plan.schema_only)):
        if value:
            section[key] = list(value)
    if plan.refresh_every:
        section["refresh_every"] = plan.refresh_every
    if plan.jobs != 4:
        section["jobs"] = plan.jobs
    if plan.filters:
        section["filters"] = dict(plan.filters)
    if plan.casts:
        section["casts"] = dict(plan.casts)
    return {"source": plan.source.to_url(), "target": plan.target.to_url(), "foreign": section}


def save_foreign_profile(name: str, plan: ForeignPlan) -> None:
    """Write ``plan`` as profile ``name``; an existing file keeps its comments and key order."""
    validate_name(name)
    path = profile_path(name)
    data = _data(plan)
    try:
        _path, document = _document(name)
    except InputError:
        document = tomlkit.document()
        document.add(tomlkit.comment(f'pgtide profile "{name}" — passwords are never stored here '
                                     "(OS keyring or PGTIDE_SOURCE_PASSWORD)."))
    for key in ("source", "target"):
        document[key] = data[key]
    section = document.get("foreign")
    if section is None:
        section = tomlkit.table()
        document["foreign"] = section
    for key in _KEYS:
        if key in data["foreign"]:
            value = data["foreign"][key]
            if isinstance(value, dict):
                sub = tomlkit.table()
                for k, v in value.items():
                    sub[k] = v
                section[key] = sub
            else:
                section[key] = value
        elif key in section:
            del section[key]
    _atomic_write(path, document.as_string().rstrip("\n") + "\n")
