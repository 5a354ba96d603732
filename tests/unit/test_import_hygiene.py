"""core/ must stay usable without textual; the UI must go through core, never psycopg."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_core_does_not_load_textual() -> None:
    code = (
        "import sys, pkgutil, importlib, pgtide.core as core\n"
        "names = [m.name for m in pkgutil.walk_packages(core.__path__, 'pgtide.core.')]\n"
        "assert len(names) > 30, names\n"
        "for name in names: importlib.import_module(name)\n"
        "print(sorted(n for n in sys.modules if n == 'textual' or n.startswith('textual.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "[]", out.stdout


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_ui_packages_do_not_import_psycopg() -> None:
    offenders = []
    files = [p for folder in ("screens", "widgets", "app") for p in (ROOT / folder).rglob("*.py")]
    assert files, "no UI modules found: the check would pass vacuously"
    for path in files:
        bad = {name for name in _imported_modules(path) if name.split(".")[0] == "psycopg"}
        if bad:
            offenders.append(f"{path.relative_to(ROOT)}: {sorted(bad)}")
    assert offenders == []


def test_core_does_not_import_textual_statically() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "core").rglob("*.py")
        if any(name.split(".")[0] == "textual" for name in _imported_modules(path))
    ]
    assert offenders == []
