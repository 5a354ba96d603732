"""Profiles as TOML files (comments kept, no secrets) and passwords in the OS keyring."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from keyring.backends import chainer, fail
from keyring.errors import KeyringError
from keyring_support import MemoryKeyring

from pgtide.core.infra import paths, secrets
from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.infra.errors import EnvironmentProblem, InputError
from pgtide.core.model import profiles
from pgtide.core.model.plan import Options, Plan
from pgtide.core.model.seed_config import load_seed_config
from pgtide.core.model.selection import Selection

SECRET = "hunter2:x\\y"


# -- keyring backends for the tests (real keyring backends, in memory) ------------------------


class PlaintextFileKeyring(MemoryKeyring):
    """Looks like keyrings.alt's PlaintextKeyring to anyone who checks the module."""


PlaintextFileKeyring.__module__ = "keyrings.alt.file"


class LockedKeyring(MemoryKeyring):
    """A keyring that exists but does not answer (e.g. a locked collection)."""

    def get_password(self, service: str, username: str) -> str | None:
        raise KeyringError("locked")


# -- helpers -----------------------------------------------------------------------------------


def _plan(source: str = "postgresql://app@old-host:5432/app?sslmode=require",
          target: str = "postgresql://app@new-host:5432/app") -> Plan:
    selection = Selection.from_cli(
        include_databases="app,reports",
        exclude_tables="app.public.tmp_import",
        schema_only_tables='app.audit."Log"',
        table_filters=["app.public.orders:created_at >= '2024-01-01' AND total > 0"],
        time_filters=["app.public.events:at:6 months"],
    )
    return Plan(Endpoint.parse(source), Endpoint.parse(target), selection,
                Options(jobs=8, drop_existing=True, copy_mode="server", resume=False, copy_roles=False))


def _write(name: str, text: str) -> Path:
    path = paths.profiles_dir() / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


HAND_EDITED = """\
# Moving the shop database off the old box.
# Owner: data team, ticket OPS-1234.

target = "postgresql://app@new-host:5432/app"   # the new cluster
source = "postgresql://app@old-host:5432/app?sslmode=require"

[options]
# Keep it gentle: the old box is busy during the day.
copy_mode = "snapshot"
jobs = 4  # raise at night
resume = true
drop_existing = false
copy_roles = true
subscription_password = true

[selection]
include_databases = ["app"]  # only the shop

# Audit rows are huge and nobody reads them.
[[selection.tables]]
rule = "schema_only"
database = "app"
schema = "public"
table = "audit_log"  # definition only
"""


# -- saving and loading ------------------------------------------------------------------------


def test_save_then_load_gives_the_same_plan_and_a_private_file() -> None:
    plan = _plan()
    saved = profiles.save_profile("prod-move", plan)
    loaded = profiles.load_profile("prod-move")
    assert loaded.plan == plan == saved.plan
    assert loaded.warnings == ()
    assert loaded.path == paths.profiles_dir() / "prod-move.toml"
    assert stat.S_IMODE(loaded.path.stat().st_mode) == 0o600
    text = loaded.path.read_text()
    assert text.startswith('# pgtide profile "prod-move" — passwords are never stored here')
    assert 'source = "postgresql://app@old-host:5432/app?sslmode=require"\n' in text
    assert "[[selection.tables]]" in text and 'include_databases = ["app", "reports"]' in text
    assert "origin" not in text and "layer" not in text  # provenance is not saved
    # No temporary file is left next to it.
    assert sorted(p.name for p in paths.profiles_dir().iterdir()) == ["prod-move.toml"]


def test_saving_never_writes_a_password_or_environment_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGSSLMODE", "verify-full")
    plan = _plan(source=f"host=old-host user=app dbname=app password='{SECRET}'")
    saved = profiles.save_profile("p", plan)
    text = saved.path.read_text()
    assert "hunter2" not in text and "verify-full" not in text
    assert 'source = "postgresql://app@old-host/app"' in text
    assert saved.plan.source.password is None
    assert saved.plan == replace(plan, source=plan.source.without_password())


