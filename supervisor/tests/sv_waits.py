"""Waiting in tests: on a condition with a deadline, never a fixed sleep (a sleep passes or
fails by how loaded the machine is)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    condition: Callable[[], bool], timeout_s: float = 10.0, every_s: float = 0.02
) -> bool:
    """Poll ``condition`` until it is true or ``timeout_s`` has passed; return its last
    value (so ``assert wait_until(...)`` fails only when it never became true)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return condition()
        time.sleep(every_s)
    return True
