"""validate --fix / init --fix: the remedies pgtide can apply, listed with their server, applied, re-checked."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from engine_support import wait_until_identical
from pgharness import PgCluster
from psycopg import sql

from pgtide.core.engine.fixes import EXTENSIONS_CHECK, apply_fixes
from pgtide.core.engine.validate import validate
from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.model.plan import Options, Plan
from pgtide.core.model.selection import Selection

PGTIDE = str(Path(sys.executable).parent / "pgtide")
DB = "fix_shop"


def _url(cluster: PgCluster, db: str = DB) -> str:
    return f"postgresql://postgres@127.0.0.1:{cluster.port}/{db}"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PGTIDE, *args], capture_output=True, text=True, timeout=300)


def test_init_fix_yes_sets_replica_identities_then_streams(source_cluster: PgCluster,
                                                           target_cluster: PgCluster) -> None:
    source, target = source_cluster, target_cluster
    source.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))
    try:
        source.execute(
            # No key at all: FULL. A unique index on NOT NULL columns: USING INDEX. A time window on
            # created_at of an id-keyed table: the filter reads a column outside the identity.
            "CREATE TABLE history (id int, at timestamptz, v text); "
            "INSERT INTO history SELECT g, now(), 'h' || g FROM generate_series(1, 50) g; "
            "CREATE TABLE tokens (code text NOT NULL, owner int); CREATE UNIQUE INDEX tokens_code ON tokens (code); "
            "INSERT INTO tokens SELECT 't' || g, g FROM generate_series(1, 50) g; "
            "CREATE TABLE events (id int PRIMARY KEY, created_at timestamptz NOT NULL, kind text); "
            "INSERT INTO events SELECT g, now() - (g % 2) * interval '200 days' - interval '1 day', 'e' "
            "FROM generate_series(1, 100) g;",
            dbname=DB)
        ends = ["--source", _url(source), "--target", _url(target)]
        refused = _run("init", *ends, "--time-filter", "events:created_at:30 days", "--yes")
        assert refused.returncode == 2 and "replica identity" in refused.stderr, refused.stdout + refused.stderr

        result = _run("init", *ends, "--time-filter", "events:created_at:30 days", "--fix", "--yes")
        out = result.stdout
        assert result.returncode == 0, out + result.stderr
        assert f'on the source server, database {DB}: ALTER TABLE "public"."history" REPLICA IDENTITY FULL' in out, out
        assert 'ALTER TABLE "public"."events" REPLICA IDENTITY FULL' in out, out
        assert 'ALTER TABLE "public"."tokens" REPLICA IDENTITY USING INDEX "tokens_code"' in out, out
        assert "the whole old row" in out and "unique index tokens_code" in out, out
        identities = dict(source.execute("SELECT relname, relreplident::text FROM pg_class WHERE relname IN "
                                         "('history', 'tokens', 'events')", dbname=DB))
        assert identities == {"history": "f", "tokens": "i", "events": "f"}

        # The application keeps working on the source, and every change arrives.
        source.execute("UPDATE history SET v = 'changed' WHERE id <= 10; DELETE FROM history WHERE id > 45; "
                       "UPDATE tokens SET owner = -1 WHERE code = 't3'; DELETE FROM tokens WHERE code = 't4'; "
                       "UPDATE events SET kind = 'updated' WHERE id = 1; DELETE FROM events WHERE id = 3; "
                       "INSERT INTO events VALUES (1000, now(), 'new')", dbname=DB)
        wait_until_identical(source, target, DB, {
            ("public", "history"): None, ("public", "tokens"): None,
            ("public", "events"): "created_at > now() - interval '30 days'"})
        verify = _run("verify", *ends)
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        target.clean_replication()
        source.clean_replication()
        source.drop_database(DB)
        target.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))


def test_validate_fix_writes_alter_system_and_never_restarts(cluster_factory: Callable[..., PgCluster],
                                                             target_cluster: PgCluster) -> None:
    source = cluster_factory(wal_level="replica")
    db = source.create_database("fix_settings")
    source.execute("CREATE TABLE t (id int PRIMARY KEY)", dbname=db)
    started = source.execute("SELECT pg_postmaster_start_time()")
    ends = ["--source", _url(source, db), "--target", _url(target_cluster, db)]
    result = _run("validate", *ends, "--fix", "--yes")
    out = result.stdout
    assert result.returncode == 1, out + result.stderr  # still not ready: the restart is the user's
    assert "on the source server, database postgres: ALTER SYSTEM SET \"wal_level\" = 'logical'" in out, out
    assert "restart needed" in out and "wal_level is replica, logical once restarted" in out, out
    assert source.execute("SELECT pg_postmaster_start_time()") == started
    assert "wal_level = 'logical'" in (source.datadir / "postgresql.auto.conf").read_text()
    del source.settings["wal_level"]  # the harness's command-line setting would outrank the file
    source.restart()  # on a new port
    again = _run("validate", "--source", _url(source, db), "--target", _url(target_cluster, db))
    assert "logical" in again.stdout and again.returncode == 0, again.stdout + again.stderr


def test_an_existing_target_database_gets_the_extensions_the_source_uses(source_db: str, target_db: str,
                                                                         source_cluster: PgCluster,
                                                                         target_cluster: PgCluster) -> None:
    source_cluster.execute("CREATE EXTENSION citext; CREATE TABLE t (id int PRIMARY KEY, name citext)",
                           dbname=source_db)
    plan = Plan(Endpoint.parse(_url(source_cluster, source_db), env={}),
                Endpoint.parse(_url(target_cluster, target_db), env={}),
                Selection.from_cli(include_databases=[source_db]), Options(jobs=1))
    # The target database exists under the source's name, without the extension.
    target_cluster.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(source_db)))
    try:
        report = validate(plan)
        check = next(c for c in report.checks if c.name == EXTENSIONS_CHECK)
        assert check.status == "warning" and "citext" in check.observed, check
        (fix,) = check.fixes
        assert [(s.server, s.database, s.sql) for s in fix.statements] == [
            ("target", source_db, 'CREATE EXTENSION IF NOT EXISTS "citext"')]
        apply_fixes(plan, report.fixes)
        assert target_cluster.execute("SELECT extname FROM pg_extension WHERE extname = 'citext'",
                                      dbname=source_db) == [("citext",)]
        assert not any(c.name == EXTENSIONS_CHECK for c in validate(plan).checks)
    finally:
        target_cluster.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(source_db)))