def test_hand_edited_profile_keeps_every_comment_when_one_option_changes() -> None:
    _write("shop", HAND_EDITED)
    profile = profiles.load_profile("shop")
    assert profile.plan.options.jobs == 4
    assert [r.name for r in profile.plan.selection.include_databases] == ["app"]
    profiles.save_profile("shop", profile.plan.with_options(jobs=8), base=profile)
    after = (paths.profiles_dir() / "shop.toml").read_text()
    assert after == HAND_EDITED.replace("jobs = 4  # raise at night", "jobs = 8  # raise at night")


def test_saving_over_a_hand_edited_profile_removes_and_appends_entries_in_place() -> None:
    _write("shop", HAND_EDITED + '\n# Scratch data.\n[[selection.tables]]\nrule = "exclude"\ndatabase = "app"\n'
           'schema = "public"\ntable = "scratch"  # keep out\n')
    profile = profiles.load_profile("shop")
    # Drop the schema-only rule (and the comment above it), keep "scratch", add two rules.
    selection = Selection(profile.plan.selection.include_databases, rules=tuple(
        rule for rule in profile.plan.selection.rules if rule.kind == "exclude"))
    selection = selection.merge(Selection.from_cli(exclude_tables="app.public.tmp",
                                                   table_filters=["app.public.orders:total > 0"]))
    profiles.save_profile("shop", replace(profile.plan, selection=selection), base=profile)
    after = (paths.profiles_dir() / "shop.toml").read_text()
    assert after == HAND_EDITED.split("# Audit rows")[0] + """\
# Scratch data.
[[selection.tables]]
rule = "exclude"
database = "app"
schema = "public"
table = "scratch"  # keep out

[[selection.tables]]
rule = "exclude"
database = "app"
schema = "public"
table = "tmp"

[[selection.tables]]
rule = "row_filter"
database = "app"
schema = "public"
table = "orders"
where = "total > 0"
"""
    assert profiles.load_profile("shop").plan.selection == selection


RULES_THEN_OPTIONS = """\
source = "postgresql://app@old-host/app"
target = "postgresql://app@new-host/app"

[selection]
# first
[[selection.tables]]
rule = "exclude"
table = "a"

# second
[[selection.tables]]
rule = "exclude"
table = "b"  # bee

# third
[[selection.tables]]
rule = "exclude"
table = "c"

# About the options.
[options]
jobs = 2
drop_existing = false
copy_mode = "snapshot"
resume = true
copy_roles = true
subscription_password = true
"""


def test_rules_are_matched_by_what_they_name_and_comments_move_with_them() -> None:
    _write("rules", RULES_THEN_OPTIONS)
    profile = profiles.load_profile("rules")
    selection = Selection.from_cli(exclude_tables="b,e")
    profiles.save_profile("rules", replace(profile.plan, selection=selection), base=profile)
    after = (paths.profiles_dir() / "rules.toml").read_text()
    assert after == """\
source = "postgresql://app@old-host/app"
target = "postgresql://app@new-host/app"

[selection]
# second
[[selection.tables]]
rule = "exclude"
table = "b"  # bee

[[selection.tables]]
rule = "exclude"
schema = "public"
table = "e"

# About the options.
[options]
jobs = 2
drop_existing = false
copy_mode = "snapshot"
resume = true
copy_roles = true
subscription_password = true
"""
    assert profiles.load_profile("rules").plan.selection == selection


def test_list_is_most_recent_first_and_lists_broken_files() -> None:
    for name, age in (("old", 300), ("newest", 0), ("middle", 100)):
        path = profiles.save_profile(name, _plan()).path
        when = path.stat().st_mtime - age
        os.utime(path, (when, when))
    broken = _write("broken", "source = \n")
    os.utime(broken, (broken.stat().st_mtime - 200,) * 2)
    listed = profiles.list_profiles()
    assert [s.name for s in listed] == ["newest", "middle", "broken", "old"]
    by_name = {s.name: s for s in listed}
    assert by_name["broken"].error is not None and "line 1" in by_name["broken"].error
    assert by_name["newest"].error is None
    assert by_name["newest"].source == "postgresql://app@old-host:5432/app?sslmode=require"
    assert json.loads(json.dumps([s.to_dict() for s in listed]))[0]["name"] == "newest"


