"""Validators of copier.yml: a wrong answer fails with a message naming the field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
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
    ("egress_allow", "https://pypi.org/simple"),
    ("egress_allow", "pypi.org; curl evil"),
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
        ("egress_allow", "pypi.org, .pythonhosted.org git.example.com:8443"),
    ],
)
def test_boundary_answers_are_accepted(tmp_path: Path, question: str, value: object) -> None:
    """The ends of each allowed range render."""
    dest = scaffold.render(tmp_path / "sandbox", {question: value}, src=ROOT)
    assert (dest / ".copier-answers.yml").is_file()


PROMPT_WIDTH = 70
"""Longest help, choice label or validator message: Copier indents them in an 80-column
terminal."""
BAD_VALUES: dict[str, list[object]] = {
    "project_name": ["   ", 'say "hi"'],
    "project_slug": ["My App", "-app"],
    "model_port": [0, 70000],
    "machine_cpus": [0, 65],
    "machine_memory_mib": [10, 262145],
    "machine_disk_gib": [5, 2049],
    "egress_allow": ["https://pypi.org/simple", "*.pypi.org", "pypi.org:port"],
}


def questions() -> dict[str, dict[str, Any]]:
    return scaffold.load_questions(ROOT)


@pytest.mark.parametrize("name", sorted(questions()))
def test_prompt_texts_fit_an_80_column_terminal(name: str) -> None:
    """The help and every choice label of every question are under 70 characters."""
    question = questions()[name]
    texts = [question["help"], *(question.get("choices") or {})]
    assert [text for text in texts if len(text) > PROMPT_WIDTH] == []


@pytest.mark.parametrize("name", sorted(n for n, q in questions().items() if "validator" in q))
def test_validator_messages_fit_an_80_column_terminal(name: str) -> None:
    """Each validator's message for a bad answer is under 70 characters (and not empty)."""
    filters = ["jinja2_ansible_filters.AnsibleCoreFiltersExtension"]  # as Copier has
    template = jinja2.Environment(extensions=filters).from_string(questions()[name]["validator"])
    assert name in BAD_VALUES, f"add bad values of {name} to BAD_VALUES"
    for value in BAD_VALUES[name]:
        message = template.render({name: value}).strip()
        assert message, f"{name}={value!r} passed its validator"
        assert len(message) <= PROMPT_WIDTH, message


def test_model_choices_show_the_catalogs_size() -> None:
    """Each model's label shows its size as model-server/catalog.yaml states it."""
    catalog = yaml.safe_load((ROOT / "model-server" / "catalog.yaml").read_text())["models"]
    for label, key in questions()["model"]["choices"].items():
        size = re.search(r"\d+(\.\d+)? [MG]B", str(catalog[key]["size"]))
        assert size, f"catalog size of {key}"
        assert f"({size.group()}" in label, label


def test_machine_questions_are_asked_only_for_a_podman_machine() -> None:
    """The VM's size is asked only when the answer says a Podman machine runs it."""
    asked = {name for name, q in questions().items() if name.startswith("machine_")}
    assert asked == {"machine_cpus", "machine_memory_mib", "machine_disk_gib", "machine_rootful"}
    for name in asked:
        when = jinja2.Environment().from_string(questions()[name]["when"])
        assert when.render(engine="machine") == "True"
        assert when.render(engine="auto") == when.render(engine="native") == "False"


def test_defaults_render_without_the_machine_questions(tmp_path: Path) -> None:
    """`copier copy --defaults` still renders every .env key (the machine's defaults)."""
    dest = scaffold.render(tmp_path / "sandbox", src=ROOT)
    env = (dest / ".env").read_text()
    assert "SANDBOX_ENGINE=auto\n" in env
    assert "MACHINE_CPUS=4\n" in env
    answers = yaml.safe_load((dest / ".copier-answers.yml").read_text())
    assert "machine_cpus" not in answers
