"""`invoke` outside a sandbox: one clear line, exit 1 (not Invoke's "Can't find any
collection named 'tasks'!")."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sandboxctl import invoke_entry

ROOT = Path(__file__).resolve().parents[2]
RUN = "from sandboxctl.invoke_entry import program; program.run()"


def run_invoke(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The environment's `invoke` script runs exactly this."""
    return subprocess.run(
        [sys.executable, "-c", f"import sys; sys.argv = ['invoke', *sys.argv[1:]]; {RUN}", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # this sandbox's sandboxctl
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_invoke_up_outside_a_sandbox_says_where_the_sandbox_is(tmp_path: Path) -> None:
    result = run_invoke(tmp_path, "up")
    assert result.returncode == 1
    assert result.stderr.strip() == invoke_entry.not_a_sandbox(tmp_path.resolve())
    assert f"cd {ROOT}" in result.stderr
    assert "Can't find any collection" not in result.stderr


def test_inside_the_sandbox_it_is_invoke(tmp_path: Path) -> None:
    result = run_invoke(ROOT, "--list")
    assert result.returncode == 0
    assert "runs.list" in result.stdout


@pytest.mark.parametrize(
    "argv",
    [["scaffold.new", "--help"], ["run", "-h"], ["model.add", "--help"], ["issue.log", "--help"]],
)
def test_help_after_a_task_with_a_required_argument_shows_its_help(
    argv: list[str], tmp_path: Path
) -> None:
    """`invoke scaffold.new --help` rendered a sandbox into './--help'; now it is help, also
    where the word leaves the task's other required arguments missing (issue.log)."""
    result = run_invoke(ROOT, *argv)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: inv[oke] [--core-opts] {argv[0]} ")
    assert not (ROOT / argv[1]).exists()


def test_pyproject_installs_it_under_invokes_script_names() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {
        "invoke": "sandboxctl.invoke_entry:program.run",
        "inv": "sandboxctl.invoke_entry:program.run",
    }
