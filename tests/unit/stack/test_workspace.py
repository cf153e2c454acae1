"""workspace.import / list / export from the host, against a fake ``podman`` on PATH: the
fake runs the real ``sandbox-supervisor workspace ...`` on a folder standing for the
volume, so the streams, the git selection and the hostile export are the real code;
only the container is not (tests/e2e/test_own_project.py runs real Podman)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sandbox_supervisor.config import Settings
from sandbox_supervisor.session import run_task

from sandboxctl._proc import Runner
from sandboxctl.stack import workspace

FAKE_PODMAN = """#!PYTHON
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_PODMAN_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[:2] in (["volume", "exists"], ["image", "exists"]):
    sys.exit(0)
assert args[0] == "run", args
at = args.index("sandbox-supervisor")
options = {"/workspace": "--workspace", "/logs": "--log-dir"}
where = []
for n, arg in enumerate(args[:at]):
    if arg == "-v":
        volume, target = args[n + 1].split(":")[:2]
        folder = os.path.join(os.environ["FAKE_VOLUMES"], volume)
        os.makedirs(folder, exist_ok=True)
        where += [options[target], folder]
command = [sys.executable, "-m", "sandbox_supervisor", *args[at + 1:], *where]
os.execv(sys.executable, command)
"""


@pytest.fixture
def access(tmp_path: Path) -> workspace.VolumeAccess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    podman = bin_dir / "podman"
    podman.write_text(FAKE_PODMAN.replace("PYTHON", sys.executable, 1))
    podman.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_PODMAN_LOG": str(tmp_path / "podman.log"),
        "FAKE_VOLUMES": str(tmp_path / "volumes"),
    }
    return workspace.VolumeAccess(
        Runner(env=env), "demo_workspace", "localhost/demo-sv:dev", logs="demo_logs"
    )


def make_settings(**values: object) -> Settings:
    return Settings(**values)  # type: ignore[arg-type]


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def _checkout(tmp_path: Path) -> Path:
    repo = tmp_path / "proj"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (repo / "tool.sh").write_text("#!/bin/sh\necho hi\n")
    (repo / "tool.sh").chmod(0o755)
    (repo / ".gitignore").write_text("build/\n*.pyc\n")
    _git(repo.parent, "init", "-q", str(repo))
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "one")
    (repo / "notes.txt").write_text("untracked, not ignored\n")
    (repo / "build").mkdir()
    (repo / "build" / "out.bin").write_bytes(b"ignored")
    (repo / "pkg" / "calc.pyc").write_bytes(b"ignored")
    (repo / "escape").symlink_to("/etc/passwd")
    return repo


def test_import_takes_what_git_would_commit_and_the_git_folder(
    access: workspace.VolumeAccess, tmp_path: Path
) -> None:
    repo = _checkout(tmp_path)
    _, result = workspace.import_project(access, repo, "proj")
    volume = tmp_path / "volumes" / "demo_workspace" / "proj"
    assert (volume / "pkg" / "calc.py").read_bytes() == (repo / "pkg" / "calc.py").read_bytes()
    assert (volume / "notes.txt").exists()
    assert (volume / ".git" / "HEAD").exists()
    assert not (volume / "build").exists()
    assert not (volume / "pkg" / "calc.pyc").exists()
    assert (volume / "tool.sh").stat().st_mode & 0o777 == 0o755
    # the untracked link out of the source is packed as a link, and refused in the volume
    assert not os.path.lexists(volume / "escape")
    assert "'escape': a link to '/etc/passwd'" in result.stderr
    git_log = subprocess.run(
        ["git", "-C", str(volume), "log", "--oneline"], capture_output=True, text=True
    )
    assert "one" in git_log.stdout
    assert workspace.list_projects(access)[0].startswith("proj\t")


def test_the_helper_container_is_confined(access: workspace.VolumeAccess, tmp_path: Path) -> None:
    repo = _checkout(tmp_path)
    workspace.import_project(access, repo, "proj")
    workspace.export_project(access, "proj", tmp_path / "out")
    calls = [json.loads(line) for line in (tmp_path / "podman.log").read_text().splitlines()]
    runs = [call for call in calls if call[0] == "run"]
    for call in runs:
        for flag in ("--network=none", "--cap-drop=all", "--read-only", "--user=10001:10001"):
            assert flag in call
        assert call.count("-v") == 1  # the workspace volume and nothing else
    unpack_call, pack_call = runs
    assert unpack_call[unpack_call.index("-v") + 1] == "demo_workspace:/workspace"
    assert pack_call[pack_call.index("-v") + 1] == "demo_workspace:/workspace:ro"


def test_export_round_trips_bytes_and_modes(access: workspace.VolumeAccess, tmp_path: Path) -> None:
    repo = _checkout(tmp_path)
    workspace.import_project(access, repo, "proj")
    copied, _ = workspace.export_project(access, "proj", tmp_path / "out")
    out = tmp_path / "out"
    for name in ("pkg/calc.py", "tool.sh", ".gitignore", "notes.txt", ".git/HEAD"):
        assert (out / name).read_bytes() == (repo / name).read_bytes(), name
        assert (out / name).stat().st_mode == (repo / name).stat().st_mode, name
    assert copied.refused == []


def test_export_of_a_hostile_project_writes_nothing_outside_dest(
    access: workspace.VolumeAccess, tmp_path: Path
) -> None:
    volume = tmp_path / "volumes" / "demo_workspace" / "bad"
    volume.mkdir(parents=True)
    (volume / "etc").symlink_to("/etc")
    (volume / "up").symlink_to("../../..")
    os.mkfifo(volume / "fifo")
    (volume / "\x1b]0;owned\x07").write_text("x")
    with (volume / "sparse").open("wb") as handle:
        handle.truncate(1 << 40)
    (volume / "ok.txt").write_text("ok\n")
    (tmp_path / "podman.log").touch()
    before = sorted(p.name for p in tmp_path.iterdir())
    copied, _ = workspace.export_project(access, "bad", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "out"])
    assert os.listdir(tmp_path / "out") == ["ok.txt"]
    assert len(copied.refused) == 3  # the two links and the escape name (on this side)


def test_export_refuses_a_destination_that_is_not_empty(
    access: workspace.VolumeAccess, tmp_path: Path
) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    with pytest.raises(workspace.WorkspaceError, match="not an empty folder"):
        workspace.export_project(access, "proj", tmp_path / "out")
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep"


def test_diff_and_rewind_read_the_record_in_the_logs_volume(
    access: workspace.VolumeAccess, tmp_path: Path
) -> None:
    repo = _checkout(tmp_path)
    workspace.import_project(access, repo, "proj")
    volumes = tmp_path / "volumes"
    script = tmp_path / "script.json"
    edit = {"path": "pkg/calc.py", "old_text": "a - b", "new_text": "a + b"}
    script.write_text(
        json.dumps(
            [
                {"action": {"tool": "edit_file", "args": edit}},
                {"action": {"tool": "finish", "args": {"answer": "done"}}},
            ]
        )
    )
    settings = make_settings(workspace=volumes / "demo_workspace", log_dir=volumes / "demo_logs")
    code = run_task(
        settings, "fix", scripted=str(script), log=None, quiet=True, subdir="proj", run_id="r1"
    )
    assert code == 0
    text, _ = workspace.run_diff(access, "r1", None)
    assert "-    return a - b\n+    return a + b\n" in text
    (tmp_path / "fix.patch").write_text(text)
    _git(repo, "apply", str(tmp_path / "fix.patch"))
    assert "a + b" in (repo / "pkg" / "calc.py").read_text()
    workspace.rewind(access, "r1", 0)
    restored = volumes / "demo_workspace" / "proj" / "pkg" / "calc.py"
    assert restored.read_text() == "def add(a, b):\n    return a - b\n"
    calls = [json.loads(line) for line in (tmp_path / "podman.log").read_text().splitlines()]
    diff_call = next(call for call in calls if "diff" in call)
    assert "demo_logs:/logs:ro" in diff_call
    steps = workspace.step_diffs(access, "r1")
    assert list(steps) == [1]
    assert "-    return a - b\n+    return a + b\n" in steps[1]
    calls = [json.loads(line) for line in (tmp_path / "podman.log").read_text().splitlines()]
    assert "demo_logs:/logs:ro" in next(call for call in calls if "diffs" in call)
    assert not any(arg.startswith("demo_workspace") for arg in diff_call)
