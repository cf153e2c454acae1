"""Shared fixtures: a workspace with an outside neighbour, settings, a trajectory writer,
and ``figures``: the adversarial tests' counts, printed at the end of the session and
written as JSON to ``$ADVERSARIAL_FIGURES_FILE`` when it is set (docs/SECURITY.md quotes
them)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox_supervisor.tools import InProcessExecutor, Limits, Workspace
from sandbox_supervisor.trajectory import TrajectoryWriter


@pytest.fixture(autouse=True)
def no_supervisor_settings_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from the defaults: the environment the suite runs in (the dev
    container sets SUPERVISOR_API_KEY_FILE, for one) must not decide what a test sees."""
    for name in [key for key in os.environ if key.startswith("SUPERVISOR_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """An empty workspace directory next to an ``outside`` directory holding a secret."""
    root = tmp_path / "ws"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("do not touch\n")
    return Workspace.open(root)


@pytest.fixture
def outside(tmp_path: Path, workspace: Workspace) -> Path:
    """The directory next to the workspace that no tool may reach."""
    return tmp_path / "outside"


@pytest.fixture
def executor(workspace: Workspace) -> InProcessExecutor:
    """An in-process executor with short command limits."""
    return InProcessExecutor(
        workspace, Limits(command_timeout_s=5.0, command_grace_s=0.3, output_cap_bytes=4096)
    )


@pytest.fixture
def log(tmp_path: Path) -> Iterator[TrajectoryWriter]:
    """A trajectory writer on a fresh file."""
    with TrajectoryWriter(tmp_path / "run.jsonl", "test-run") as writer:
        yield writer


_FIGURES: dict[str, str] = {}


@pytest.fixture
def figures() -> dict[str, str]:
    """Where an adversarial test records its measured figure (name -> sentence)."""
    return _FIGURES


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the tests marked ``long`` first, the others in their order: pytest-xdist hands
    tests out in this order, and a long test handed out last keeps one worker busy after
    the others have finished."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the figures measured in this session; write them where asked."""
    if not _FIGURES:
        return
    terminalreporter.section("adversarial figures")
    for name, text in sorted(_FIGURES.items()):
        terminalreporter.write_line(f"{name}: {text}")
    target = os.environ.get("ADVERSARIAL_FIGURES_FILE")
    if target:
        Path(target).write_text(json.dumps(_FIGURES, indent=2, sort_keys=True) + "\n")
