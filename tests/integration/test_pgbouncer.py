"""The PgBouncer fence against a real PgBouncer and real clusters: pause, bounded pause, redirect,
hostile names, and a console password that never shows."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pgbouncer_harness import CLIENT_USER
from pgharness import PgCluster, wait_for
from psycopg import sql

from pgtide.core.infra.errors import CheckFailed, ConnectError, EnvironmentProblem, InputError, PgtideError
from pgtide.core.infra.pgbouncer import PauseTimeout, PgBouncerAdmin, Route, console_name


def mark(cluster: PgCluster, dbname: str, name: str) -> None:
    """A one-row table saying which server a client landed on."""
    cluster.execute("CREATE TABLE where_am_i (name text)", dbname=dbname)
    cluster.execute("INSERT INTO where_am_i VALUES (%s)", [name], dbname=dbname)


def landed(conn: psycopg.Connection[Any]) -> tuple[str, str, int]:
    row = conn.execute("SELECT name, current_database(), current_setting('port')::int FROM where_am_i").fetchone()
    assert row is not None
    if not conn.autocommit:
        conn.commit()
    return row[0], row[1], row[2]


def local_port(conn: psycopg.Connection[Any]) -> int:
    """The client's own port, as PgBouncer's SHOW CLIENTS shows it."""
    with socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
        return int(sock.getsockname()[1])


def waiting_clients(admin: PgBouncerAdmin, db: str) -> int:
    return sum(int(pool["cl_waiting"] or 0) for pool in admin.pools() if pool["database"] == db)


def test_a_client_through_pgbouncer_reaches_its_database(source_cluster: PgCluster, source_db: str,
                                                         pgbouncer_factory: Any) -> None:
    mark(source_cluster, source_db, "source")
    bouncer = pgbouncer_factory({"app": (source_cluster, source_db)})
    with bouncer.connect("app") as conn:
        assert landed(conn) == ("source", source_db, source_cluster.port)
    with PgBouncerAdmin.connect(bouncer.admin_endpoint()) as admin:
        assert admin.version().startswith("PgBouncer 1.")
        assert admin.route("app") == Route("127.0.0.1", source_cluster.port, source_db)
        assert not admin.is_paused("app")
        assert [pool["user"] for pool in admin.pools() if pool["database"] == "app"] == ["postgres"]
        assert admin.settings()["pool_mode"] == "transaction"
        assert [row["name"] for row in admin.databases()] == ["app", "pgbouncer"]


def test_connect_wants_the_admin_console(pgbouncer_factory: Any) -> None:
    bouncer = pgbouncer_factory()
    with pytest.raises(InputError, match="not PgBouncer's admin console") as caught:
        PgBouncerAdmin.connect(bouncer.admin_endpoint().with_dbname("app"))
    assert "database 'pgbouncer'" in caught.value.remedy
    assert bouncer.admin_password not in str(caught.value)


def test_pause_holds_queries_until_resume(source_cluster: PgCluster, source_db: str, pgbouncer_factory: Any) -> None:
    mark(source_cluster, source_db, "source")
    bouncer = pgbouncer_factory({"app": (source_cluster, source_db)})
    existing = bouncer.connect("app")  # connected before the pause, idle between transactions
    assert landed(existing)[0] == "source"
    results: dict[str, Any] = {}
    done = {name: threading.Event() for name in ("new", "existing")}

    def new_client() -> None:
        started = time.monotonic()
        with bouncer.connect("app") as conn:
            results["new"] = landed(conn)[0]
        results["new_waited"] = time.monotonic() - started
        done["new"].set()

    def existing_client() -> None:
        started = time.monotonic()
        results["existing"] = landed(existing)[0]
        results["existing_waited"] = time.monotonic() - started
        done["existing"].set()

    with PgBouncerAdmin.connect(bouncer.admin_endpoint()) as admin:
        started = time.monotonic()
        admin.pause("app", timeout=10)
        pause_took = time.monotonic() - started
        assert admin.is_paused("app")
        threads = [threading.Thread(target=fn, daemon=True) for fn in (new_client, existing_client)]
        for thread in threads:
            thread.start()
        wait_for(lambda: waiting_clients(admin, "app") >= 2, timeout=10, what="both clients to queue in PgBouncer")
        held = 1.0
        assert not done["new"].wait(held), "a new client's query ran while the database was paused"
        assert not done["existing"].is_set(), "an existing client's query ran while the database was paused"
        assert admin.resume("app") is True
        assert done["new"].wait(15) and done["existing"].wait(15)
        assert results["new"] == results["existing"] == "source"
        # Both waited at least as long as the pause was held after they queued.
        assert results["new_waited"] >= held and results["existing_waited"] >= held
        assert not admin.is_paused("app")
        assert admin.resume("app") is False  # not paused: nothing to do
    existing.close()
    print(f"\nPAUSE with idle clients took {pause_took * 1000:.1f} ms; a queued new client waited "
          f"{results['new_waited']:.2f} s, an existing one {results['existing_waited']:.2f} s, for a {held:.1f} s hold")


def test_paused_context_resumes_when_the_block_fails(source_cluster: PgCluster, source_db: str,
                                                     pgbouncer_factory: Any) -> None:
    bouncer = pgbouncer_factory({"app": (source_cluster, source_db)})
    with PgBouncerAdmin.connect(bouncer.admin_endpoint()) as admin:
        with pytest.raises(RuntimeError, match="cutover step failed"):
            with admin.paused("app", timeout=10):
                assert admin.is_paused("app")
                raise RuntimeError("cutover step failed")
        assert not admin.is_paused("app")


@pytest.mark.parametrize("pool_mode", ["transaction", "session"])
def test_a_pause_held_up_by_a_client_times_out_and_leaves_the_database_resumed(
        pool_mode: str, source_cluster: PgCluster, source_db: str, pgbouncer_factory: Any) -> None:
    mark(source_cluster, source_db, "source")
    bouncer = pgbouncer_factory({"app": (source_cluster, source_db)}, pool_mode=pool_mode)
    holder = bouncer.connect("app", autocommit=False, application_name="holder-of-app")
    holder.execute("SELECT 1")  # a transaction left open
    if pool_mode == "session":
        holder.commit()  # in session pooling, merely staying connected holds the server
    holder_port = local_port(holder)
    with PgBouncerAdmin.connect(bouncer.admin_endpoint()) as admin:
        started = time.monotonic()
        with pytest.raises(PauseTimeout) as caught:
            admin.pause("app", timeout=1.0)
        gave_up_after = time.monotonic() - started
        error = caught.value
        assert isinstance(error, CheckFailed) and error.exit_code == 1
        assert "within 1s" in error.cause and "1 client still holds a server connection" in error.cause
        assert f"postgres@127.0.0.1:{holder_port} (holder-of-app)" in error.cause
        assert [row["application_name"] for row in error.holders] == ["holder-of-app"]
        assert "resumed" in error.remedy
        # Resumed: other clients are served at once, and the console session still works.
        assert not admin.is_paused("app")
        with bouncer.connect("app") as other:
            assert landed(other)[0] == "source"
        assert landed(holder)[0] == "source"  # the holder itself was never disturbed
        holder.close()
        admin.pause("app", timeout=10)  # nothing holds it now
        assert admin.is_paused("app")
        admin.resume("app")
    # PgBouncer survived the abandoned PAUSE.
    assert bouncer.process is not None and bouncer.process.poll() is None
    print(f"\n{pool_mode}: the 1 s pause gave up, resumed and named the holder after {gave_up_after:.2f} s")


def test_pause_refuses_an_unknown_or_already_paused_database(source_cluster: PgCluster, source_db: str,
                                                             pgbouncer_factory: Any) -> None:
    bouncer = pgbouncer_factory({"app": (source_cluster, source_db)})
    with PgBouncerAdmin.connect(bouncer.admin_endpoint()) as admin:
        with pytest.raises(InputError, match="has no database 'App'") as unknown:
            admin.pause("App", timeout=5)  # names are case-sensitive in PgBouncer
        assert "'app'" in unknown.value.remedy
        with PgBouncerAdmin.connect(bouncer.admin_endpoint()) as someone_else:
            someone_else.pause("app", timeout=5)
            with pytest.raises(CheckFailed, match="already paused"):
                admin.pause("app", timeout=5)
            assert admin.is_paused("app")  # someone else's pause is left alone
            someone_else.resume("app")
        with pytest.raises(InputError, match="must be positive"):
            admin.pause("app", timeout=0)


def test_redirect_lands_clients_on_the_second_cluster(source_cluster: PgCluster, source_db: str,
                                                      target_cluster: PgCluster, pgbouncer_factory: Any) -> None:
    target_db = target_cluster.create_database("it's a target")  # a value PgBouncer needs quoted
    try:
        mark(source_cluster, source_db, "source")
        mark(target_cluster, target_db, "target")
        bouncer = pgbouncer_factory({"app": (source_cluster, source_db)})
        # The user's own parameters on the line survive byte for byte (a server password included).
        bouncer.write_databases_file(
            "; managed by pgtide's cutover\n[databases]\n"
            f"other = host=127.0.0.1 port={source_cluster.port} dbname={source_db}\n"
            f"app = host=127.0.0.1  pool_size=7 port={source_cluster.port} dbname={source_db} password='se cr''et'\n")
        before = bouncer.databases_file.stat()
        with PgBouncerAdmin.connect(bouncer.admin_endpoint(), databases_file=bouncer.databases_file) as admin:
            admin.reload()
            assert admin.check_redirect("app") == Route("127.0.0.1", source_cluster.port, source_db)  # a preflight
            existing = bouncer.connect("app")
            assert landed(existing)[0] == "source"
            with admin.paused("app", timeout=10):
                started = time.monotonic()
                moved = admin.redirect("app", "127.0.0.1", target_cluster.port, target_db)
                redirect_took = time.monotonic() - started
            assert moved.changed
            assert moved.previous == Route("127.0.0.1", source_cluster.port, source_db)
            assert moved.current == Route("127.0.0.1", target_cluster.port, target_db)
            with bouncer.connect("app") as new:
                assert landed(new) == ("target", target_db, target_cluster.port)
            assert landed(existing)[0] == "target"  # its next transaction got a new server connection
            with bouncer.connect("other") as untouched:
                assert landed(untouched)[0] == "source"
            assert admin.database("app")["pool_size"] == 7
            text = bouncer.databases_file.read_text()
            assert f"app = host=127.0.0.1 pool_size=7 port={target_cluster.port} dbname='it''s a target' " \
                   "password='se cr''et'\n" in text
            after = bouncer.databases_file.stat()
            assert (after.st_uid, after.st_gid, stat.S_IMODE(after.st_mode)) == \
                   (before.st_uid, before.st_gid, stat.S_IMODE(before.st_mode))
            # Again with the same target: nothing to do.
            with admin.paused("app", timeout=10):
                assert not admin.redirect("app", "127.0.0.1", target_cluster.port, target_db).changed
            # Back: the previous route is the way home.
            with admin.paused("app", timeout=10):
                admin.redirect("app", moved.previous.host or "", moved.previous.port, moved.previous.dbname)
            assert landed(existing)[0] == "source"
            existing.close()
        print(f"\nredirect (checks, file rewrite, RELOAD, check) took {redirect_took * 1000:.1f} ms")
    finally:
        target_cluster.drop_database(target_db)


def test_redirect_refuses_what_it_cannot_do_honestly(source_cluster: PgCluster, source_db: str,
                                                     target_cluster: PgCluster, target_db: str,
                                                     pgbouncer_factory: Any, tmp_path: Path) -> None:
    mark(source_cluster, source_db, "source")
    bouncer = pgbouncer_factory({"app": (source_cluster, source_db)})
    to_target = ("127.0.0.1", target_cluster.port, target_db)
    with PgBouncerAdmin.connect(bouncer.admin_endpoint()) as admin:
        with pytest.raises(EnvironmentProblem, match="no PgBouncer databases file"):
            admin.check_redirect("app")
        with admin.paused("app", timeout=10):
            with pytest.raises(EnvironmentProblem, match="no PgBouncer databases file") as no_file:
                admin.redirect("app", *to_target)
        assert "%include" in no_file.value.remedy
    # A file PgBouncer does not read: a stale copy is caught before, an exact copy after RELOAD.
    stale = tmp_path / "stale.ini"
    stale.write_text(f"[databases]\napp = host=127.0.0.1 port={source_cluster.port + 1} dbname={source_db}\n")
    copy = tmp_path / "copy.ini"
    copy.write_text(bouncer.databases_file.read_text())
    for path, message in ((stale, "not in effect|not what PgBouncer loaded"), (copy, "still sends 'app'")):
        original = path.read_text()
        with PgBouncerAdmin.connect(bouncer.admin_endpoint(), databases_file=path) as admin:
            if path is stale:
                with pytest.raises(EnvironmentProblem, match=message):
                    admin.check_redirect("app")
            with admin.paused("app", timeout=10):
                with pytest.raises(EnvironmentProblem, match=message):
                    admin.redirect("app", *to_target)
        assert path.read_text() == original
    with PgBouncerAdmin.connect(bouncer.admin_endpoint(), databases_file=bouncer.databases_file) as admin:
        with pytest.raises(CheckFailed, match="not paused"):
            admin.redirect("app", *to_target)
        with admin.paused("app", timeout=10):
            with pytest.raises(InputError, match="port for PgBouncer must be a number"):
                admin.redirect("app", "127.0.0.1", 0, target_db)
            with pytest.raises(InputError, match="several hosts"):
                admin.redirect("app", "a,b", 5432, target_db)
        bouncer.write_databases_file(f"[databases]\napp = host=127.0.0.1 port={source_cluster.port} dbname={source_db}\n"
                                     f"app = host=127.0.0.1 port={source_cluster.port} dbname={source_db}\n")
        with admin.paused("app", timeout=10):
            with pytest.raises(InputError, match="defines 'app' 2 times"):
                admin.redirect("app", *to_target)
        assert admin.route("app") == Route("127.0.0.1", source_cluster.port, source_db)
    with bouncer.connect("app") as conn:
        assert landed(conn)[0] == "source"


def test_odd_database_names_are_quoted_for_the_console(source_cluster: PgCluster, pgbouncer_factory: Any) -> None:
    # PgBouncer 1.18's ini cannot spell these names; its "*" fallback serves them.
    odd = ['we"ird ünï 表 db', "x" * 61]  # 61 bytes: 63 once quoted, the console's limit
    for name in odd:
        source_cluster.create_database(name)
    try:
        bouncer = pgbouncer_factory({"app": (source_cluster, "postgres")}, fallback=source_cluster)
        with PgBouncerAdmin.connect(bouncer.admin_endpoint()) as admin:
            for name in odd:
                with bouncer.connect(name) as conn:
                    assert conn.execute("SELECT current_database()").fetchone() == (name,)
                admin.pause(name, timeout=10)
                paused = {row["name"]: row["paused"] for row in admin.databases()}
                assert paused[name] == 1 and paused["app"] == 0
                assert admin.resume(name) is True
                assert not admin.is_paused(name)
            for bad, why in (("", "must not be empty"), ("a\nb", "control character"),
                             ("pgbouncer", "admin console"), ("x" * 62, "at most 63 bytes"),
                             ('"' * 31, "at most 63 bytes")):
                with pytest.raises(InputError, match=why):
                    admin.pause(bad, timeout=5)
    finally:
        for name in odd:
            source_cluster.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    assert console_name('a"b') == '"a""b"'


def test_the_console_password_is_never_shown(source_cluster: PgCluster, source_db: str,
                                             pgbouncer_factory: Any) -> None:
    bouncer = pgbouncer_factory({"app": (source_cluster, source_db)})
    password = bouncer.admin_password
    errors: list[PgtideError] = []
    holder = bouncer.connect("app", autocommit=False)
    holder.execute("SELECT 1")
    with PgBouncerAdmin.connect(bouncer.admin_endpoint()) as admin:
        assert password not in repr(admin.endpoint) and password not in str(admin.endpoint)
        for action in (lambda: admin.pause("app", timeout=0.5), lambda: admin.pause("nope", timeout=1)):
            with pytest.raises(PgtideError) as caught:
                action()
            errors.append(caught.value)
        # Everything on this machine while pgtide holds a console session: argv and environment.
        for pid in filter(str.isdigit, os.listdir("/proc")):
            for part in ("cmdline", "environ"):
                try:
                    content = Path(f"/proc/{pid}/{part}").read_bytes()
                except OSError:
                    continue  # gone, or not ours to read
                assert password.encode() not in content, f"the console password is in /proc/{pid}/{part}"
    holder.close()
    for wrong in (bouncer.admin_endpoint(password=password + "x"), bouncer.admin_endpoint().with_dbname("app")):
        with pytest.raises((ConnectError, InputError)) as caught:
            PgBouncerAdmin.connect(wrong)
        errors.append(caught.value)
    assert [type(error).__name__ for error in errors] == ["PauseTimeout", "InputError", "ConnectError", "InputError"]
    for error in errors:
        shown = str(error) + repr(error) + json.dumps(error.to_dict())
        assert password not in shown, f"{type(error).__name__} shows the console password"
    # Nor in PgBouncer's files: the auth file holds SCRAM verifiers, the log never had it.
    for path in bouncer.root.iterdir():
        if path.is_file():
            assert password.encode() not in path.read_bytes(), f"the console password is in {path.name}"


def test_a_user_outside_admin_users_is_told_so(pgbouncer_factory: Any) -> None:
    bouncer = pgbouncer_factory()
    endpoint = bouncer.admin_endpoint().with_params(user=CLIENT_USER, password=bouncer.client_password)
    with pytest.raises(ConnectError) as caught:
        PgBouncerAdmin.connect(endpoint)
    assert "admin_users" in caught.value.remedy, caught.value
    assert bouncer.client_password not in str(caught.value)


class _Interrupt(BaseException):
    pass


def test_an_interrupted_pause_resumes_before_it_propagates(source_cluster: PgCluster, source_db: str,
                                                           pgbouncer_factory: Any) -> None:
    bouncer = pgbouncer_factory({"app": (source_cluster, source_db)})
    holder = bouncer.connect("app", autocommit=False)
    holder.execute("SELECT 1")

    def interrupt(signum: int, frame: Any) -> None:
        raise _Interrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        with PgBouncerAdmin.connect(bouncer.admin_endpoint()) as admin:
            signal.setitimer(signal.ITIMER_REAL, 0.5)  # like Ctrl-C while PAUSE waits
            with pytest.raises(_Interrupt):
                admin.pause("app", timeout=30)
            signal.setitimer(signal.ITIMER_REAL, 0)
            assert not admin.is_paused("app")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        holder.close()


def test_a_pgbouncer_that_stops_answering_is_reported_not_waited_for(pgbouncer_factory: Any) -> None:
    bouncer = pgbouncer_factory()
    with PgBouncerAdmin.connect(bouncer.admin_endpoint(), command_timeout=1.0) as admin:
        os.kill(bouncer.pid, signal.SIGSTOP)
        try:
            with pytest.raises(EnvironmentProblem, match="did not answer SHOW within 1s"):
                admin.databases()
        finally:
            os.kill(bouncer.pid, signal.SIGCONT)
        assert [row["name"] for row in admin.databases()] == ["pgbouncer"]  # a new session, answered
