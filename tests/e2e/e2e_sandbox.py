"""What the end-to-end tests share: the e2e project, the rendered sandbox and its stack.

Tests import these names from here (``from e2e_sandbox import ...``), never from
``conftest``: pytest loads every folder's conftest under the one name ``conftest``, so an
import of it finds whichever folder's was loaded last. ``conftest.py`` holds the fixtures.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sandboxctl import scaffold

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "e2e-sandbox"
"""Compose project of the e2e stack: fixed, so its image tags and build caches persist."""
TASK = "Create hello.txt containing a greeting."
FIGURES: dict[str, str] = {}
"""Figures the suite measured, written with the outcome to results/e2e.json."""


def trajectory_records(project: str) -> list[dict[str, Any]]:
    """Every record of every trajectory in the project's logs volume (a volume export)."""
    exported = subprocess.run(
        ["podman", "volume", "export", f"{project}_logs"], capture_output=True, check=True
    ).stdout
    records: list[dict[str, Any]] = []
    with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith(".jsonl"):
                handle = tar.extractfile(member)
                assert handle is not None
                records += [json.loads(line) for line in handle.read().decode().splitlines()]
    return records


@dataclass
class E2EStack:
    """The sandbox folder, and what bringing it up and running a task measured."""

    path: Path
    project: str = PROJECT
    """Its Compose project (container, volume and network names start with it)."""
    up_seconds: float = 0.0
    run_seconds: float = 0.0
    run_output: str = ""
    run_code: int = -1
    records: list[dict[str, Any]] = field(default_factory=list)
    """The task's trajectory, read from the logs volume right after `invoke run` (before any
    other test writes its own runs there)."""
    image_sizes: dict[str, int] = field(default_factory=dict)
    """Bytes of each service's image, by service name."""
    figures: dict[str, Any] = field(default_factory=dict)

    def invoke(
        self, *args: str, check: bool = True, timeout: float = 1800
    ) -> subprocess.CompletedProcess[str]:
        """Run `invoke ARGS` in the sandbox, as a user would; output captured."""
        result = subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            cwd=self.path,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"invoke {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        return result

    def podman(self, *args: str) -> str:
        """Run podman and return its stdout; fail the test on error."""
        result = subprocess.run(["podman", *args], capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"podman {' '.join(args)}: {result.stderr}"
        return result.stdout

    def containers(self) -> dict[str, dict[str, Any]]:
        """`podman inspect` of the project's containers, by Compose service name."""
        ids = self.podman(
            "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}"
        ).split()
        if not ids:
            return {}
        data = json.loads(self.podman("inspect", *ids))
        return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in data}

    def container(self, service: str) -> dict[str, Any]:
        """`podman inspect` of one service's container (fails the test when absent)."""
        containers = self.containers()
        assert service in containers, f"no {service} container in {sorted(containers)}"
        return containers[service]

    def exec(
        self, service: str, *command: str, stdin: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run COMMAND in the service's running container (`podman exec`); never raises
        for its exit code."""
        return subprocess.run(
            [
                "podman",
                "exec",
                *(["-i"] if stdin is not None else []),
                self.name(service),
                *command,
            ],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def name(self, service: str) -> str:
        """The container name Compose gives the service's first replica."""
        return f"{self.project}-{service}-1"

    def scripted_run(
        self, label: str, steps: list[dict[str, Any]], timeout: float = 180
    ) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
        """Run the supervisor with a scripted model (no model server needed) through the
        stack's real tools service; return the process and the trajectory's records."""
        script = f"/tmp/{label}.json"
        log = f"/logs/{label}.jsonl"
        written = self.exec("supervisor", "sh", "-c", f"cat > {script}", stdin=json.dumps(steps))
        assert written.returncode == 0, written.stderr
        result = self.exec(
            "supervisor", "sandbox-supervisor", "run", "--scripted", script, "--log", log,
            f"scripted {label}", timeout=timeout,
        )  # fmt: skip
        shown = self.exec("supervisor", "sandbox-supervisor", "show", "--json", log)
        records = [json.loads(line) for line in shown.stdout.splitlines() if line.strip()]
        return result, records

    def volume_path(self, volume: str) -> Path:
        """Where the project's named volume lives on this (rootful, native) host."""
        return Path(
            self.podman(
                "volume", "inspect", "--format", "{{.Mountpoint}}", f"{self.project}_{volume}"
            ).strip()
        )


def render_sandbox(dest: Path) -> Path:
    """Render the template (or copy this rendered sandbox) with the e2e project name."""
    return scaffold.fresh_sandbox(ROOT, dest, PROJECT)
