"""The template repository's promises: the README's two commands, CI, documented tooling."""

from __future__ import annotations

import re
import subprocess
import sys

from template_support import ROOT


def readme_commands() -> list[str]:
    """The commands of the README's first fenced block, comments stripped."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, flags=re.DOTALL)
    assert block, "README.md must open with a ```sh block"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_exactly_two_commands() -> None:
    """One command runs the main job, one runs the tests; nothing else comes first."""
    text = (ROOT / "README.md").read_text()
    first_block = text.index("```sh")
    assert text[:first_block].count("\n") <= 3  # only the title precedes it
    assert len(readme_commands()) == 2


def test_ci_runs_the_readme_test_command_character_for_character() -> None:
    """`.ci/run` runs the README's second command exactly as printed."""
    test_command = readme_commands()[1]
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines


def test_every_nox_session_is_documented() -> None:
    """`nox -l` shows a description for each session."""
    result = subprocess.run(
        [sys.executable, "-m", "nox", "-l"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    sessions = [line for line in result.stdout.splitlines() if line[:2] in {"* ", "- "}]
    assert sessions
    undocumented = [line for line in sessions if " -> " not in line]
    assert undocumented == []


def test_every_invoke_task_is_documented() -> None:
    """`invoke --list` shows a help line for each task."""
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [line for line in result.stdout.splitlines() if line.startswith("  ") and line.strip()]
    tasks = [line for line in rows if not line.startswith("    ")]
    assert tasks
    undocumented = [line for line in tasks if len(line.split(None, 1)) < 2]
    assert undocumented == []


def test_license_file_matches_pyproject() -> None:
    """LICENSE is the license pyproject.toml declares (and the images' OCI labels)."""
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    assert declared == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")


def test_scripts_check_out_with_lf_line_endings_everywhere() -> None:
    """.gitattributes gives every script and Containerfile eol=lf (a CRLF checkout on
    Windows breaks them in WSL and in containers); the template renders it too."""
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    scripts = [
        path
        for path in tracked
        if path.endswith((".sh", ".py", ".jinja", ".yaml")) or path.endswith("Containerfile")
    ]
    assert "bootstrap.sh" in scripts
    attrs = subprocess.run(
        ["git", "check-attr", "eol", "--", *scripts],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert attrs
    assert [line for line in attrs if not line.endswith(": eol: lf")] == []
    # rendered from the root's own file (a link named .gitattributes is refused by git)
    assert (ROOT / "template" / ".gitattributes.jinja").read_text() == (
        '{% include ".gitattributes" %}'
    )


def test_changelog_names_the_current_version() -> None:
    """CHANGELOG.md has a section for pyproject.toml's version (the release tag's)."""
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## Unreleased" in changelog
    assert re.search(rf"^## {re.escape(version)} - \d{{4}}-\d\d-\d\d$", changelog, re.MULTILINE)
