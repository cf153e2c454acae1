"""A Stack whose podman and compose are recording fakes (tests of sandboxctl.stack).

Each fake writes its argv to a JSON-lines log and answers the first prefix of its
arguments found in an answers file: ``{"ps -a": [0, "..."]}``.
"""

from __future__ import annotations

import json
from pathlib import Path

from sandboxctl import stack
from sandboxctl._proc import Runner
from sandboxctl.config import load_settings
from sandboxctl.host.engine import Engine, Quirks
from sandboxctl.host.platform import Platform
from sandboxctl.stack.compose import ComposeCommand

ROOT = Path(__file__).resolve().parents[3]
"""The template repository (a sandbox itself: its .env and compose files)."""

RECORDER = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["REC_LOG"], "a") as log:
    log.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + "\\n")
answers = json.loads(open(os.environ["REC_ANSWERS"]).read())
for prefix, (code, out) in answers.items():
    if " ".join(sys.argv[1:]).startswith(prefix):
        sys.stdout.write(out)
        sys.exit(code)
sys.exit(0)
"""


def make_stack(tmp_path: Path, answers: dict[str, tuple[int, str]]) -> tuple[stack.Stack, Path]:
    """A Stack whose podman and compose are recording fakes answering ``answers``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("podman", "compose"):
        (bin_dir / name).write_text(RECORDER)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "calls.jsonl"
    (tmp_path / "answers.json").write_text(json.dumps(answers))
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "REC_LOG": str(log),
        "REC_ANSWERS": str(tmp_path / "answers.json"),
    }
    engine = Engine(
        kind="native",
        docker_host="unix:///run/podman/podman.sock",
        platform=Platform.LINUX,
        rootful=True,
        quirks=Quirks(healthchecks_run=False, selinux_enforcing=False, cgroup_layout="v2"),
        reason="test",
        socket_path=Path("/run/podman/podman.sock"),
    )
    compose = ComposeCommand((str(bin_dir / "compose"),), "standalone", "2.40.3", "compose")
    settings = load_settings(ROOT, require_file=True)
    messages: list[str] = []
    built = stack.Stack(ROOT, settings, engine, compose, Runner(env=env), messages.append)
    return built, log


def calls(log: Path) -> list[list[str]]:
    """The recorded argv lists, tool name first."""
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
