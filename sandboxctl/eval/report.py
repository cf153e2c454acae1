"""The evaluation's figures, per model and per task, and the files that show them.

For each model, and each task of each model: runs, passed, pass rate, mean steps, mean
tokens, mean wall time and the end reasons (``status``, with what the loop ended with
when a check decided: ``failed (finished)``). Written as ``eval.json`` (the figures and
every run), ``eval.md`` (Markdown tables) and ``eval.png`` (pass rate against mean wall
time, one point per task and model).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandboxctl import _chart
from sandboxctl.eval.runner import Outcome

if TYPE_CHECKING:
    from PIL import Image

FILES = ("eval.json", "eval.md", "eval.png")


def end_reason(outcome: Outcome) -> str:
    """``status``, with the loop's own end when a check decided (``failed (finished)``)."""
    if outcome.agent_status:
        return f"{outcome.status} ({outcome.agent_status})"
    return outcome.status


def figures(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Runs, passed, pass rate, mean steps, tokens and wall time, and end reasons."""
    runs = len(outcomes)
    passed = sum(o.passed for o in outcomes)

    def mean(values: list[float]) -> float:
        return round(sum(values) / len(values), 3) if values else 0.0

    return {
        "runs": runs,
        "passed": passed,
        "pass_rate": round(passed / runs, 4) if runs else 0.0,
        "steps_mean": mean([o.steps for o in outcomes]),
        "tokens_mean": mean([o.tokens for o in outcomes]),
        "wall_s_mean": mean([o.wall_s for o in outcomes]),
        "end_reasons": dict(Counter(end_reason(o) for o in outcomes).most_common()),
    }


def summarize(outcomes: Sequence[Outcome], tasks: Sequence[str]) -> dict[str, Any]:
    """Figures per model (``all``) and per model and task, in plan order."""
    models: dict[str, Any] = {}
    for model in dict.fromkeys(o.model for o in outcomes):
        mine = [o for o in outcomes if o.model == model]
        models[model] = {
            "all": figures(mine),
            "tasks": {
                task: figures([o for o in mine if o.task == task])
                for task in tasks
                if any(o.task == task for o in mine)
            },
        }
    return models


def _percent(rate: float) -> str:
    return f"{100 * rate:.0f}%"


def _reasons(reasons: dict[str, int]) -> str:
    return ", ".join(f"{name} x{count}" for name, count in reasons.items())


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    """The figures as Markdown: one table per model and task, one of the models' totals."""
    lines = [
        f"# Evaluation {meta.get('stamp', '')}",
        "",
        f"{meta.get('tasks', '?')} tasks x {meta.get('repeat', '?')} runs per model; "
        "passed = the task's check exited 0 after the run.",
        "",
        "| model | pass rate | passed/runs | steps | tokens | wall s | end reasons |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for model, data in summary.items():
        f = data["all"]
        lines.append(
            f"| {model} | {_percent(f['pass_rate'])} | {f['passed']}/{f['runs']} | "
            f"{f['steps_mean']:.1f} | {f['tokens_mean']:.0f} | {f['wall_s_mean']:.1f} | "
            f"{_reasons(f['end_reasons'])} |"
        )
    lines += [
        "",
        "| model | task | pass rate | passed/runs | steps | tokens | wall s | end reasons |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for model, data in summary.items():
        for task, f in data["tasks"].items():
            lines.append(
                f"| {model} | {task} | {_percent(f['pass_rate'])} | {f['passed']}/{f['runs']} | "
                f"{f['steps_mean']:.1f} | {f['tokens_mean']:.0f} | {f['wall_s_mean']:.1f} | "
                f"{_reasons(f['end_reasons'])} |"
            )
    return "\n".join(lines) + "\n"


def chart(summary: dict[str, Any], tasks: Sequence[str], title: str = "") -> Image.Image:
    """Pass rate (y) against mean wall time (x) per task, one colour per model; each point
    is labelled with the task's number, listed on the right. Labels of points that
    coincide sit side by side rather than on top of each other."""
    width, height = 960, 600
    left, right, top, bottom = 70, 700, 50, 530
    image, draw = _chart.canvas(width, height)
    small, large = _chart.font(12), _chart.font(15)
    draw.text((left, 14), title or "Pass rate against mean wall time per task", _chart.BLACK, large)
    points = [
        (model, task, f["wall_s_mean"], f["pass_rate"])
        for model, data in summary.items()
        for task, f in data["tasks"].items()
    ]
    x_ticks = _chart.axis_ticks(max([p[2] for p in points] + [0.0]) * 1.05)
    x_max = x_ticks[-1]
    for step in range(5):  # horizontal grid: 0, 25, 50, 75, 100 %
        y = bottom - (bottom - top) * step // 4
        draw.line((left, y, right, y), _chart.GREY)
        draw.text((left - 8, y), f"{25 * step}%", _chart.BLACK, small, anchor="rm")
    for value in x_ticks:
        x = left + round((right - left) * value / x_max)
        draw.line((x, bottom, x, bottom + 4), _chart.BLACK)
        draw.text((x, bottom + 8), _chart.tick_label(value), _chart.BLACK, small, anchor="mt")
    draw.line((left, top, left, bottom), _chart.BLACK)
    draw.line((left, bottom, right, bottom), _chart.BLACK)
    draw.text(((left + right) // 2, bottom + 30), "mean wall time per run (s)", _chart.BLACK,
              small, anchor="mt")  # fmt: skip
    draw.text((8, top - 20), "pass rate", _chart.BLACK, small)
    number = {task: index + 1 for index, task in enumerate(tasks)}
    colors = {model: _chart.PALETTE[i % len(_chart.PALETTE)] for i, model in enumerate(summary)}
    placed = [
        (
            model,
            task,
            left + round((right - left) * wall / x_max),
            bottom - round((bottom - top) * rate),
        )
        for model, task, wall, rate in points
    ]
    taken: list[_chart.Box] = []  # discs and labels drawn so far
    for model, _, x, y in placed:  # every disc first, so no label covers one
        taken.append((x - 5, y - 5, x + 5, y + 5))
        draw.ellipse(taken[-1], colors[model])
    for model, task, x, y in placed:
        label = str(number[task])
        box = _chart.free_label_box(draw, small, label, (x + 8, y), taken, (top - 12, bottom + 6))
        taken.append(box)
        draw.text(box[:2], label, colors[model], small)
    y = top
    for model, color in colors.items():
        draw.rectangle((right + 30, y, right + 40, y + 10), color)
        draw.text((right + 48, y - 1), model[:36], _chart.BLACK, small)
        y += 18
    y += 10
    for task, index in number.items():
        draw.text((right + 30, y), f"{index:>2} {task}"[:40], _chart.BLACK, small)
        y += 15
    return image


def write(
    directory: Path, outcomes: Sequence[Outcome], tasks: Sequence[str], meta: dict[str, Any]
) -> tuple[dict[str, Any], list[Path]]:
    """Write ``eval.json``, ``eval.md`` and ``eval.png`` into ``directory``; return the
    summary and the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    summary = summarize(outcomes, tasks)
    data = {"meta": meta, "models": summary, "runs": [o.to_dict() for o in outcomes]}
    paths = [directory / name for name in FILES]
    paths[0].write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    paths[1].write_text(markdown(summary, meta), encoding="utf-8")
    chart(summary, tasks).save(paths[2], format="PNG")
    return summary, paths
