"""`scaffold.new --data` in the template repository: the answer names it knows are
copier.yml's questions, and a misspelt one renders nothing (a rendered sandbox has no
copier.yml to render from, so these live with the template tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sandboxctl import scaffold

ROOT = Path(__file__).resolve().parents[2]


def invoke(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_known_answers_are_copier_ymls_questions() -> None:
    with pytest.raises(ValueError, match=r"known: .*gpu_backend.*model_port"):
        scaffold.parse_answers("modle=tiny")


def test_scaffold_new_with_an_unknown_answer_renders_nothing(tmp_path: Path) -> None:
    """The misspelt answer is named, nothing is rendered, the exit is non-zero."""
    dest = tmp_path / "new"
    result = invoke("scaffold.new", str(dest), "--data", "modle=tiny")
    assert result.returncode != 0
    assert "unknown answer 'modle'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not dest.exists()
