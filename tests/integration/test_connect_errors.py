"""Bad input and unreachable servers give one-line causes with remedies, and never a password."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pgharness import PASSWORD_ROLE, PgCluster, free_port
from psycopg import sql

from pgtide.core.catalog.server import probe
from pgtide.core.infra.db import connect
from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.infra.errors import ConnectError

SECRET = "s3cr3t:pw@x"


@pytest.fixture
def password_role(source_cluster: PgCluster) -> Iterator[str]:
    source_cluster.execute(
        sql.SQL("CREATE ROLE {} LOGIN REPLICATION PASSWORD {}").format(sql.Identifier(PASSWORD_ROLE), sql.Literal(SECRET))
    )
    yield PASSWORD_ROLE
    source_cluster.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(PASSWORD_ROLE)))


def _assert_clean(error: ConnectError) -> None:
    text = f"{error} {error!r} {error.cause} {error.remedy}"
    assert "s3cr3t" not in text
    assert "\n" not in error.cause
    assert error.remedy
    assert error.__suppress_context__


def test_wrong_password(source_cluster: PgCluster, password_role: str) -> None:
    endpoint = Endpoint.parse(f"host=127.0.0.1 port={source_cluster.port} user={password_role} dbname=postgres",
                              password="wrong-" + SECRET, env={})
    with pytest.raises(ConnectError) as info:
        connect(endpoint)
    _assert_clean(info.value)
    assert "rejected the password" in info.value.cause
    assert ".pgpass" in info.value.remedy


def test_right_password_with_special_characters(source_cluster: PgCluster, password_role: str) -> None:
    endpoint = Endpoint.parse(source_cluster.url(user=password_role, password=SECRET), env={})
    info = probe(endpoint)
    assert info.user == password_role and info.can_replicate and not info.is_superuser
    assert info.wal_level == "logical" and info.major == 15


def test_missing_password(source_cluster: PgCluster, password_role: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    endpoint = Endpoint.parse(f"host=127.0.0.1 port={source_cluster.port} user={password_role}", env={})
    with pytest.raises(ConnectError) as info:
        connect(endpoint)
    assert "asks for a password" in info.value.cause


def test_pgpass_supplies_the_password(
    source_cluster: PgCluster, password_role: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"127.0.0.1:{source_cluster.port}:*:{password_role}:{SECRET.replace(':', chr(92) + ':')}\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    endpoint = Endpoint.parse(f"host=127.0.0.1 port={source_cluster.port} user={password_role} dbname=postgres")
    assert probe(endpoint).user == password_role


def test_nothing_listening() -> None:
    endpoint = Endpoint.parse(f"postgresql://u:{SECRET.replace('@', '%40')}@127.0.0.1:{free_port()}/db", env={})
    with pytest.raises(ConnectError) as info:
        connect(endpoint)
    _assert_clean(info.value)
    assert "nothing accepts connections" in info.value.cause
    assert "postgresql://u:***@127.0.0.1" in info.value.cause


def test_unresolvable_host() -> None:
    endpoint = Endpoint.parse(f"host=no-such-host.invalid user=u password={SECRET} connect_timeout=5", env={})
    with pytest.raises(ConnectError) as info:
        connect(endpoint)
    _assert_clean(info.value)
    assert "cannot be resolved" in info.value.cause


def test_unknown_database(source_cluster: PgCluster) -> None:
    with pytest.raises(ConnectError, match="does not exist"):
        connect(Endpoint.parse(source_cluster.url(dbname="no_such_db"), env={}))


def _pgtide(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "pgtide"
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=60, cwd="/")


def test_cli_wrong_password_exits_3_without_traceback_or_secret(source_cluster: PgCluster, password_role: str) -> None:
    url = source_cluster.url(user=password_role, password="wrong-" + SECRET)
    result = _pgtide("ping", url)
    assert result.returncode == 3
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "s3cr3t" not in output
    assert "rejected the password" in result.stderr and "fix:" in result.stderr


def test_cli_bad_url_exits_2(source_cluster: PgCluster) -> None:
    result = _pgtide("ping", f"postgresql://u:{SECRET}%zz@127.0.0.1/db")
    assert result.returncode == 2
    assert "Bad connection string" in result.stderr and "s3cr3t" not in result.stderr + result.stdout


def test_cli_ping_json(source_cluster: PgCluster) -> None:
    result = _pgtide("ping", "--json", source_cluster.url())
    assert result.returncode == 0, result.stderr
    assert '"wal_level": "logical"' in result.stdout and '"can_replicate": true' in result.stdout
