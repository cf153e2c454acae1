"""Rendering the template: every answer renders a complete, well-formed sandbox."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from template_support import ROOT, compose_config

from sandboxctl import scaffold

TOP_LEVEL = [
    "tasks.py",
    "noxfile.py",
    "model-server",
    "supervisor",
    "compose.yaml",
    ".devcontainer",
    "docs",
    "PLAN.md",
    "README.md",
    "pyproject.toml",
    ".env",
    ".gitignore",
    ".gitattributes",
    "bootstrap.sh",
    ".copier-answers.yml",
]
TEMPLATE_ONLY = ["copier.yml", "template", "tests/template", ".ci"]


def choice_cases() -> list[tuple[str, Any]]:
    """Every (question, value) pair of every choice and boolean question in copier.yml."""
    cases: list[tuple[str, Any]] = []
    for name, question in scaffold.load_questions(ROOT).items():
        if "choices" in question:
            cases += [(name, value) for value in scaffold.choice_values(question)]
        elif question.get("type") == "bool":
            cases += [(name, True), (name, False)]
    return cases


def jinja_leftovers(text: str, names: set[str]) -> list[str]:
    """Jinja expressions or statements in ``text`` that name a question or a Copier variable.

    Go templates (``{{.State}}``) and other ``{{ }}`` that name none of them are not Jinja.
    """
    found = []
    for match in re.finditer(r"\{\{.*?\}\}|\{%.*?%\}", text, flags=re.DOTALL):
        words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", match.group()))
        if words & names or any(word.startswith("_copier") for word in words):
            found.append(match.group())
    return found


def rendered_files(root: Path) -> list[Path]:
    """All regular files of a rendered sandbox."""
    return [path for path in root.rglob("*") if path.is_file() and ".git" not in path.parts]


def test_default_render_has_every_top_level_entry(default_render: Path) -> None:
    """The defaults render the whole sandbox layout and the answers file."""
    missing = [entry for entry in TOP_LEVEL if not (default_render / entry).exists()]
    assert missing == []


def test_default_render_leaves_out_the_template_machinery(default_render: Path) -> None:
    """copier.yml, template/, the template tests and CI stay in the template repository."""
    present = [entry for entry in TEMPLATE_ONLY if (default_render / entry).exists()]
    assert present == []


def test_default_render_writes_real_files_not_links(default_render: Path) -> None:
    """Copier follows the template's links: the sandbox holds real files."""
    links = [path for path in default_render.rglob("*") if path.is_symlink()]
    assert links == []


def test_answers_file_records_every_question(
    default_render: Path, questions: dict[str, dict[str, Any]]
) -> None:
    """`.copier-answers.yml` holds each answer asked, so `copier update` can replay them
    (the Podman machine's questions are asked, and recorded, only for `engine=machine`)."""
    answers = yaml.safe_load((default_render / ".copier-answers.yml").read_text())
    asked = {name for name, question in questions.items() if "when" not in question}
    assert asked <= set(answers)
    assert answers["_src_path"]


def test_gitattributes_is_rendered_from_the_roots(default_render: Path) -> None:
    assert (default_render / ".gitattributes").read_text() == (ROOT / ".gitattributes").read_text()


def test_a_podman_machine_records_its_questions_too(tmp_path: Path) -> None:
    dest = scaffold.render(tmp_path / "sandbox", {"engine": "machine"}, src=ROOT)
    answers = yaml.safe_load((dest / ".copier-answers.yml").read_text())
    assert answers["machine_cpus"] == 4
    assert "SANDBOX_ENGINE=machine\n" in (dest / ".env").read_text()


@pytest.mark.parametrize(("question", "value"), choice_cases())
def test_each_choice_renders_into_env(tmp_path: Path, question: str, value: Any) -> None:
    """Each choice of each question renders, and reaches the components through `.env`."""
    data = {question: value}
    if question.startswith("machine_"):
        data["engine"] = "machine"  # asked (and recorded) only for a Podman machine
    dest = scaffold.render(tmp_path / "sandbox", data, src=ROOT)
    answers = yaml.safe_load((dest / ".copier-answers.yml").read_text())
    assert answers[question] == value
    env = (dest / ".env").read_text()
    expected = str(value).lower() if isinstance(value, bool) else str(value)
    assert re.search(rf"^[A-Z_]+={re.escape(expected)}$", env, flags=re.MULTILINE)
    assert compose_config(dest).returncode == 0


def test_no_unrendered_jinja_in_any_file(
    default_render: Path, questions: dict[str, dict[str, Any]]
) -> None:
    """No `{{ }}`/`{% %}` naming a question or a `_copier` variable survives rendering."""
    names = set(questions)
    leftovers = {}
    for path in rendered_files(default_render):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if found := jinja_leftovers(text, names):
            leftovers[str(path.relative_to(default_render))] = found
    assert leftovers == {}


