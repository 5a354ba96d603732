"""``pgtide profile ...`` through the real console script, and profiles connecting to a real server.

The autouse fixture gives every test private config dirs and ``PYTHON_KEYRING_BACKEND``
set to the failing keyring, and the child processes inherit both: this is a machine
without an OS keyring, where ~/.pgpass is the way to keep a password.
"""

from __future__ import annotations

import json
import os
import pty
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from keyring_support import MemoryKeyring
from pgharness import PASSWORD_ROLE, PgCluster
from psycopg import sql

from pgtide.core.catalog.server import probe
from pgtide.core.infra import paths, secrets
from pgtide.core.infra.errors import ConnectError
from pgtide.core.model import profiles
from pgtide.core.model.seed_config import load_seed_config

# ':' and '\' must be escaped in .pgpass; '@' and '/' in a URL.
SECRET = "s3cr3t:with\\back@sl/ash"
URL_SECRET = "s3cr3t%3Awith%5Cback%40sl%2Fash"


def _pgtide(*args: str, stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "pgtide"
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=60, cwd="/", stdin=stdin)


def _profile_file(name: str) -> Path:
    return paths.profiles_dir() / f"{name}.toml"


@pytest.fixture
def no_password_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No PGPASSWORD and a .pgpass that does not exist yet (its path is returned)."""
    monkeypatch.delenv("PGPASSWORD", raising=False)
    pgpass = tmp_path / "pgpass"
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    return pgpass


@pytest.fixture
def password_role(source_cluster: PgCluster) -> Iterator[str]:
    source_cluster.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(PASSWORD_ROLE), sql.Literal(SECRET))
    )
    yield PASSWORD_ROLE
    source_cluster.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(PASSWORD_ROLE)))


# -- the CLI never writes or prints a password ----------------------------------------------------


def test_save_with_a_password_and_no_keyring_keeps_it_out_of_the_file_and_the_output(
    no_password_sources: Path,
) -> None:
    result = _pgtide("profile", "save", "prod-move",
                     "--source", f"postgresql://app:{URL_SECRET}@old-host:5433/app?sslmode=require",
                     "--target", "postgresql://app@new-host/app",
                     "--include-databases", "app", "--exclude-tables", "app.public.tmp", "--jobs", "6")
    assert result.returncode == 0, result.stderr
    assert "saved profile prod-move" in result.stdout
    # It says where the password can live instead, without repeating it.
    assert "the source password was not saved" in result.stderr
    assert "old-host:5433:*:app:PASSWORD" in result.stderr and "~/.pgpass" in result.stderr
    text = _profile_file("prod-move").read_text()
    assert stat.S_IMODE(_profile_file("prod-move").stat().st_mode) == 0o600
    assert 'source = "postgresql://app@old-host:5433/app?sslmode=require"' in text
    assert "jobs = 6" in text and 'include_databases = ["app"]' in text
    for shown in (
        result.stdout + result.stderr,
        text,
        _pgtide("profile", "show", "prod-move").stdout,
        _pgtide("profile", "show", "prod-move", "--json").stdout,
        _pgtide("profile", "list").stdout,
        _pgtide("profile", "list", "--json").stdout,
    ):
        assert "s3cr3t" not in shown and "sl/ash" not in shown

    shown = json.loads(_pgtide("profile", "show", "prod-move", "--json").stdout)
    assert shown["source"] == "postgresql://app@old-host:5433/app?sslmode=require"
    assert shown["source_password"] == "no stored password: libpq will use PGPASSWORD, ~/.pgpass or a service file"
    assert shown["options"]["jobs"] == 6
    listed = json.loads(_pgtide("profile", "list", "--json").stdout)
    assert [entry["name"] for entry in listed] == ["prod-move"] and listed[0]["error"] is None


def test_save_updates_an_existing_profile_and_keeps_its_comments() -> None:
    assert _pgtide("profile", "save", "p", "--source", "postgresql://app@old-host/app",
                   "--target", "postgresql://app@new-host/app").returncode == 0
    path = _profile_file("p")
    path.write_text(path.read_text().replace("jobs = 4", "jobs = 4  # cautious"))
    result = _pgtide("profile", "save", "p", "--jobs", "2", "--copy", "server")
    assert result.returncode == 0, result.stderr
    assert "updated profile p" in result.stdout
    text = path.read_text()
    assert "jobs = 2  # cautious" in text and 'copy_mode = "server"' in text
    assert 'source = "postgresql://app@old-host/app"' in text  # kept from the saved profile


def test_remember_password_without_a_keyring_exits_3_and_saves_nothing() -> None:
    result = _pgtide("profile", "save", "prod", "--remember-password",
                     "--source", f"postgresql://app:{URL_SECRET}@old-host/app", "--target", "postgresql://app@new/app")
    assert result.returncode == 3
    assert "No OS keyring" in result.stderr and "~/.pgpass" in result.stderr
    assert "old-host:5432:*:app:PASSWORD" in result.stderr
    assert "s3cr3t" not in result.stdout + result.stderr and "Traceback" not in result.stderr
    assert not _profile_file("prod").exists()


def test_delete_asks_for_yes_when_stdin_is_not_a_terminal() -> None:
    assert _pgtide("profile", "save", "old", "--source", "postgresql://a@h/d", "--target", "postgresql://a@h2/d").returncode == 0
    result = _pgtide("profile", "delete", "old")
    assert result.returncode == 2
    assert "stdin is not a terminal" in result.stderr and "--yes" in result.stderr
    assert _profile_file("old").exists()
    result = _pgtide("profile", "delete", "old", "--yes")
    assert result.returncode == 0 and "deleted profile old" in result.stdout
    assert not _profile_file("old").exists()
    missing = _pgtide("profile", "delete", "old", "--yes")
    assert missing.returncode == 2 and 'no profile named "old"' in missing.stderr


@pytest.mark.parametrize(("answer", "kept"), [("n", True), ("", True), ("y", False)])
def test_delete_on_a_terminal_asks_first(answer: str, kept: bool) -> None:
    assert _pgtide("profile", "save", "old", "--source", "postgresql://a@h/d", "--target", "postgresql://a@h2/d").returncode == 0
    controller, terminal = pty.openpty()
    try:
        os.write(controller, answer.encode() + b"\n")
        result = _pgtide("profile", "delete", "old", stdin=terminal)
    finally:
        os.close(terminal)
        os.close(controller)
    assert result.returncode == 0, result.stderr
    assert "Delete profile old? [y/N]" in result.stdout
    assert _profile_file("old").exists() is kept
    assert ("kept profile old" if kept else "deleted profile old") in result.stdout


def test_duplicate_and_show_of_an_unknown_profile() -> None:
    assert _pgtide("profile", "save", "a", "--source", "postgresql://a@h/d", "--target", "postgresql://a@h2/d").returncode == 0
    result = _pgtide("profile", "duplicate", "a", "b")
    assert result.returncode == 0 and "copied profile a to b" in result.stdout
    assert profiles.load_profile("b").plan == profiles.load_profile("a").plan
    again = _pgtide("profile", "duplicate", "a", "b")
    assert again.returncode == 2 and "already exists" in again.stderr
    unknown = _pgtide("profile", "show", "c", "--json")
    assert unknown.returncode == 2
    assert json.loads(unknown.stdout)["remedy"] == "Existing profiles: a, b."


SEED = """\
[databases.kong]
schema_only = ["evmlog_strides", "analytics.price"]

