"""The evaluation's figures, per model and per task, and the files that show them.

For each model, and each task of each model: runs, passed, pass rate, mean steps, mean
tokens, mean wall time and the end reasons (``status``, with what the loop ended with
when a check decided: ``failed (finished)``). Written as ``eval.json`` (the figures and
every run), ``eval.md`` (Markdown tables) and ``eval.png`` (pass rate against mean wall
time, one point per task and model).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sandboxctl.eval.png import BLACK, GREY, PALETTE, Canvas
from sandboxctl.eval.runner import Outcome

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


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``value``."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if step * power >= value:
            return float(step * power)
    return float(10 * power)


def chart(summary: dict[str, Any], tasks: Sequence[str], title: str = "") -> Canvas:
    """Pass rate (y) against mean wall time (x) per task, one colour per model; each point
    is labelled with the task's number, listed on the right."""
    width, height = 960, 600
    left, right, top, bottom = 70, 700, 50, 530
    canvas = Canvas(width, height)
    canvas.text(left, 15, title or "PASS RATE AGAINST MEAN WALL TIME PER TASK", BLACK, 2)
    points = [
        (model, task, f["wall_s_mean"], f["pass_rate"])
        for model, data in summary.items()
        for task, f in data["tasks"].items()
    ]
    x_max = _nice_ceiling(max([p[2] for p in points] + [0.0]) * 1.05)
    for step in range(5):  # horizontal grid: 0, 25, 50, 75, 100 %
        y = bottom - (bottom - top) * step // 4
        canvas.line(left, y, right, y, GREY)
        label = f"{25 * step}%"
        canvas.text(left - 8 - Canvas.text_width(label), y - 3, label)
    for step in range(6):
        x = left + (right - left) * step // 5
        canvas.line(x, bottom, x, bottom + 4, BLACK)
        value = x_max * step / 5
        label = f"{value:g}" if value >= 10 or value == 0 else f"{value:.1f}"
        canvas.text(x - Canvas.text_width(label) // 2, bottom + 8, label)
    canvas.line(left, top, left, bottom, BLACK)
    canvas.line(left, bottom, right, bottom, BLACK)
    canvas.text((left + right) // 2 - 90, bottom + 25, "MEAN WALL TIME PER RUN (S)")
    canvas.text(8, top - 18, "PASS RATE")
    number = {task: index + 1 for index, task in enumerate(tasks)}
    colors = {model: PALETTE[i % len(PALETTE)] for i, model in enumerate(summary)}
    stacked: Counter[tuple[int, int]] = Counter()
    for model, task, wall, rate in points:
        x = left + round((right - left) * wall / x_max)
        y = bottom - round((bottom - top) * rate)
        canvas.disc(x, y, 5, colors[model])
        offset = stacked[(x // 12, y // 10)]  # labels of coinciding points side by side
        stacked[(x // 12, y // 10)] += 1
        canvas.text(x + 8 + 18 * offset, y - 3, str(number[task]), colors[model])
    y = top
    for model, color in colors.items():
        canvas.rect(right + 30, y, right + 40, y + 8, color)
        canvas.text(right + 48, y + 1, model[:36], BLACK)
        y += 16
    y += 10
    for task, index in number.items():
        canvas.text(right + 30, y, f"{index:>2} {task}"[:40], BLACK)
        y += 12
    return canvas


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
    chart(summary, tasks).save(paths[2])
    return summary, paths
