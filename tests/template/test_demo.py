"""`invoke demo` works in the sandbox it renders, not in the folder it was started from."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from invoke.config import Config
from invoke.context import Context

from sandboxctl.tasks import stack

FAKE_INVOKE = """#!/bin/sh
printf '%s\\n' "$(pwd)|$*" >> "$DEMO_LOG"
"""


def test_demo_runs_up_and_one_task_inside_the_rendered_sandbox_fake_invoke(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fake `invoke` on PATH records where and how the demo calls it: `up`, then `run`
    with the demo task, both in the rendered sandbox (the real chain runs in tests/e2e)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "invoke").write_text(FAKE_INVOKE)
    (bin_dir / "invoke").chmod(0o755)
    log = tmp_path / "calls.txt"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DEMO_LOG", str(log))
    dest = tmp_path / "demo"

    stack.demo(Context(Config()), dest=str(dest))

    calls = [line.split("|", 1) for line in log.read_text().splitlines()]
    assert [Path(cwd) for cwd, _ in calls] == [dest.resolve(), dest.resolve()]
    assert [args for _, args in calls] == ["up", f"run {stack.DEMO_TASK}"]
    # The last line names a command that works as printed: the demo folder's own
    # bootstrap.sh (executable), not an `invoke` no one has on PATH.
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.endswith(f"stop it with `cd {dest} && ./bootstrap.sh invoke down`")
    assert os.access(dest / "bootstrap.sh", os.X_OK)
