"""Child tools get their password from an in-memory passfile, never from argv or disk, and die with us."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_support import files_holding
from pgharness import PASSWORD_ROLE, PgCluster, wait_for
from psycopg import sql

from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.infra.errors import EnvironmentProblem
from pgtide.core.infra.tools import ToolFailed, escape_passfile_field, find_tool, open_tool, run_tool

# Every character libpq's passfile syntax cares about, plus URL-special ones.
PASSWORD = r"p@ss:w/rd%#\tail:"


@pytest.fixture
def password_endpoint(source_cluster: PgCluster, source_db: str) -> Iterator[Endpoint]:
    source_cluster.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(PASSWORD_ROLE), sql.Literal(PASSWORD))
    )
    with source_cluster.connect(source_db) as conn:
        conn.execute("CREATE TABLE locked_table (id int PRIMARY KEY)")
        conn.execute("INSERT INTO locked_table VALUES (1)")
        conn.execute(sql.SQL("GRANT SELECT ON locked_table TO {}").format(sql.Identifier(PASSWORD_ROLE)))
    yield Endpoint.parse(
        f"host=127.0.0.1 port={source_cluster.port} dbname={source_db} user={PASSWORD_ROLE}",
        password=PASSWORD,
        env={},
    )
    source_cluster.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(PASSWORD_ROLE)), dbname=source_db)
    source_cluster.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(PASSWORD_ROLE)))


def _child_pids(parent: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                children.append(int(entry.name))
    return children


def _dump_child(parent: int) -> int | None:
    """The long-running pg_dump child (not the short-lived ``--version`` probes)."""
    for pid in _child_pids(parent):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"pg_dump" in cmdline and b"--dbname=" in cmdline:
            return pid
    return None


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def test_passfile_escaping() -> None:
    assert escape_passfile_field(r"a:b\c") == r"a\:b\\c"


def test_pg_dump_password_is_not_in_argv_and_passfile_is_removed(
    source_cluster: PgCluster, source_db: str, password_endpoint: Endpoint
) -> None:
    # Hold a lock so pg_dump blocks while we look at it from outside.
    with source_cluster.connect(source_db, autocommit=False) as blocker:
        blocker.execute("LOCK TABLE locked_table IN ACCESS EXCLUSIVE MODE")
        with open_tool("pg_dump", ["--table=locked_table"], password_endpoint, stdout=subprocess.PIPE) as proc:
            wait_for(
                lambda: source_cluster.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE usename = %s AND wait_event_type = 'Lock'", [PASSWORD_ROLE]
                ),
                what="pg_dump to authenticate and wait for the lock",
            )
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode()
            assert "pg_dump" in cmdline and f"user={PASSWORD_ROLE}" in cmdline
            for fragment in (PASSWORD, "p@ss", "w/rd", "tail", "password"):
                assert fragment not in cmdline
            env = _environ(proc.pid)
            assert "PGPASSWORD" not in env
            # An inherited descriptor of an anonymous memory file: nothing on any disk.
            assert env["PGPASSFILE"].startswith("/dev/fd/")
            held = Path(f"/proc/{proc.pid}/fd/{env['PGPASSFILE'].rsplit('/', 1)[1]}")
            assert os.readlink(held).startswith("/memfd:")
            assert stat.S_ISREG(held.stat().st_mode) and stat.S_IMODE(held.stat().st_mode) == 0o600
            assert held.read_text() == "*:*:*:*:" + escape_passfile_field(PASSWORD) + "\n"
            blocker.rollback()
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0
            assert b"COPY public.locked_table" in out


def test_run_tool_reports_failure_without_secret(password_endpoint: Endpoint) -> None:
    wrong = password_endpoint.with_params(password="not-" + PASSWORD)
    with pytest.raises(ToolFailed) as info:
        run_tool("pg_dump", ["--schema-only"], wrong, timeout=60)
    assert "password authentication failed" in info.value.cause
    assert PASSWORD not in str(info.value) and PASSWORD not in info.value.stderr


def test_pg_dump_older_than_server_is_refused() -> None:
    with pytest.raises(EnvironmentProblem) as info:
        find_tool("pg_dump", server_major=99)
    assert "older than the PostgreSQL 99 server" in info.value.cause
    assert "postgresql-client-99" in info.value.remedy
    assert find_tool("pg_dump", server_major=12).major >= 15


_CHILD_SCRIPT = textwrap.dedent(
    """
    import sys
    from pgtide.core.infra.endpoint import Endpoint
    from pgtide.core.infra.tools import run_tool
    endpoint = Endpoint.parse(sys.argv[1], password=sys.stdin.readline().rstrip("\\n"), env={})
    run_tool("pg_dump", ["--table=locked_table"], endpoint)
    """
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_no_passfile_on_disk_and_child_dies_with_us(
    tmp_path: Path, source_cluster: PgCluster, source_db: str, password_endpoint: Endpoint, signum: int
) -> None:
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    with source_cluster.connect(source_db, autocommit=False) as blocker:
        blocker.execute("LOCK TABLE locked_table IN ACCESS EXCLUSIVE MODE")
        script = subprocess.Popen(
            [sys.executable, "-c", _CHILD_SCRIPT, password_endpoint.without_password().conninfo()],
            stdin=subprocess.PIPE, env={**os.environ, "TMPDIR": str(private_tmp)}, text=True,
        )
        try:
            assert script.stdin is not None
            script.stdin.write(PASSWORD + "\n")
            script.stdin.close()
            pg_dump_pid = wait_for(lambda: _dump_child(script.pid), what="the pg_dump child")
            wait_for(
                lambda: source_cluster.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE usename = %s AND wait_event_type = 'Lock'", [PASSWORD_ROLE]
                ),
                what="pg_dump to authenticate with the password and wait for the lock",
            )
            assert _environ(pg_dump_pid)["PGPASSFILE"].startswith("/dev/fd/")
            assert files_holding(PASSWORD.encode(), private_tmp) == []
            script.send_signal(signum)
            assert script.wait(timeout=30) == -signum
        finally:
            if script.poll() is None:
                script.kill()
        # PR_SET_PDEATHSIG: the kernel kills the child when its parent goes, SIGKILL included.
        deadline = time.monotonic() + 1.0
        while _alive(pg_dump_pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(pg_dump_pid), "pg_dump outlived its parent by more than a second"
        assert files_holding(PASSWORD.encode(), private_tmp) == []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sweep_removes_what_dead_runs_left(tmp_path: Path) -> None:
    from pgtide.core.infra.tools import sweep_stale_passfiles

    legacy = tmp_path / "pgtide-k3j4h5.pgpass"  # the name pgtide 0.1 used
    legacy.write_text("*:*:*:*:secret\n")
    in_use = tmp_path / "pgtide-inuse12.pgpass"
    in_use.write_text("*:*:*:*:secret\n")
    dead = subprocess.Popen(["true"])
    dead.wait()
    private = tmp_path / f"pgtide-secrets-{dead.pid}-abcd"
    private.mkdir()
    (private / "x.pgpass").write_text("*:*:*:*:secret\n")
    mine = tmp_path / f"pgtide-secrets-{os.getpid()}-efgh"
    mine.mkdir()
    unrelated = tmp_path / "pgtide-notes.txt"
    unrelated.write_text("keep")
    user = subprocess.Popen(["sleep", "30"], env={**os.environ, "PGPASSFILE": str(in_use)})
    try:
        wait_for(lambda: b"PGPASSFILE" in Path(f"/proc/{user.pid}/environ").read_bytes(), what="the child's env")
        assert sweep_stale_passfiles(str(tmp_path)) == 2
    finally:
        user.kill()
        user.wait()
    assert not legacy.exists() and not private.exists()
    assert in_use.exists() and mine.exists() and unrelated.exists()
