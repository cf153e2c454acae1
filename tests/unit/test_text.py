"""Terminal text: labelled items and plain tables fit the width they are given."""

from __future__ import annotations

import pytest

from sandboxctl import _text


@pytest.mark.parametrize("width", [40, 80, 120])
def test_table_lines_never_exceed_the_width(width: int) -> None:
    rows = [("*", "llama-3.2-3b-instruct", "2.02 GB", "Llama 3.2 Community License " * 3)]
    lines = _text.table(("", "model", "size", "license"), rows, width)
    assert max(map(len, lines)) <= width
    assert lines[1].startswith("*  llama-3.2-3b-instruct  2.02 GB")


def test_table_keeps_a_last_column_that_fits_whole() -> None:
    lines = _text.table(("a", "b"), [("x", "MIT")], 80)
    assert lines == ["a  b", "x  MIT"]


def test_labelled_wraps_under_the_label() -> None:
    lines = _text.labelled("ok", "word " * 30, 30, 6)
    assert lines[0].startswith("ok    word")
    assert all(line.startswith("      word") for line in lines[1:])
    assert max(map(len, lines)) <= 30


def test_columns_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    assert _text.columns() == 100
    monkeypatch.setenv("COLUMNS", "10")
    assert _text.columns() == _text.MIN_COLUMNS


def test_model_list_fits_80_columns() -> None:
    """`invoke model.list` on an 80-column terminal: every line fits, every model shown."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "model.list"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "80"},
        check=True,
    )
    lines = result.stdout.splitlines()
    assert max(map(len, lines)) <= 80, lines
    assert any(line.startswith("*  ") for line in lines)
    assert any("llama-3.2-3b-instruct" in line for line in lines)