def test_list_without_a_profiles_directory_is_empty() -> None:
    assert not paths.profiles_dir().exists()
    assert profiles.list_profiles() == []


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "../up", "a b", "x" * 65, "naïve", "a:b"])
def test_bad_profile_names_are_refused(name: str) -> None:
    with pytest.raises(InputError) as info:
        profiles.save_profile(name, _plan())
    assert "cannot be a profile name" in info.value.cause
    assert "letters, digits" in info.value.remedy
    assert not paths.profiles_dir().exists() or not any(paths.profiles_dir().iterdir())


@pytest.mark.parametrize("name", ["prod-move", "a.b_c", "X" * 64, "2024.q1"])
def test_good_profile_names_are_accepted(name: str) -> None:
    assert profiles.save_profile(name, _plan()).path.name == f"{name}.toml"


def test_missing_profile_lists_the_existing_ones() -> None:
    profiles.save_profile("prod-move", _plan())
    profiles.save_profile("staging", _plan())
    with pytest.raises(InputError) as info:
        profiles.load_profile("prod-mvoe")
    assert 'no profile named "prod-mvoe"' in info.value.cause
    assert "Did you mean prod-move?" in info.value.remedy
    assert "Existing profiles: prod-move, staging." in info.value.remedy


# -- passwords written into a profile by hand ---------------------------------------------------


def test_password_in_a_hand_edited_profile_is_used_with_a_warning_and_never_shown() -> None:
    _write("legacy", HAND_EDITED.replace("app@old-host", "app:hunter2@old-host").replace(
        "[options]\n", '[options]\npassword = "hunter3"\n'))
    profile = profiles.load_profile("legacy")
    assert profile.plan.source.password == "hunter2"  # used for connecting
    assert len(profile.warnings) == 2
    assert all("--remember-password" in w and "~/.pgpass" in w for w in profile.warnings)
    assert any("source connection string contains a password" in w for w in profile.warnings)
    assert any("options.password" in w and "ignored" in w for w in profile.warnings)
    shown = profiles.show_profile("legacy")
    dumped = json.dumps(shown)
    assert "hunter" not in dumped
    assert shown["source"] == "postgresql://app:***@old-host:5432/app?sslmode=require"
    assert shown["source_password"].startswith("password written in the profile file")
    assert shown["warnings"] == list(profile.warnings)
    # Saving it again cleans the file, and keeps the user's comments.
    profiles.save_profile("legacy", profile.plan, base=profile)
    assert (paths.profiles_dir() / "legacy.toml").read_text() == HAND_EDITED


# -- errors in hand-edited files name the key ---------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("jobs = 4", "jbos = 4"), "[options]: unknown option(s) jbos"),
        (("jobs = 4", 'jobs = "4"'), "[options]: option jobs must be int, not str"),
        (("jobs = 4", "jobs = 0"), "[options]: jobs must be between 1 and 64"),
        (('table = "audit_log"', 'tabel = "audit_log"'), "selection.tables[1]: unknown key 'tabel'"),
        (('rule = "schema_only"', 'rule = "schemaonly"'), "selection.tables[1].rule: unknown rule"),
        (("[options]", "colour = 1\n[options]"), "unknown key 'colour'"),
        (('source = "postgresql://', "source = 5 # "), "source must be a string"),
        (('target = "postgresql://app@new-host:5432/app"   # the new cluster\n', ""), "missing key 'target'"),
        (("resume = true", "resume = tru"), "TOML syntax error at line 11"),
    ],
)
def test_errors_in_a_hand_edited_profile_name_the_key(change: tuple[str, str], expected: str) -> None:
    path = _write("shop", HAND_EDITED.replace(*change, 1))
    with pytest.raises(InputError) as info:
        profiles.load_profile("shop")
    assert info.value.cause.startswith(f"{path}: ")
    assert expected in info.value.cause
    assert info.value.remedy


def test_a_bad_connection_string_error_names_the_key_and_hides_the_password() -> None:
    path = _write("shop", HAND_EDITED.replace('"postgresql://app@old-host:5432/app?sslmode=require"',
                                              '"postgresql://app:hunter2@old-host:5432/app?sslmode=%zz"'))
    with pytest.raises(InputError) as info:
        profiles.load_profile("shop")
    assert info.value.cause.startswith(f"{path}: source: ")
    assert "hunter2" not in str(info.value)


