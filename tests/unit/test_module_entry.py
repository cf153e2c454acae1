"""`python -m sandboxctl`: the module entry points the Nox sessions call instead of Invoke."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from plan_copy import consistent_copy

from sandboxctl import __main__ as entry

ROOT = Path(__file__).resolve().parents[2]


def test_plan_check_on_a_consistent_copy_reports_no_drift(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same report `invoke plan.check` prints, exit 0."""
    monkeypatch.chdir(consistent_copy(tmp_path / "repo"))
    assert entry.main(["plan-check"]) == 0
    assert "no drift" in capsys.readouterr().out


def test_an_unreadable_plan_is_a_message_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No PLAN.md: the error's own words on stderr, the status `invoke plan.check` gives."""
    repo = consistent_copy(tmp_path / "repo")
    (repo / "PLAN.md").unlink()
    monkeypatch.chdir(repo)
    assert entry.main(["plan-check"]) == 2
    assert capsys.readouterr().err.startswith("plan-check: ")


def test_an_unknown_command_is_refused_with_the_list() -> None:
    """argparse names the commands; nothing runs."""
    result = subprocess.run(
        [sys.executable, "-m", "sandboxctl", "images.base"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "base-image" in result.stderr


def session_run_programs(noxfile: Path) -> list[str]:
    """The first argument of every `session.run(...)` in the noxfile."""
    programs = []
    for node in ast.walk(ast.parse(noxfile.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "run"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "session"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            programs.append(str(node.args[0].value))
    return programs


def test_no_nox_session_runs_invoke() -> None:
    """Invoke's e2e and devcontainer.check tasks run Nox: Nox never runs Invoke back."""
    programs = session_run_programs(ROOT / "noxfile.py")
    assert "python" in programs  # the module entry points are found by this scan
    assert "invoke" not in programs


def test_every_command_the_noxfile_names_exists() -> None:
    """Each `sandboxctl(session, "...")` in the noxfile is a command of the module."""
    names = [
        str(node.args[1].value)
        for node in ast.walk(ast.parse((ROOT / "noxfile.py").read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "sandboxctl"
        and len(node.args) == 2
        and isinstance(node.args[1], ast.Constant)
    ]
    assert names, "the noxfile calls no module entry point"
    assert set(names) <= set(entry.COMMANDS)


def test_unusable_answers_are_a_message_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A malformed .env stops a command before any work, as it stops `invoke images.base`."""
    (tmp_path / "tasks.py").write_text("")
    (tmp_path / ".env").write_text("MODEL_PORT=eighty\n")
    monkeypatch.chdir(tmp_path)
    assert entry.main(["base-image"]) == 2
    assert capsys.readouterr().err.startswith("base-image: ")
