"""Shared fixtures: a workspace with an outside neighbour, settings, a trajectory writer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox_supervisor.tools import InProcessExecutor, Limits, Workspace
from sandbox_supervisor.trajectory import TrajectoryWriter


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
