"""The plan's rules for the Containerfiles: stage names, and a non-root ``USER`` in the
stage that runs."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandboxctl.plan.spec import PLAN_FILE, Plan, Report, is_root_user, uid_of

_FROM = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?\s*$", re.IGNORECASE)
_USER = re.compile(r"^\s*USER\s+(\S+)", re.IGNORECASE)


@dataclass
class Stage:
    """One stage of a Containerfile."""

    name: str
    parent: str
    line: int
    user: str | None = None
    user_line: int | None = None


def parse_containerfile(text: str) -> list[Stage]:
    """Return the stages of a Containerfile with the last ``USER`` each one sets."""
    stages: list[Stage] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if match := _FROM.match(line):
            name = match.group(2) or str(len(stages))
            stages.append(Stage(name=name, parent=match.group(1), line=number))
        elif (match := _USER.match(line)) and stages:
            stages[-1].user, stages[-1].user_line = match.group(1), number
    return stages


def effective_user(stages: Sequence[Stage], target: str | None) -> tuple[str | None, int | None]:
    """Return the user (and its line) the ``target`` stage (default: last) runs as."""
    by_name = {stage.name: stage for stage in stages}
    stage = by_name.get(target) if target else (stages[-1] if stages else None)
    seen: set[str] = set()
    while stage is not None and stage.name not in seen:
        if stage.user is not None:
            return stage.user, stage.user_line
        seen.add(stage.name)
        stage = by_name.get(stage.parent)
    return None, None


def check_containerfile(
    root: Path, relpath: str, want: Mapping[str, Any], plan_line: int, report: Report
) -> None:
    """Check one Containerfile's stage names and the user its target stage runs as."""
    path = root / relpath
    if not path.is_file():
        report.drift(PLAN_FILE, plan_line, f"{relpath} is missing (the plan builds from it)")
        return
    stages = parse_containerfile(path.read_text(encoding="utf-8"))
    if not stages:
        report.drift(relpath, 1, "no FROM: not a Containerfile")
        return
    if want.get("stages"):
        names = [stage.name for stage in stages]
        if names != [str(stage) for stage in want["stages"]]:
            report.drift(relpath, stages[0].line, f"stages {names}, the plan says {want['stages']}")
    target = want.get("target")
    if target and target not in {stage.name for stage in stages}:
        report.drift(relpath, stages[-1].line, f"no stage {target!r} to build")
        return
    user, line = effective_user(stages, target)
    final_line = next((s.line for s in stages if s.name == target), stages[-1].line)
    if user is None:
        report.drift(relpath, final_line, "no USER: the image runs as root")
    elif is_root_user(user):
        report.drift(relpath, line or final_line, f"USER {user} is root")
    elif "user" in want and user[:1].isdigit() and uid_of(user) != uid_of(str(want["user"])):
        report.drift(relpath, line or final_line, f"USER {user}, the plan says {want['user']}")


def check_containerfiles(root: Path, plan: Plan, present: Iterable[str], report: Report) -> None:
    """Check the Containerfile of each built service: its stages and the user it runs as."""
    present = set(present)
    for name, want in plan.spec["services"].items():
        want = want or {}
        if "containerfile" not in want or (want.get("planned") and name not in present):
            continue
        relpath = str(want["containerfile"])
        check_containerfile(
            root, relpath, want, plan.line("services", name, "containerfile"), report
        )
