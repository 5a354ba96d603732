"""The CLI on a foreign source: the same verbs and exit codes, nothing secret in the output."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from pgtide.app.cli import main


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "app.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL, joined DATE);"
                       "INSERT INTO users VALUES (1, 'a@example.com', '2024-01-01'), (2, 'b@example.com', NULL);"
                       "CREATE TABLE notes (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), body TEXT);"
                       "INSERT INTO notes VALUES (1, 1, 'hi');")
    conn.close()
    return path


def test_commands_end_to_end(tmp_path: Path, target_cluster: Any, target_db: str,
                             capsys: pytest.CaptureFixture[str]) -> None:
    path = _file(tmp_path)
    target = target_cluster.url(target_db)
    assert main(["validate", "--source", str(path), "--target", target]) == 0
    assert "ready" in capsys.readouterr().out
    assert main(["estimate", "--source", f"sqlite:///{path}", "--json"]) == 0
    estimate = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert {t["table"]: t["rows"] for t in estimate["tables"]} == {"notes": 1, "users": 2}
    assert main(["init", "--source", str(path), "--target", target, "--json", "--yes"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    migration = summary["migration"]
    assert sorted(summary["tables"]) == ["notes", "users"]
    assert target_cluster.execute("SELECT email FROM users ORDER BY id", dbname=target_db) == [
        ("a@example.com",), ("b@example.com",)]
    assert main(["verify", "--migration", migration]) == 0
    assert "all tables match" in capsys.readouterr().out
    target_cluster.execute("DELETE FROM notes", dbname=target_db)
    assert main(["verify", "--migration", migration, "--json"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    notes = next(line for line in lines if line.get("table") == "notes")
    assert notes["missing_ids"] == ["1"]
    assert main(["status", "--migration", migration]) == 0
    assert "state: copied" in capsys.readouterr().out
    assert main(["migrations", "--json"]) == 0
    assert migration in capsys.readouterr().out
    assert main(["teardown", "--migration", migration, "--yes"]) == 0
    capsys.readouterr()
    assert target_cluster.execute("SELECT count(*) FROM users", dbname=target_db) == [(2,)]


def test_bad_input_exit_codes(tmp_path: Path, target_cluster: Any, target_db: str,
                              capsys: pytest.CaptureFixture[str]) -> None:
    path = _file(tmp_path)
    target = target_cluster.url(target_db)
    assert main(["init", "--source", str(path), "--target", target, "--table-filter", "users:nosuch > 1",
                 "--yes"]) == 2
    assert "row filter" in capsys.readouterr().err
    assert main(["init", "--source", str(path), "--target", target, "--cast", "users.email", "--yes"]) == 2
    assert "TABLE.COLUMN=TYPE" in capsys.readouterr().err
    assert main(["validate", "--source", f"sqlite:///{tmp_path / 'missing.db'}", "--target", target]) == 2
    assert "no SQLite file" in capsys.readouterr().err
    assert main(["validate", "--source", "mongodb://127.0.0.1:1/x", "--target", target, "--layout", "typed"]) == 2
    assert "--layout jsonb" in capsys.readouterr().err
    assert target_cluster.execute("SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace",
                                  dbname=target_db)[0][0] == 0


def test_profile_keeps_casts_and_comments(tmp_path: Path, target_cluster: Any, target_db: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from pgtide.core.infra import paths

    path = _file(tmp_path)
    target = target_cluster.url(target_db)
    assert main(["profile", "save", "lite", "--source", str(path), "--target", target, "--cast", "users.joined=text",
                 "--table-filter", "notes:id > 0", "--refresh-every", "5m"]) == 0
    file = paths.profiles_dir() / "lite.toml"
    text = file.read_text()
    assert '"users.joined" = "text"' in text and 'notes = "id > 0"' in text and "refresh_every = 300.0" in text
    file.write_text("# my own note\n" + text)
    assert main(["profile", "save", "lite", "--layout", "jsonb"]) == 0
    saved = file.read_text()
    assert saved.startswith("# my own note") and 'layout = "jsonb"' in saved and '"users.joined" = "text"' in saved
    capsys.readouterr()
    assert main(["profile", "list", "--json"]) == 0
    listed = capsys.readouterr().out
    assert "lite" in listed and "sqlite://" in listed and '"error": null' in listed
    assert main(["init", "--profile", "lite", "--yes", "--layout", "typed"]) == 0
    assert target_cluster.execute("SELECT joined FROM users ORDER BY id", dbname=target_db) == [("2024-01-01",), (None,)]
    assert target_cluster.execute("SELECT pg_typeof(joined)::text FROM users LIMIT 1", dbname=target_db) == [("text",)]
