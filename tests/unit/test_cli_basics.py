"""The installed console script works from any directory."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path


def _pgtide(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "pgtide"), *args], capture_output=True, text=True,
                          timeout=60, cwd="/")


def test_version() -> None:
    result = _pgtide("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"pgtide {version('pgtide')}"


def test_help_lists_exit_codes() -> None:
    result = _pgtide("--help")
    assert result.returncode == 0
    assert "usage: pgtide" in result.stdout and "4 interrupted" in result.stdout


def test_bad_usage_exits_2() -> None:
    result = _pgtide("no-such-command")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_watch_interval_must_be_a_finite_positive_number() -> None:
    for value in ("nan", "inf", "-inf", "0", "-2", "1e9"):
        result = _pgtide("status", "--source", "postgresql://u@127.0.0.1:1/a", "--target",
                         "postgresql://u@127.0.0.1:1/b", f"--watch={value}")
        assert result.returncode == 2, (value, result.stderr)
        assert "--watch needs a positive number of seconds" in result.stderr and "Traceback" not in result.stderr
    result = _pgtide("verify", "--recheck-timeout", "nan")
    assert result.returncode == 2 and "finite number of seconds" in result.stderr


def test_bad_port_and_sslmode_are_bad_input_before_any_connection() -> None:
    cases = {
        "postgresql://u:secret@127.0.0.1:abc/db": "port must be a number",
        "postgresql://u:secret@127.0.0.1:5432/db?sslmode=bogus": "sslmode must be one of",
        "host=127.0.0.1 port=70000 dbname=db": "port must be a number",
    }
    for url, message in cases.items():
        result = _pgtide("validate", "--source", url, "--target", "postgresql://u@127.0.0.1:1/b")
        assert result.returncode == 2, (url, result.stderr)
        assert message in result.stderr and "secret" not in result.stderr
