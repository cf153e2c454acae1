"""An evaluation's page: its figures (``eval.json`` of ``invoke eval``), its chart with every
point linked to the runs behind it, and those runs found in the logs volume.

``eval.json`` lists every run with the trajectory it wrote (``/logs/eval/STAMP/NAME.jsonl``
in the stack); the run with that file in the logs is the one linked. Evaluations are found
by listing the results folder: a name from a request is only ever compared with that list,
never joined to a path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sandboxctl.errors import SandboxError
from sandboxctl.runview import chart
from sandboxctl.runview.index import run_href
from sandboxctl.stack.runs import Run

STAMP = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")


class EvalViewError(SandboxError, RuntimeError):
    """No such evaluation, or its ``eval.json`` cannot be read; the message says which."""


def stamps(folder: Path) -> list[str]:
    """The evaluations in ``folder`` (``STAMP/eval.json``), newest first."""
    if not folder.is_dir():
        return []
    found = [
        entry.name
        for entry in folder.iterdir()
        if STAMP.fullmatch(entry.name)
        and not entry.is_symlink()
        and (entry / "eval.json").is_file()
    ]
    return sorted(found, reverse=True)


def eval_href(stamp: str) -> str:
    """The server's path of an evaluation's page."""
    return "/eval/" + quote(stamp, safe="")


def load(folder: Path, stamp: str) -> dict[str, Any]:
    """The ``eval.json`` of the evaluation named ``stamp`` (one of :func:`stamps`)."""
    if stamp not in stamps(folder):
        raise EvalViewError(f"no evaluation {stamp!r} in {folder}")
    try:
        data = json.loads((folder / stamp / "eval.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise EvalViewError(f"cannot read {folder / stamp / 'eval.json'}: {error}") from error
    if not isinstance(data, dict):
        raise EvalViewError(f"{folder / stamp / 'eval.json'} is not an evaluation")
    return data


def trajectory_file(log: str) -> str:
    """The path of a run's trajectory inside the logs volume, from ``eval.json``'s ``log``
    (``/logs/eval/S/N.jsonl`` in the stack, ``.../logs/eval/S/N.jsonl`` on a local run)."""
    at = log.rfind("/eval/")
    return log[at + 1 :] if at >= 0 else log.removeprefix("/logs/")


def _percent(rate: Any) -> str:
    return f"{100 * float(rate):.0f}%" if isinstance(rate, int | float) else "?"


def _mean(value: Any, digits: int) -> str:
    return f"{float(value):.{digits}f}" if isinstance(value, int | float) else "?"


def _reasons(reasons: Any) -> str:
    if not isinstance(reasons, dict):
        return ""
    return ", ".join(f"{name} x{count}" for name, count in reasons.items())


@dataclass
class Link:
    """A run behind a point: its label and page (none when its trajectory is missing)."""

    text: str
    href: str = ""


@dataclass
class Group:
    """One model and task: its figures and its runs."""

    number: int
    model_name: str
    task: str
    rate: str
    passed: Any
    runs: Any
    steps: str
    tokens: str
    wall: str
    anchor: str
    links: list[Link] = field(default_factory=list)


def _row(model: str, figures: dict[str, Any]) -> dict[str, Any]:
    return {
        "model_name": model,
        "rate": _percent(figures.get("pass_rate")),
        "passed": figures.get("passed", "?"),
        "runs": figures.get("runs", "?"),
        "steps": _mean(figures.get("steps_mean"), 1),
        "tokens": _mean(figures.get("tokens_mean"), 0),
        "wall": _mean(figures.get("wall_s_mean"), 1),
        "reasons": _reasons(figures.get("end_reasons")),
    }


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def page_values(stamp: str, data: dict[str, Any], runs: Sequence[Run]) -> dict[str, Any]:
    """What the evaluation's template shows: the models' rows, the chart, the groups."""
    models = _dict(data.get("models"))
    meta = _dict(data.get("meta"))
    by_file = {run.file: run for run in runs}
    tasks: list[str] = []
    for figures in models.values():
        tasks += [t for t in _dict(_dict(figures).get("tasks")) if t not in tasks]
    number = {task: index + 1 for index, task in enumerate(tasks)}
    groups: list[Group] = []
    points: list[chart.Figure] = []
    listed = data.get("runs")
    outcomes = [o for o in listed if isinstance(o, dict)] if isinstance(listed, list) else []
    for position, (model, figures) in enumerate(models.items()):
        for task, f in _dict(_dict(figures).get("tasks")).items():
            anchor = f"m{position}-t{number[task]}"
            row = _row(model, _dict(f))
            group = Group(number[task], model, task, row["rate"], row["passed"], row["runs"],
                          row["steps"], row["tokens"], row["wall"], anchor)  # fmt: skip
            for outcome in outcomes:
                if outcome.get("model") != model or outcome.get("task") != task:
                    continue
                label = f"#{outcome.get('repeat', '?')} {outcome.get('status', '?')}"
                run = by_file.get(trajectory_file(str(outcome.get("log") or "")))
                group.links.append(Link(label, run_href(run.run_id) if run else ""))
            groups.append(group)
            if isinstance(f, dict):
                points.append(
                    chart.Figure(
                        model,
                        task,
                        number[task],
                        float(f.get("wall_s_mean") or 0),
                        float(f.get("pass_rate") or 0),
                        f"#{anchor}",
                    )
                )
    meta_line = (
        f"{meta.get('tasks', '?')} tasks x {meta.get('repeat', '?')} runs per model; "
        f"models: {', '.join(str(m) for m in models)}"
    )
    return {
        "stamp": stamp,
        "meta_line": meta_line,
        "model_rows": [_row(m, _dict(_dict(f).get("all"))) for m, f in models.items()],
        "chart": chart.scatter(points),
        "groups": groups,
    }
