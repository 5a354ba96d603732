"""One way to write sizes, durations, counts and tables, for the CLI and the app alike."""

from __future__ import annotations

from pgtide.core.infra.formatting import human_bytes, human_count, human_seconds, text_table
from pgtide.widgets import formatting as ui


def test_sizes_durations_counts() -> None:
    assert [human_bytes(v) for v in (0, 1023, 1024, 5 * 1024**3)] == ["0 B", "1023 B", "1.0 kB", "5.0 GB"]
    assert human_bytes(None) == "-" and ui.human_bytes(None) == "?"
    assert [human_seconds(v) for v in (0.2, 42, 185, 7800)] == ["<1s", "42s", "3m 05s", "2h 10m"]
    assert human_count(1234567, approximate=True) == "~1,234,567" and human_count(None) == "?"


def test_the_app_and_the_cli_agree() -> None:
    for value in (0, 999, 123456789, 9.9 * 1024**4):
        assert ui.human_bytes(value) == human_bytes(value)
    for seconds in (0.5, 59, 61, 3601):
        assert ui.human_seconds(seconds) == human_seconds(seconds)


def test_text_table_aligns_and_rules() -> None:
    text = text_table([["a", "1"], ["long name", "22"]], ["NAME", "N"])
    assert text.splitlines() == ["NAME       N", "---------  --", "a          1", "long name  22"]
    assert text_table([["x"]], ["H"], rule=False).splitlines() == ["H", "x"]