def test_jinja_detector_ignores_go_templates() -> None:
    """The leftover detector flags Jinja naming a question, not `--format '{{.State}}'`."""
    text = "podman ps --format '{{.State}}'\nPORT={{ model_port }}\n{% if _copier_conf %}"
    assert jinja_leftovers(text, {"model_port"}) == ["{{ model_port }}", "{% if _copier_conf %}"]


def test_every_yaml_toml_and_json_file_parses(default_render: Path) -> None:
    """Structured files of the rendered sandbox parse with their format's parser."""
    failures = {}
    for path in rendered_files(default_render):
        try:
            if path.suffix in {".yaml", ".yml"}:
                list(yaml.safe_load_all(path.read_text()))
            elif path.suffix == ".toml":
                tomllib.loads(path.read_text())
            elif path.suffix == ".json":
                json.loads(strip_jsonc_comments(path.read_text()))
        except Exception as error:
            failures[str(path.relative_to(default_render))] = str(error)
    assert failures == {}


def strip_jsonc_comments(text: str) -> str:
    """Drop `//` line comments, which devcontainer.json (JSONC) allows."""
    return re.sub(r"^\s*//.*$", "", text, flags=re.MULTILINE)


def test_rendered_compose_passes_docker_compose_config(default_render: Path) -> None:
    """Compose v2 accepts the rendered compose.yaml with the rendered .env (no engine needed)."""
    result = compose_config(default_render)
    assert result.returncode == 0, result.stderr


def test_root_env_is_the_default_render(default_render: Path) -> None:
    """The template root is itself a sandbox: its .env is exactly what the defaults render."""
    assert (ROOT / ".env").read_text() == (default_render / ".env").read_text()


def test_rendered_project_passes_its_own_format_check(default_render: Path) -> None:
    """`ruff format --check` is a no-op in the rendered sandbox."""
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "."],
        cwd=default_render,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_guide_reaches_the_rendered_sandbox(default_render: Path) -> None:
    """Each document of docs/ is rendered, except the template's own notes and issue log."""
    own_history = {"IMPLEMENTATION_NOTES.md", "ISSUE_LOG.md"}
    guides = {p.name for p in (ROOT / "docs").glob("*.md")} - own_history
    rendered = {p.name for p in (default_render / "docs").glob("*.md")}
    assert rendered == guides


@pytest.mark.parametrize(
    ("folder", "slug"),
    [("My Box", "my-box"), ("--odd__name--", "odd-name"), ("x" * 70 + "-y", "x" * 63)],
)
def test_slug_defaults_to_the_destination_folder_name(
    tmp_path: Path, folder: str, slug: str
) -> None:
    """Two sandboxes rendered with defaults in different folders are different projects."""
    dest = scaffold.render(tmp_path / folder, src=ROOT)
    assert f"COMPOSE_PROJECT_NAME={slug}\n" in (dest / ".env").read_text()


def template_source(relpath: Path) -> Path | None:
    """The template file a rendered ``relpath`` comes from (links followed), or None."""
    for candidate in (ROOT / "template" / relpath, ROOT / "template" / f"{relpath}.jinja"):
        if candidate.is_file():
            return candidate.resolve()
    return None


def executable_sources(render: Path) -> list[Path]:
    """Rendered files (relative) whose template source has an execute bit."""
    found = []
    for path in rendered_files(render):
        relpath = path.relative_to(render)
        source = template_source(relpath)
        if source is not None and source.stat().st_mode & 0o111:
            found.append(relpath)
    return found


def test_every_executable_template_file_renders_executable(default_render: Path) -> None:
    """A file the template ships executable (bootstrap.sh, the entrypoints, ...) is
    executable in the sandbox: the README's `./bootstrap.sh` runs as printed."""
    executables = executable_sources(default_render)
    assert Path("bootstrap.sh") in executables
    lost = [str(rel) for rel in executables if not (default_render / rel).stat().st_mode & 0o100]
    assert lost == []


def test_no_file_link_in_template_points_at_an_executable() -> None:
    """Copier takes a rendered file's execute bit from the template's git index, where a
    link has none (mode 120000): an executable must be a real file in template/ (linked
    from the root) or sit under a linked folder, never be a file link."""
    links = [path for path in (ROOT / "template").iterdir() if path.is_symlink()]
    offenders = [
        path.name for path in links if path.is_file() and path.resolve().stat().st_mode & 0o111
    ]
    assert offenders == []
