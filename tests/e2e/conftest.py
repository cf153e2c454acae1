"""Fixtures of the end-to-end suite: a sandbox rendered with defaults, its stack brought up
with real Podman and Compose v2, one real agent task run against the tiny model.

Each test gets what it needs from these fixtures, never from a test that ran before it.
The one exception is declared: tests that request :func:`stack_taken_down` run after all
the others (:func:`pytest_collection_modifyitems`), since they end the shared stack.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_sandbox import FIGURES, ROOT, TASK, E2EStack, render_sandbox, trajectory_records

from sandboxctl.checks import milestones


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Record the "end-to-end passed" milestone with the suite's real outcome."""
    if session.testscollected:
        detail = FIGURES.get("detail", "no figures measured")
        milestones.write_result(ROOT, "e2e", passed=exitstatus == 0, detail=detail)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the tests that take the shared stack down after every other test (a stable
    sort: the others keep their order, whatever it is)."""
    items.sort(key=lambda item: "stack_taken_down" in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session")
def rendered_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sandbox rendered with default answers and the e2e project name (no stack)."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `./bootstrap.sh` or `invoke host.prepare`")
    return render_sandbox(tmp_path_factory.mktemp("e2e") / "sandbox")


def measure_figures(stack: E2EStack) -> str:
    """Record the image sizes in ``stack`` and return the e2e's figures in one line."""
    for service, info in stack.containers().items():
        size = stack.podman("image", "inspect", "--format", "{{.Size}}", info["Image"])
        stack.image_sizes[service] = int(size)
    images = ", ".join(
        f"{name} {size / 1e6:.0f} MB" for name, size in sorted(stack.image_sizes.items())
    )
    return (
        f"up {stack.up_seconds:.1f} s (images, model, readiness), "
        f"run {stack.run_seconds:.1f} s; images: {images}"
    )


@pytest.fixture(scope="session")
def e2e_stack(rendered_sandbox: Path) -> Iterator[E2EStack]:
    """`invoke up` (images, model, stack, readiness), `invoke run` one task, then what the
    run left: its trajectory and the figures for results/e2e.json."""
    stack = E2EStack(rendered_sandbox)
    os.environ.pop("DOCKER_HOST", None)
    # Start from nothing of this project: a run killed half-way (a CI timeout, Ctrl-C)
    # leaves its volumes, and stale trajectories would answer the tests' questions.
    stack.invoke("down", "--volumes", "--yes", check=False, timeout=300)
    start = time.monotonic()
    try:
        # `up` rebuilds each image whose inputs (files and build arguments, hashed into its
        # label) changed since it was built, so the stack runs the code under test; an
        # `up --build` would also rebuild the unchanged ones (7 s of cached layers).
        stack.invoke("up", "--timeout", "600")
        stack.up_seconds = time.monotonic() - start
        start = time.monotonic()
        result = stack.invoke("run", TASK, "--max-steps", "3", check=False, timeout=600)
        stack.run_seconds = time.monotonic() - start
        stack.run_output, stack.run_code = result.stdout + result.stderr, result.returncode
        stack.records = trajectory_records(stack.project)
        FIGURES["detail"] = measure_figures(stack)
        print(f"\ne2e figures: {FIGURES['detail']}")
        yield stack
    finally:
        stack.invoke("down", "--volumes", "--yes", check=False, timeout=300)


@pytest.fixture(scope="session")
def stack_taken_down(e2e_stack: E2EStack) -> E2EStack:
    """The shared stack after `invoke down --volumes --yes`; the tests that use it run last."""
    e2e_stack.invoke("down", "--volumes", "--yes")
    return e2e_stack
