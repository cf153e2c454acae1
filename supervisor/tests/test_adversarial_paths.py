"""Escapes from the workspace, static and raced: every one refused, nothing outside touched.

The outside neighbour holds ``secret.txt`` ("do not touch"). An attempt *escapes* when
a tool returns that text, or when anything outside changes (a file written, replaced
or created, a temporary file left). The races run a second process that swaps a
directory for a link to the outside as fast as it can while the tools work on that
path, for a bounded number of calls.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox_supervisor.tools import InProcessExecutor, Limits, ToolRequest, ToolResult, Workspace

SECRET = "do not touch"
RACE_CALLS = 400  # per tool


def _call(executor: InProcessExecutor, name: str, **args: object) -> ToolResult:
    return executor.execute(ToolRequest("c", name, dict(args)))


def _outside_state(outside: Path) -> dict[str, bytes]:
    return {str(p.relative_to(outside)): p.read_bytes() for p in outside.rglob("*") if p.is_file()}


@pytest.fixture
def trap(workspace: Workspace, outside: Path) -> Workspace:
    """A workspace full of ways out: links in every shape, a hard link, protected dirs."""
    root = workspace.root
    (root / "sub" / ".git" / "hooks").mkdir(parents=True)
    (root / "a" / "b").mkdir(parents=True)
    (root / "to_secret").symlink_to(outside / "secret.txt")
    (root / "rel_out").symlink_to("../outside")
    (root / "a" / "b" / "up").symlink_to("../../../outside")
    (root / "abs_via_root").symlink_to(f"{root}/../outside")
    (root / "chain1").symlink_to("chain2")
    (root / "chain2").symlink_to("rel_out")
    (root / "loop1").symlink_to("loop2")
    (root / "loop2").symlink_to("loop1")
    (root / "dangling").symlink_to(outside / "created_by_write.txt")
    (root / "git_alias").symlink_to("sub/.git")
    (root / "root_alias").symlink_to(".")
    os.link(outside / "secret.txt", root / "hardlinked.txt")
    return workspace


ESCAPES: list[tuple[str, dict[str, object]]] = [
    ("read_file", {"path": "to_secret"}),
    ("read_file", {"path": "rel_out/secret.txt"}),
    ("read_file", {"path": "a/b/up/secret.txt"}),
    ("read_file", {"path": "abs_via_root/secret.txt"}),
    ("read_file", {"path": "chain1/secret.txt"}),
    ("read_file", {"path": "loop1"}),
    ("read_file", {"path": "hardlinked.txt"}),
    ("read_file", {"path": "../outside/secret.txt"}),
    ("read_file", {"path": "a/../../outside/secret.txt"}),
    ("read_file", {"path": "root_alias/../outside/secret.txt"}),
    ("read_file", {"path": "/etc/passwd"}),
    ("read_file", {"path": "~/secret.txt"}),
    ("read_file", {"path": "x\x00y"}),
    ("read_file", {"path": "../" * 1500 + "outside/secret.txt"}),
    ("list_dir", {"path": "rel_out"}),
    ("list_dir", {"path": "a/b/up"}),
    ("list_dir", {"path": "chain1"}),
    ("search_text", {"pattern": "touch", "path": "rel_out"}),
    ("search_text", {"pattern": "touch", "path": "a/b/up"}),
    ("search_text", {"pattern": "touch", "path": "hardlinked.txt"}),
    ("search_text", {"pattern": "t.uch", "path": "chain1", "regex": True}),
    ("write_file", {"path": "to_secret", "content": "overwritten"}),
    ("write_file", {"path": "rel_out/secret.txt", "content": "overwritten"}),
    ("write_file", {"path": "rel_out/new.txt", "content": "created"}),
    ("write_file", {"path": "a/b/up/new/deeper.txt", "content": "created"}),
    ("write_file", {"path": "chain1/new.txt", "content": "created"}),
    ("write_file", {"path": "dangling", "content": "created"}),
    ("write_file", {"path": "hardlinked.txt/../../outside/x", "content": "created"}),
    ("write_file", {"path": "sub/.git/hooks/post-checkout", "content": "#!/bin/sh\n"}),
    ("write_file", {"path": "sub/.git/config", "content": "x"}),
    ("write_file", {"path": "git_alias/hooks/pre-commit", "content": "x"}),
    ("write_file", {"path": "a/.vscode/settings.json", "content": "{}"}),
    ("write_file", {"path": "a/b/.devcontainer/devcontainer.json", "content": "{}"}),
    ("write_file", {"path": ".", "content": "x"}),
    ("write_file", {"path": "loop1/x", "content": "x"}),
    ("view_file", {"path": "to_secret"}),
    ("view_file", {"path": "rel_out/secret.txt"}),
    ("view_file", {"path": "hardlinked.txt"}),
    ("view_file", {"path": "chain1/secret.txt"}),
    ("view_file", {"path": "../" * 1500 + "outside/secret.txt"}),
    ("edit_file", {"path": "to_secret", "old_text": "touch", "new_text": "x"}),
    ("edit_file", {"path": "rel_out/secret.txt", "old_text": "touch", "new_text": "x"}),
    ("edit_file", {"path": "hardlinked.txt", "old_text": "touch", "new_text": "x"}),
    ("edit_file", {"path": "chain1/secret.txt", "old_text": "touch", "new_text": "x"}),
    ("edit_file", {"path": "dangling", "old_text": "a", "new_text": "x"}),
]


def test_every_static_escape_is_refused(
    trap: Workspace, outside: Path, figures: dict[str, str]
) -> None:
    executor = InProcessExecutor(trap, Limits(command_timeout_s=5.0))
    before = _outside_state(outside)
    escaped = []
    for name, args in ESCAPES:
        result = _call(executor, name, **args)
        # A search may answer "ok, no matches"; any other tool must not succeed.
        if SECRET in result.output or (result.status == "ok" and name != "search_text"):
            escaped.append(f"{name} {str(args)[:80]}: {result.status} {result.output[:80]}")
    assert _outside_state(outside) == before, "something outside changed"
    assert not (trap.root / "sub" / ".git" / "hooks" / "post-checkout").exists()
    assert escaped == []
    figures.setdefault("escapes_static", f"{len(ESCAPES) - len(escaped)}/{len(ESCAPES)}")


def test_a_hard_linked_file_is_not_read_but_a_write_replaces_only_the_name(
    trap: Workspace, outside: Path
) -> None:
    executor = InProcessExecutor(trap)
    read = _call(executor, "read_file", path="hardlinked.txt")
    assert read.status == "refused"
    assert "hard links" in read.output
    wrote = _call(executor, "write_file", path="hardlinked.txt", content="mine")
    assert wrote.status == "ok"
    assert (trap.root / "hardlinked.txt").read_text() == "mine"
    assert (outside / "secret.txt").read_text() == SECRET + "\n"


def _remove_deep(top: Path) -> None:
    """Remove a chain of nested ``d`` directories without recursion (pytest's cleanup
    recurses, and would fail on it): lift the child into the parent's place, level by
    level."""
    lifted = top.with_name("lifted")
    while top.exists():
        for entry in top.iterdir():
            if entry.name != "d":
                entry.unlink()
        if (top / "d").exists():
            os.rename(top / "d", lifted)
            top.rmdir()
            os.rename(lifted, top)
        else:
            top.rmdir()


@pytest.fixture
def deep_tree(workspace: Workspace) -> Iterator[Workspace]:
    """The workspace; its 1500-level tree is removed afterwards without recursion."""
    yield workspace
    _remove_deep(workspace.root / "d")


def test_paths_1500_levels_deep_work_without_recursion(deep_tree: Workspace) -> None:
    workspace = deep_tree
    executor = InProcessExecutor(workspace)
    deep = "/".join(["d"] * 1500)
    wrote = _call(executor, "write_file", path=f"{deep}/leaf.txt", content="bottom")
    assert wrote.status == "ok", wrote.output
    assert _call(executor, "read_file", path=f"{deep}/leaf.txt").output == "bottom"
    assert _call(executor, "list_dir", path=deep).output.startswith("leaf.txt")
    found = _call(executor, "search_text", pattern="bottom")
    assert found.status == "ok"
    assert "deeper than" in found.output  # the walk stops at its depth cap, with a note
    up = _call(executor, "read_file", path=f"{deep}/" + "../" * 1500 + "../x")
    assert up.status == "refused"


def test_a_huge_sparse_file_is_read_head_and_tail_only(workspace: Workspace) -> None:
    path = workspace.root / "sparse.bin"
    with path.open("wb") as handle:
        handle.truncate(1 << 40)  # 1 TiB of holes
    executor = InProcessExecutor(workspace, Limits(read_cap_bytes=4096))
    started = time.monotonic()
    result = _call(executor, "read_file", path="sparse.bin")
    assert time.monotonic() - started < 2.0
    assert result.status == "ok"
    assert result.truncated
    assert "[truncated " in result.output


RENAME_EXCHANGE = 2
AT_FDCWD = -100


def _exchange(libc: ctypes.CDLL, first: Path, second: Path) -> None:
    """Swap two names atomically (``renameat2(RENAME_EXCHANGE)``)."""
    if libc.renameat2(AT_FDCWD, bytes(first), AT_FDCWD, bytes(second), RENAME_EXCHANGE) != 0:
        raise OSError(ctypes.get_errno(), "renameat2 failed")


def _swapper(root: Path) -> int:
    """Fork a process that swaps ``root/d`` between a directory and a link to outside,
    atomically, as fast as it can (``d`` always exists: one or the other)."""
    libc = ctypes.CDLL(None, use_errno=True)
    _exchange(libc, root / "d", root / "d_link")  # fails early here, not in the child
    _exchange(libc, root / "d", root / "d_link")
    pid = os.fork()
    if pid:
        return pid
    try:  # pragma: no cover (child)
        while True:
            _exchange(libc, root / "d", root / "d_link")
    finally:
        os._exit(0)


def test_raced_directory_swaps_never_reach_outside(
    workspace: Workspace, outside: Path, figures: dict[str, str]
) -> None:
    root = workspace.root
    (root / "d").mkdir()
    (root / "d" / "secret.txt").write_text("inside\n")
    (root / "d_link").symlink_to(outside)
    before = _outside_state(outside)
    executor = InProcessExecutor(workspace, Limits(search_timeout_s=2.0))
    calls = [
        ("read_file", {"path": "d/secret.txt"}),
        ("write_file", {"path": "d/new.txt", "content": "raced"}),
        ("write_file", {"path": "d/secret.txt", "content": "raced"}),
        ("list_dir", {"path": "d"}),
        ("search_text", {"pattern": "touch", "path": "d"}),
    ]
    attempts = escaped = landed = refused = 0
    pid = _swapper(root)
    try:
        for index in range(RACE_CALLS):
            for name, args in calls:
                if name == "search_text" and index % 5:
                    continue  # searches are slower: fewer of them
                result = _call(executor, name, **args)
                attempts += 1
                landed += result.status == "ok"
                refused += result.status == "refused"
                if SECRET in result.output:
                    escaped += 1
                if name == "list_dir" and "secret.txt\t13" in result.output:
                    escaped += 1  # the outside file's size: the listing was of outside
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    after = _outside_state(outside)
    changed = {k for k in after.keys() | before.keys() if after.get(k) != before.get(k)}
    escaped += len(changed)
    figures["escapes_races"] = (
        f"{attempts - escaped}/{attempts} raced calls stayed inside ({landed} succeeded "
        f"inside, {refused} refused, {len(changed)} outside files changed)"
    )
    assert changed == set(), f"outside changed: {sorted(changed)[:5]}"
    assert escaped == 0
    assert landed > 0, "the race never let a call through: the test would prove nothing"
    assert refused > 0, "the race never showed the link: the test would prove nothing"
