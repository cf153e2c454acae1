"""Unit tests of sandboxctl.scaffold: answers parsing and the template's questions."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sandboxctl import scaffold


def test_parse_answers_reads_comma_separated_pairs() -> None:
    """`NAME=VALUE,NAME=VALUE` becomes a mapping with whitespace trimmed."""
    known = ["model_port", "gpu_backend"]
    assert scaffold.parse_answers(" model_port=8081 , gpu_backend=cpu", known) == {
        "model_port": "8081",
        "gpu_backend": "cpu",
    }


def test_parse_answers_accepts_an_empty_string() -> None:
    """No answers given means an empty mapping (all defaults)."""
    assert scaffold.parse_answers("") == {}


@pytest.mark.parametrize("text", ["model_port", "=8080", "model=1,b"])
def test_parse_answers_rejects_a_pair_without_name_or_value_sign(text: str) -> None:
    """A malformed pair is an error naming the pair, not a silent default."""
    with pytest.raises(ValueError, match="NAME=VALUE"):
        scaffold.parse_answers(text, ["model", "model_port"])


def test_choice_values_reads_mapping_and_list_choices() -> None:
    """Copier choices may be a label->value mapping or a plain list."""
    assert scaffold.choice_values({"choices": {"CPU": "cpu", "CUDA": "cuda"}}) == ["cpu", "cuda"]
    assert scaffold.choice_values({"choices": ["z", "Z"]}) == ["z", "Z"]
    assert scaffold.choice_values({}) == []


def test_fresh_sandbox_from_a_rendered_sandbox_copies_tracked_files_and_renames_project(
    tmp_path: Path,
) -> None:
    """In a rendered sandbox (no copier.yml) the check copies what git tracks, not secrets
    or models lying around, and gives the copy its own Compose project."""
    source = tmp_path / "mine"
    source.mkdir()
    (source / ".env").write_text("COMPOSE_PROJECT_NAME=mine\nMODEL_PORT=8080\n")
    (source / "tasks.py").write_text("# tasks\n")
    subprocess.run(["git", "init", "-q"], cwd=source, check=True)
    subprocess.run(["git", "add", ".env", "tasks.py"], cwd=source, check=True)
    (source / "secret.txt").write_text("untracked\n")

    dest = scaffold.fresh_sandbox(source, tmp_path / "copy", "check-sandbox")

    assert sorted(p.name for p in dest.iterdir()) == [".env", "tasks.py"]
    assert (dest / ".env").read_text() == "COMPOSE_PROJECT_NAME=check-sandbox\nMODEL_PORT=8080\n"
    assert (source / ".env").read_text().startswith("COMPOSE_PROJECT_NAME=mine")