[[databases.kong.table_filters]]
table = "output"
where = "series_time >= NOW() - INTERVAL '6 months'"

[[databases.kong.time_filters]]
table = "metrics"
column = "created_at"
last = "1 year"
"""


def test_import_a_seed_config_file(tmp_path: Path) -> None:
    seed = tmp_path / "replication.toml"
    seed.write_text(SEED)
    without_servers = _pgtide("profile", "import", str(seed), "--as", "kong")
    assert without_servers.returncode == 2 and "needs a source and target" in without_servers.stderr
    result = _pgtide("profile", "import", str(seed), "--as", "kong",
                     "--source", "postgresql://repl@old-host/kong", "--target", "postgresql://repl@new-host/kong")
    assert result.returncode == 0, result.stderr
    assert "saved profile kong with 4 rule(s)" in result.stdout
    profile = profiles.load_profile("kong")
    assert profile.plan.selection == load_seed_config(seed)
    assert profile.plan.source.to_url() == "postgresql://repl@old-host/kong"
    text = _profile_file("kong").read_text()
    assert "where = \"series_time >= NOW() - INTERVAL '6 months'\"" in text and 'last = "1 year"' in text
    shown = _pgtide("profile", "show", "kong")
    assert shown.returncode == 0
    assert "time filter (created_at in the last 1 year) on kong.public.metrics" in shown.stdout


# -- profiles connect to a real server with a password from .pgpass or the keyring ----------------


def _save_passwordless_profile(cluster: PgCluster, role: str) -> profiles.Profile:
    result = _pgtide("profile", "save", "pw", "--source", cluster.url(user=role), "--target", cluster.url())
    assert result.returncode == 0, result.stderr
    profile = profiles.load_profile("pw")
    assert profile.plan.source.password is None and profile.warnings == ()
    return profile


def test_no_keyring_and_pgpass_supplies_the_password(
    source_cluster: PgCluster, password_role: str, no_password_sources: Path
) -> None:
    profile = _save_passwordless_profile(source_cluster, password_role)
    endpoint = secrets.with_stored_password(profile.plan.source)
    assert endpoint == profile.plan.source  # no keyring: libpq's own files must do it
    with pytest.raises(ConnectError, match="asks for a password"):
        probe(endpoint)
    escaped = SECRET.replace("\\", "\\\\").replace(":", "\\:")
    no_password_sources.write_text(f"127.0.0.1:{source_cluster.port}:*:{password_role}:{escaped}\n")
    no_password_sources.chmod(0o600)
    info = probe(secrets.with_stored_password(profiles.load_profile("pw").plan.source))
    assert info.user == password_role and not info.is_superuser
    shown = _pgtide("profile", "show", "pw", "--json")  # the child inherits PGPASSFILE
    assert json.loads(shown.stdout)["source_password"] == (
        f"no stored password: libpq will use the matching line in {no_password_sources}"
    )
    assert "s3cr3t" not in shown.stdout


def test_in_memory_keyring_supplies_the_password(
    source_cluster: PgCluster, password_role: str, no_password_sources: Path, use_keyring: Callable[..., Any]
) -> None:
    profile = _save_passwordless_profile(source_cluster, password_role)
    memory = use_keyring(MemoryKeyring())
    assert secrets.keyring_status()[0]
    secrets.set_password(profile.plan.source, SECRET)
    assert memory.store == {("pgtide", f"{password_role}@127.0.0.1:{source_cluster.port}"): SECRET}
    endpoint = secrets.with_stored_password(profiles.load_profile("pw").plan.source)
    assert endpoint.password == SECRET
    info = probe(endpoint)
    assert info.user == password_role
    assert profiles.show_profile("pw")["source_password"] == "password from the OS keyring"
    # The profile file was never touched by any of this.
    assert SECRET not in _profile_file("pw").read_text()
