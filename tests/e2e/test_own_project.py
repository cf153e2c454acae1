"""Work on your own project, on the real stack: a small Python project with a failing test,
made here as a git checkout, goes into the workspace (`workspace.import`); a run with the
scripted model fixes it with the edit tool and its check passes; `runs.diff` shows exactly
the fix; `runs.patch` applies with `git apply` to the checkout here, whose own
`python -m pytest` then passes; `runs.rewind --step 0` restores the original bytes, and
`workspace.export` brings them back out with their modes. A command of the run tries to
rewrite the record of an earlier step and cannot (the logs volume is not in the tools
container). A hostile project left in the workspace exports without writing outside the
destination, through the real one-shot container."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

from e2e_sandbox import E2EStack
from sandbox_supervisor.treecopy import remove_tree

CALC = '"""A tiny calculator."""\n\n\ndef add(a, b):\n    return a - b\n'
TESTS = (
    "import unittest\n\nfrom calc import add\n\n\n"
    "class AddTest(unittest.TestCase):\n"
    "    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n"
)
FIX = {"path": "calc.py", "old_text": "return a - b", "new_text": "return a + b"}
RUN_ID = "e2e-own-project"
TAMPER = (
    "ls -la /logs; for f in /logs/snapshots/*/steps/*.json /logs/*.jsonl; "
    'do echo forged > "$f" || exit 1; done'
)


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    )


def _checkout(path: Path) -> Path:
    """The user's project: a git checkout whose test fails."""
    path.mkdir()
    (path / "calc.py").write_text(CALC)
    (path / "test_calc.py").write_text(TESTS)
    (path / "run_tests.sh").write_text("#!/bin/sh\npython3 -m pytest -q\n")
    (path / "run_tests.sh").chmod(0o755)
    (path / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n")
    assert _git(path.parent, "init", "-q", str(path)).returncode == 0
    _git(path, "add", ".")
    done = _git(
        path,
        "-c",
        "user.name=e2e",
        "-c",
        "user.email=e2e@example.invalid",
        "commit",
        "-qm",
        "start",
    )
    assert done.returncode == 0, done.stderr
    return path


def _state(root: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mode, p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


def _logs_files(project: str) -> dict[str, bytes]:
    exported = subprocess.run(
        ["podman", "volume", "export", f"{project}_logs"], capture_output=True, check=True
    ).stdout
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
        for member in tar.getmembers():
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is not None:
                found[member.name.removeprefix("./")] = handle.read()
    return found


def test_a_project_goes_in_is_fixed_reviewed_patched_rewound_and_comes_out(
    e2e_stack: E2EStack, tmp_path: Path
) -> None:
    repo = _checkout(tmp_path / "calc-project")
    pristine = _state(repo)
    assert subprocess.run([sys.executable, "-m", "pytest", "-q", str(repo)]).returncode != 0

    imported = e2e_stack.invoke("workspace.import", str(repo), "--name", "calc-project")
    assert "into the workspace as 'calc-project'" in imported.stdout, imported.stdout
    assert "calc-project\t" in e2e_stack.invoke("workspace.list").stdout

    steps: list[dict[str, Any]] = [
        {"action": {"tool": "view_file", "args": {"path": "calc.py"}}},
        {"action": {"tool": "edit_file", "args": FIX}},
        {"action": {"tool": "run_command", "args": {"command": TAMPER}}},
        {"action": {"tool": "run_command", "args": {"command": "git status --short"}}},
        {"action": {"tool": "finish", "args": {"answer": "add adds now"}}},
    ]
    written = e2e_stack.exec(
        "supervisor", "sh", "-c", "cat > /tmp/own.json", stdin=json.dumps(steps)
    )
    assert written.returncode == 0, written.stderr
    run = e2e_stack.exec(
        "supervisor", "sandbox-supervisor", "run", "--scripted", "/tmp/own.json",
        "--run-id", RUN_ID, "--subdir", "calc-project",
        "--check", "python -m unittest -q", "fix the failing test", timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    logs = _logs_files(e2e_stack.project)
    records = [json.loads(line) for line in logs[f"{RUN_ID}.jsonl"].decode().splitlines()]
    end = records[-1]
    assert (end["status"], end["check"]["passed"]) == ("passed", True), end
    results = [r for r in records if r["type"] == "tool_result"]
    assert results[2]["status"] == "failed", results[2]  # the forging command
    assert "M calc.py" in results[3]["output"]  # git works in the tools container
    snapshots = [r for r in records if r["type"] == "snapshot"]
    assert [s["step"] for s in snapshots] == [0, 2, 3, 4]
    first = json.loads(logs[snapshots[0]["record"]])  # step 0 is intact, not "forged"
    digest = hashlib.sha256(CALC.encode()).hexdigest()
    assert first["changed"]["calc.py"][3] == digest

    diff = e2e_stack.invoke("runs.diff", "--id", RUN_ID).stdout
    assert diff == (
        "diff --git a/calc.py b/calc.py\n"
        "--- a/calc.py\n+++ b/calc.py\n@@ -2,4 +2,4 @@\n"
        " \n \n def add(a, b):\n-    return a - b\n+    return a + b\n"
    )
    patch = tmp_path / "fix.patch"
    e2e_stack.invoke("runs.patch", "--id", RUN_ID, "--output", str(patch))
    applied = _git(repo, "apply", str(patch))
    assert applied.returncode == 0, applied.stderr
    host_tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=repo
    )
    assert host_tests.returncode == 0

    e2e_stack.invoke("runs.rewind", "--id", RUN_ID, "--step", "0")
    out = tmp_path / "exported"
    exported = e2e_stack.invoke("workspace.export", "calc-project", str(out))
    assert "left out:" not in exported.stdout, exported.stdout
    assert _state(out) == pristine
    assert (out / ".git" / "HEAD").is_file()


HOSTILE = r"""
import os
os.chdir("/workspace/hostile")
os.symlink("/etc", "etc_link")
os.symlink("../../..", "up")
os.mkfifo("fifo")
with open("sparse.bin", "wb") as f:
    f.truncate(1 << 40)
with open("\x1b]0;owned\x07", "w") as f:
    f.write("x")
with open("ok.txt", "w") as f:
    f.write("ok\n")
os.link("ok.txt", "hard.txt")
fd = os.open(".", os.O_RDONLY)
for _ in range(1500):
    os.mkdir("ddd", dir_fd=fd)
    child = os.open("ddd", os.O_RDONLY, dir_fd=fd)
    os.close(fd)
    fd = child
os.close(os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
"""


def test_a_hostile_project_exports_through_the_real_container_without_escaping(
    e2e_stack: E2EStack, tmp_path: Path
) -> None:
    made = e2e_stack.exec("tools", "mkdir", "-p", "/workspace/hostile")
    assert made.returncode == 0, made.stderr
    planted = e2e_stack.exec("tools", "python3", "-c", HOSTILE)
    assert planted.returncode == 0, planted.stderr
    before = sorted(os.listdir(tmp_path))
    try:
        exported = e2e_stack.invoke(
            "workspace.export", "hostile", str(tmp_path / "out"), timeout=600
        )
        assert sorted(os.listdir(tmp_path)) == sorted([*before, "out"])
        assert sorted(os.listdir(tmp_path / "out")) == ["ddd", "hard.txt", "ok.txt"]
        assert "\x1b" not in exported.stdout
        for name in ("etc_link", "up", "fifo", "sparse.bin"):
            assert f"'{name}'" in exported.stdout + exported.stderr, name
    finally:
        # pytest's own clean-up of old temporary folders recurses and dies on the
        # 1,500-level tree (RecursionError), so it goes now, without recursion
        if (tmp_path / "out").exists():
            fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                remove_tree(fd, "out")
            finally:
                os.close(fd)
        removed = e2e_stack.exec("tools", "python3", "-c", _REMOVE)
        assert removed.returncode == 0, removed.stderr


_REMOVE = (
    "import os\nfrom sandbox_supervisor.treecopy import remove_tree\n"
    "remove_tree(os.open('/workspace', os.O_RDONLY), 'hostile')\n"
)
