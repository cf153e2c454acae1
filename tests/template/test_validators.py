"""Validators of copier.yml: a wrong answer fails with a message naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from template_support import ROOT

from sandboxctl import scaffold

BAD_ANSWERS = [
    ("model_port", 0),
    ("model_port", 70000),
    ("project_slug", "My App"),
    ("project_slug", "-app"),
    ("machine_memory_mib", 10),
    ("machine_cpus", 0),
    ("machine_disk_gib", 5),
    ("gpu_backend", "tpu"),
    ("volume_label", "x"),
    ("model", "no-such-model"),
    ("llama_cpp_version", "b1"),
    ("project_name", "   "),
    ("project_name", 'say "hi"'),
    ("project_name", "costs $HOME"),
]


@pytest.mark.parametrize(("question", "value"), BAD_ANSWERS)
def test_bad_answer_is_rejected_naming_the_field(
    tmp_path: Path, question: str, value: object
) -> None:
    """A bad answer stops rendering with an error that names the question."""
    dest = tmp_path / "sandbox"
    with pytest.raises(Exception, match=question) as caught:
        scaffold.render(dest, {question: value}, src=ROOT)
    assert question in str(caught.value)


@pytest.mark.parametrize(("question", "value"), BAD_ANSWERS)
def test_bad_answer_leaves_no_output_folder(tmp_path: Path, question: str, value: object) -> None:
    """Nothing half-written is left behind when an answer is rejected."""
    dest = tmp_path / "sandbox"
    with pytest.raises(Exception, match=question):
        scaffold.render(dest, {question: value}, src=ROOT)
    assert not dest.exists()


@pytest.mark.parametrize(
    ("question", "value"),
    [
        ("model_port", 1024),
        ("model_port", 65535),
        ("machine_memory_mib", 2048),
        ("project_slug", "a"),
    ],
)
def test_boundary_answers_are_accepted(tmp_path: Path, question: str, value: object) -> None:
    """The ends of each allowed range render."""
    dest = scaffold.render(tmp_path / "sandbox", {question: value}, src=ROOT)
    assert (dest / ".copier-answers.yml").is_file()