# -- managing ----------------------------------------------------------------------------------


def test_duplicate_copies_comments_renames_the_header_and_refuses_to_overwrite() -> None:
    profiles.save_profile("prod-move", _plan())
    original = (paths.profiles_dir() / "prod-move.toml").read_text()
    copy = profiles.duplicate_profile("prod-move", "prod-move-2")
    assert copy.plan == profiles.load_profile("prod-move").plan
    assert copy.path.read_text() == original.replace('profile "prod-move"', 'profile "prod-move-2"', 1)
    assert stat.S_IMODE(copy.path.stat().st_mode) == 0o600
    with pytest.raises(InputError, match="already exists"):
        profiles.duplicate_profile("prod-move", "prod-move-2")
    assert copy.path.read_text() == original.replace('profile "prod-move"', 'profile "prod-move-2"', 1)


def test_delete_removes_the_file_and_unknown_names_are_errors() -> None:
    path = profiles.save_profile("gone", _plan()).path
    profiles.delete_profile("gone")
    assert not path.exists()
    with pytest.raises(InputError, match='no profile named "gone"'):
        profiles.delete_profile("gone")


SEED = """\
[databases.app]
schema_only = ["audit_log"]

[[databases.app.table_filters]]
table = "orders"
where = "total > 0"
"""


def test_import_seed_config_needs_servers_for_a_new_profile(tmp_path: Path) -> None:
    seed = tmp_path / "seed.toml"
    seed.write_text(SEED)
    with pytest.raises(InputError) as info:
        profiles.import_seed_config(seed, "imported", source="postgresql://app@old-host/app")
    assert "needs a target" in info.value.cause
    assert not (paths.profiles_dir() / "imported.toml").exists()
    profile = profiles.import_seed_config(seed, "imported", source="postgresql://app@old-host/app",
                                          target="postgresql://app@new-host/app")
    assert profile.plan.selection == load_seed_config(seed)
    assert profile.plan.options == Options()
    assert profiles.load_profile("imported").plan == profile.plan


def test_import_into_an_existing_profile_replaces_only_the_selection(tmp_path: Path) -> None:
    seed = tmp_path / "seed.toml"
    seed.write_text(SEED)
    _write("shop", HAND_EDITED)
    before = profiles.load_profile("shop")
    after = profiles.import_seed_config(seed, "shop")
    assert after.plan == replace(before.plan, selection=load_seed_config(seed))
    text = after.path.read_text()
    assert text.startswith(HAND_EDITED.split("[selection]")[0])  # servers, options, comments kept
    assert 'where = "total > 0"' in text and "include_databases" not in text


# -- the keyring -------------------------------------------------------------------------------


def test_keyring_round_trip_by_role_and_server(use_keyring) -> None:  # type: ignore[no-untyped-def]
    memory = use_keyring(MemoryKeyring())
    usable, reason = secrets.keyring_status()
    assert usable, reason
    app_db = Endpoint.parse("postgresql://app@db.example:6432/app", env={})
    other_db = Endpoint.parse("postgresql://app@db.example:6432/reports", env={})
    assert secrets.get_password(app_db) is None
    assert secrets.password_source(app_db) != "password from the OS keyring"
    secrets.set_password(app_db, SECRET)
    assert memory.store == {("pgtide", "app@db.example:6432"): SECRET}
    # A password belongs to a role on a server: every database (and profile) shares it.
    assert secrets.get_password(other_db) == SECRET
    assert secrets.with_stored_password(other_db).password == SECRET
    assert secrets.password_source(other_db) == "password from the OS keyring"
    explicit = other_db.with_params(password="given")
    assert secrets.with_stored_password(explicit) is explicit
    assert secrets.password_source(explicit) == "password given explicitly"
    assert secrets.delete_password(app_db) is True
    assert secrets.delete_password(app_db) is False
    assert secrets.with_stored_password(other_db) == other_db


