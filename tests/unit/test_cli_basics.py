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
