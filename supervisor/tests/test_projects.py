"""Projects in the workspace: ``sandbox-supervisor workspace list|pack|unpack`` (what the
host's one-shot container runs for workspace.import/export/list)."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from sandbox_supervisor.cli import main
from sandbox_supervisor.projects import ProjectError, list_projects, pack_project, unpack_project


def _project(root: Path) -> Path:
    source = root / "source"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "calc.py").write_text("x = 1\n")
    (source / "run.sh").write_text("#!/bin/sh\n")
    (source / "run.sh").chmod(0o750)
    return source


def _stream(source: Path) -> io.BytesIO:
    out = io.BytesIO()
    pack_project(source.parent, source.name, out)
    out.seek(0)
    return out


def test_a_project_round_trips_through_pack_and_unpack(tmp_path: Path) -> None:
    source = _project(tmp_path)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    copied = unpack_project(workspace, "demo", _stream(source))
    assert copied.refused == []
    assert (workspace / "demo" / "pkg" / "calc.py").read_text() == "x = 1\n"
    assert (workspace / "demo" / "run.sh").stat().st_mode & 0o777 == 0o750
    assert list_projects(workspace) == [("demo", 2, len("x = 1\n#!/bin/sh\n"))]


def test_unpack_over_an_existing_project_needs_replace(tmp_path: Path) -> None:
    source = _project(tmp_path)
    workspace = tmp_path / "ws"
    (workspace / "demo").mkdir(parents=True)
    (workspace / "demo" / "old.txt").write_text("old\n")
    with pytest.raises(ProjectError, match="--replace"):
        unpack_project(workspace, "demo", _stream(source))
    assert (workspace / "demo" / "old.txt").exists()
    unpack_project(workspace, "demo", _stream(source), replace=True)
    assert not (workspace / "demo" / "old.txt").exists()
    assert (workspace / "demo" / "pkg" / "calc.py").exists()


def test_a_project_folder_swapped_for_a_link_is_not_read(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "demo").symlink_to("/etc")
    with pytest.raises(ProjectError, match="not a plain folder"):
        pack_project(workspace, "demo", io.BytesIO())
    assert list_projects(workspace) == []


@pytest.mark.parametrize("name", ["..", ".hidden", "a/b", "", "x" * 65, "\x1b[2J"])
def test_project_names_are_plain_folder_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ProjectError):
        unpack_project(tmp_path, name, io.BytesIO())


def test_the_cli_packs_to_stdout_and_unpacks_from_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _project(tmp_path)
    out = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", SimpleNamespace(buffer=out))
    assert main(["workspace", "pack", "source", "--workspace", str(tmp_path)]) == 0
    monkeypatch.undo()
    out.seek(0)
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=out))
    workspace = tmp_path / "ws"
    workspace.mkdir()
    assert main(["workspace", "unpack", "copy", "--workspace", str(workspace)]) == 0
    assert (workspace / "copy" / "pkg" / "calc.py").read_text() == "x = 1\n"
    assert "unpacked 2 files" in capsys.readouterr().err
    assert main(["workspace", "list", "--workspace", str(workspace)]) == 0
    assert capsys.readouterr().out.startswith("copy\t2 files")
