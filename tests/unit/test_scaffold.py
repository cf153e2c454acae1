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


def test_fresh_sandbox_renames_the_project_in_the_plan_and_answers_too(tmp_path: Path) -> None:
    """The copy's PLAN.md and answers state its own project, so `plan.check` finds no
    drift (the e2e of a rendered sandbox failed on exactly that)."""
    source = tmp_path / "mine"
    source.mkdir()
    (source / ".env").write_text("COMPOSE_PROJECT_NAME=r1\n")
    (source / "PLAN.md").write_text(
        "project: r1\nservices:\n  x:\n    image: localhost/r1-supervisor:dev\n"
        "prose about r1 stays\n"
    )
    (source / ".copier-answers.yml").write_text("model: tiny\nproject_slug: r1\n")

    dest = scaffold.fresh_sandbox(source, tmp_path / "copy", "e2e-real-model")

    plan = (dest / "PLAN.md").read_text()
    assert "project: e2e-real-model\n" in plan
    assert "image: localhost/e2e-real-model-supervisor:dev" in plan
    assert "prose about r1 stays" in plan
    assert "project_slug: e2e-real-model" in (dest / ".copier-answers.yml").read_text()


def test_fresh_sandbox_of_a_sandbox_without_git_copies_what_gitignore_keeps(
    tmp_path: Path,
) -> None:
    """`copier copy` makes no git repository: the copy still leaves out what the sandbox's
    .gitignore names (secrets, models, the venv) and keeps the rest."""
    source = tmp_path / "mine"
    (source / "secrets").mkdir(parents=True)
    (source / "secrets" / "model_api_key").write_text("key\n")
    (source / ".venv" / "bin").mkdir(parents=True)
    (source / "model-server").mkdir()
    (source / "model-server" / "catalog.yaml").write_text("x\n")
    (source / ".gitignore").write_text(".venv/\n/secrets/\n__pycache__/\n")
    (source / ".env").write_text("COMPOSE_PROJECT_NAME=mine\n")

    dest = scaffold.fresh_sandbox(source, tmp_path / "copy", "check-sandbox")

    assert sorted(p.name for p in dest.iterdir()) == [".env", ".gitignore", "model-server"]
    assert (dest / "model-server" / "catalog.yaml").read_text() == "x\n"
