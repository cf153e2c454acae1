"""Every way out of the workspace is refused and nothing outside is touched."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from sandbox_supervisor.tools import InProcessExecutor, Limits, ToolRequest, Workspace


def _snapshot(directory: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(directory)): (
            p.lstat().st_mtime_ns,
            p.read_bytes() if p.is_file() else b"",
        )
        for p in sorted(directory.rglob("*"))
    }


def _call(executor: InProcessExecutor, name: str, **arguments: object) -> tuple[str, str]:
    result = executor.execute(ToolRequest("c1", name, dict(arguments)))
    return result.status, result.output


@pytest.fixture
def links(workspace: Workspace, outside: Path) -> Workspace:
    """Links planted in the workspace: to an outside file, dir, and a dangling one."""
    root = workspace.root
    (root / "to_secret").symlink_to(outside / "secret.txt")
    (root / "linked_dir").symlink_to(outside)
    (root / "dangling").symlink_to(outside / "would_be_created.txt")
    return workspace


ESCAPES = [
    ("read_file", {"path": "../../etc/passwd"}),
    ("read_file", {"path": "../outside/secret.txt"}),
    ("read_file", {"path": "/etc/passwd"}),
    ("read_file", {"path": "to_secret"}),
    ("read_file", {"path": "linked_dir/secret.txt"}),
    ("read_file", {"path": "dangling"}),
    ("read_file", {"path": "a\x00b"}),
    ("read_file", {"path": "a/" * 2500}),
    ("write_file", {"path": "../../etc/passwd", "content": "x"}),
    ("write_file", {"path": "/tmp/escaped.txt", "content": "x"}),
    ("write_file", {"path": "to_secret", "content": "overwritten"}),
    ("write_file", {"path": "linked_dir/secret.txt", "content": "overwritten"}),
    ("write_file", {"path": "linked_dir/new.txt", "content": "created"}),
    ("write_file", {"path": "dangling", "content": "created outside"}),
    ("write_file", {"path": "x\x00y", "content": "x"}),
    ("write_file", {"path": "d" * 5000, "content": "x"}),
    ("list_dir", {"path": "linked_dir"}),
    ("list_dir", {"path": ".."}),
    ("search_text", {"pattern": "touch", "path": "linked_dir"}),
    ("search_text", {"pattern": "touch", "path": "../outside"}),
]


@pytest.mark.parametrize(
    ("tool", "arguments"), ESCAPES, ids=[f"{t}:{a['path'][:30]!r}" for t, a in ESCAPES]
)
def test_escape_is_refused_and_outside_untouched(
    links: Workspace,
    outside: Path,
    executor: InProcessExecutor,
    tool: str,
    arguments: dict[str, Any],
) -> None:
    before = _snapshot(outside)
    status, output = _call(executor, tool, **arguments)
    assert status == "refused", output
    assert "do not touch" not in output
    assert _snapshot(outside) == before
    assert not Path("/tmp/escaped.txt").exists()


def test_path_of_5000_characters_is_refused(executor: InProcessExecutor) -> None:
    status, output = _call(executor, "read_file", path="x" * 5000)
    assert status == "refused"
    assert "longer than" in output


def test_nul_byte_is_refused(executor: InProcessExecutor) -> None:
    status, output = _call(executor, "write_file", path="ok.txt\x00.sh", content="x")
    assert status == "refused"
    assert "NUL" in output


def test_dangling_link_target_is_not_created(
    links: Workspace, outside: Path, executor: InProcessExecutor
) -> None:
    _call(executor, "write_file", path="dangling", content="x")
    assert not (outside / "would_be_created.txt").exists()
    assert (links.root / "dangling").is_symlink()


def test_link_inside_the_workspace_is_followed(
    workspace: Workspace, executor: InProcessExecutor
) -> None:
    (workspace.root / "real.txt").write_text("inside\n")
    (workspace.root / "alias").symlink_to("real.txt")
    assert _call(executor, "read_file", path="alias") == ("ok", "inside\n")


@pytest.mark.parametrize("directory", [".git", ".devcontainer", ".vscode"])
def test_writes_into_protected_directories_are_refused(
    workspace: Workspace, executor: InProcessExecutor, directory: str
) -> None:
    status, output = _call(executor, "write_file", path=f"{directory}/config", content="x")
    assert status == "refused"
    assert "protected" in output
    assert not (workspace.root / directory).exists()


def test_protected_writes_allowed_when_configured(workspace: Workspace) -> None:
    allowed = InProcessExecutor(Workspace.open(workspace.root, allow_protected_writes=True))
    assert _call(allowed, "write_file", path=".vscode/settings.json", content="{}")[0] == "ok"
    assert (workspace.root / ".vscode" / "settings.json").read_text() == "{}"


def test_write_is_atomic_and_leaves_no_temporary_file(
    workspace: Workspace, executor: InProcessExecutor
) -> None:
    target = workspace.root / "sub" / "f.txt"
    assert _call(executor, "write_file", path="sub/f.txt", content="one")[0] == "ok"
    inode = target.stat().st_ino
    assert _call(executor, "write_file", path="sub/f.txt", content="two")[0] == "ok"
    assert target.read_text() == "two"
    assert target.stat().st_ino != inode  # replaced by rename, not rewritten in place
    assert os.listdir(target.parent) == ["f.txt"]


def test_write_over_the_size_cap_is_refused(workspace: Workspace) -> None:
    small = InProcessExecutor(workspace, Limits(write_cap_bytes=10))
    status, _ = _call(small, "write_file", path="big.txt", content="x" * 11)
    assert status == "refused"
    assert not (workspace.root / "big.txt").exists()


def test_read_over_the_cap_keeps_head_and_tail(workspace: Workspace) -> None:
    (workspace.root / "big.txt").write_text("H" * 3000 + "M" * 10_000 + "T" * 3000)
    capped = InProcessExecutor(workspace, Limits(read_cap_bytes=2048))
    status, output = _call(capped, "read_file", path="big.txt")
    assert status == "ok"
    assert output.startswith("H" * 1024)
    assert output.endswith("T" * 1024)
    assert "[truncated 13952 bytes]" in output
