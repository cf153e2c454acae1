"""Tasks that keep the work aligned with PLAN.md: plan.check, notes, the issue log, milestones.

Wire them in ``tasks.py`` with :func:`collections` (``plan``, ``notes``, ``issue``) and add
:data:`milestones` as a root task.
"""

from __future__ import annotations

from pathlib import Path

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit

from sandboxctl import plan as plan_
from sandboxctl.checks import milestones as milestones_
from sandboxctl.checks.base import Probes
from sandboxctl.config import find_root
from sandboxctl.host.platform import detect_host
from sandboxctl.journal import issuelog
from sandboxctl.journal import notes as notes_
from sandboxctl.tasks._task import task


def _root() -> Path:
    return find_root()


def _max_open_days(c: Context, given: int) -> int:
    if given > 0:
        return given
    configured = c.config.get("plan", {}).get("max_open_days", plan_.DEFAULT_MAX_OPEN_DAYS)
    return int(configured)


@task(
    help={
        "max_open_days": "Warn about deviations open longer than this many days "
        f"(0: config plan.max_open_days, else {plan_.DEFAULT_MAX_OPEN_DAYS})",
    },
    ranges={"max_open_days": (0, 3650)},
)
def check(c: Context, max_open_days: int = 0) -> None:
    """Compare the repository with PLAN.md; list each drift with file:line."""
    report = plan_.check(_root(), max_open_days=_max_open_days(c, max_open_days))
    for line in plan_.format_report(report):
        print(line)
    if not report.ok:
        raise Exit(code=1)


@task(
    help={
        "text": "What was done, in a sentence or a paragraph",
        "phase": "The plan's phase it belongs to (1-5; 0: none)",
    },
    ranges={"phase": (0, 5)},
)
def add(c: Context, text: str, phase: int = 0) -> None:
    """Append a timestamped note to docs/IMPLEMENTATION_NOTES.md."""
    entry = notes_.add_note(_root(), text, phase=phase or None)
    print(f"appended to {notes_.NOTES_FILE}:{entry.rstrip()}")


@task(
    help={
        "title": "One line naming the deviation from PLAN.md",
        "reason": "Why the work departs from the plan",
        "steps": "What was done about it",
        "resolution": "How it ended (leave out to keep the deviation open)",
    }
)
def log(c: Context, title: str, reason: str, steps: str, resolution: str = "") -> None:
    """Log a deviation from PLAN.md in docs/ISSUE_LOG.md (new DEV-NNNN ID)."""
    new_id = issuelog.log_deviation(
        _root(), title=title, reason=reason, steps=steps, resolution=resolution
    )
    state = "resolved" if resolution.strip() else "open"
    print(f"{new_id} logged in {issuelog.LOG_FILE} ({state})")


@task(
    help={
        "id": "The deviation's ID, e.g. DEV-0001",
        "resolution": "How the deviation ended",
    }
)
def resolve(c: Context, id: str, resolution: str) -> None:
    """Record the resolution of an open deviation in docs/ISSUE_LOG.md."""
    issuelog.resolve_deviation(_root(), id, resolution=resolution)
    print(f"{id.upper()} resolved in {issuelog.LOG_FILE}")


@task()
def milestones(c: Context) -> None:
    """Measure the plan's milestones now and print each one's status."""
    probes = Probes(root=_root(), host=detect_host())
    for line in milestones_.format_statuses(milestones_.measure(probes)):
        print(line)


def collections() -> list[Collection]:
    """Return the ``plan``, ``notes`` and ``issue`` collections for ``tasks.py``."""
    return [
        Collection("plan", check),
        Collection("notes", add),
        Collection("issue", log, resolve),
    ]