def test_show_profile_names_the_keyring_as_the_password_source(use_keyring) -> None:  # type: ignore[no-untyped-def]
    use_keyring(MemoryKeyring())
    saved = profiles.save_profile("p", _plan())
    secrets.set_password(saved.plan.source, SECRET)
    shown = profiles.show_profile("p")
    assert shown["source_password"] == "password from the OS keyring"
    assert shown["target_password"].startswith("no stored password")
    assert "hunter2" not in json.dumps(shown)


def test_without_a_keyring_set_password_points_to_pgpass(use_keyring) -> None:  # type: ignore[no-untyped-def]
    use_keyring(fail.Keyring())
    usable, reason = secrets.keyring_status()
    assert not usable and reason == "no OS keyring is available on this machine"
    endpoint = Endpoint.parse("postgresql://app@db.example/app", env={})
    with pytest.raises(EnvironmentProblem) as info:
        secrets.set_password(endpoint, SECRET)
    assert "host:port:*:user:password" in info.value.remedy and "~/.pgpass" in info.value.remedy
    assert "0600" in info.value.remedy and "PGPASSWORD" in info.value.remedy
    assert "hunter2" not in str(info.value) + repr(info.value.to_dict())
    assert secrets.get_password(endpoint) is None
    assert secrets.with_stored_password(endpoint) == endpoint
    assert secrets.delete_password(endpoint) is False


def test_plaintext_keyrings_alt_backends_are_refused(use_keyring) -> None:  # type: ignore[no-untyped-def]
    plaintext = use_keyring(PlaintextFileKeyring())
    usable, reason = secrets.keyring_status()
    assert not usable
    assert "PlaintextFileKeyring" in reason and "keeps passwords in files" in reason
    endpoint = Endpoint.parse("postgresql://app@db.example/app", env={})
    with pytest.raises(EnvironmentProblem, match="keeps passwords in files"):
        secrets.set_password(endpoint, SECRET)
    assert plaintext.store == {}


def test_a_chainer_skips_plaintext_backends_and_an_empty_one_is_no_keyring(use_keyring) -> None:  # type: ignore[no-untyped-def]
    memory, plaintext = MemoryKeyring(), PlaintextFileKeyring()

    class PlaintextFirst(chainer.ChainerBackend):
        backends = [plaintext, memory]  # type: ignore[assignment]

    class Empty(chainer.ChainerBackend):
        backends = []  # type: ignore[assignment]

    use_keyring(PlaintextFirst())
    endpoint = Endpoint.parse("postgresql://app@db.example/app", env={})
    secrets.set_password(endpoint, SECRET)
    assert plaintext.store == {} and memory.store == {("pgtide", "app@db.example:5432"): SECRET}
    use_keyring(Empty())
    usable, reason = secrets.keyring_status()
    assert not usable and "chainer found no backend" in reason


def test_a_keyring_that_does_not_answer_is_unusable(use_keyring) -> None:  # type: ignore[no-untyped-def]
    use_keyring(LockedKeyring())
    usable, reason = secrets.keyring_status()
    assert not usable and "does not answer (KeyringError)" in reason
    endpoint = Endpoint.parse("postgresql://app@db.example/app", env={})
    assert secrets.get_password(endpoint) is None
    with pytest.raises(EnvironmentProblem):
        secrets.set_password(endpoint, SECRET)


# -- where libpq would find the password -------------------------------------------------------


def test_password_source_names_pgpassword_and_pgpass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = Endpoint.parse("postgresql://app@db.example:6432/app", env={})
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "missing"))
    assert secrets.password_source(endpoint) == (
        "no stored password: libpq will use PGPASSWORD, ~/.pgpass or a service file"
    )
    pgpass = tmp_path / "pgpass"
    pgpass.write_text("other.example:6432:*:app:x\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    assert secrets.password_source(endpoint) == f"no stored password: {pgpass} has no line for app@db.example:6432"
    pgpass.write_text("# comment\ndb.example:6432:*:app:se\\:cret\n")
    assert secrets.password_source(endpoint) == f"no stored password: libpq will use the matching line in {pgpass}"
    pgpass.chmod(0o644)
    assert "libpq ignores" in secrets.password_source(endpoint) and "chmod 0600" in secrets.password_source(endpoint)
    monkeypatch.setenv("PGPASSWORD", "from-env")
    assert secrets.password_source(endpoint) == "no stored password: libpq will use PGPASSWORD"
