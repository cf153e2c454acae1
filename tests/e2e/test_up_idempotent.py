"""`invoke up` on an unchanged, running stack recreates nothing (issue 12).

Every `up` used to recreate all three containers (Podman 4.3 reports a container's
network by name where Compose expects its ID), killing an agent run in progress.
"""

from __future__ import annotations

from e2e_sandbox import E2EStack


def identities(stack: E2EStack) -> dict[str, tuple[str, str]]:
    """Each service's container ID and start time."""
    return {
        service: (info["Id"], info["State"]["StartedAt"])
        for service, info in stack.containers().items()
    }


def test_second_up_recreates_and_restarts_nothing(e2e_stack: E2EStack) -> None:
    """The same containers, started at the same time, and a line saying so."""
    before = identities(e2e_stack)
    assert sorted(before) == ["model-server", "supervisor", "tools"]
    result = e2e_stack.invoke("up", "--timeout", "300")
    output = result.stdout + result.stderr
    assert identities(e2e_stack) == before
    assert "unchanged and running: nothing recreated" in output
    assert "Recreate" not in output
    # a handful of lines a person reads (images up to date, model loaded, unchanged, ready)
    assert len(output.splitlines()) <= 6, output
