"""The pages' charts as SVG shapes: bars per step (seconds, tokens) and an evaluation's
pass rate against mean wall time, each point a link to its runs.

Only the geometry is computed here (with the axes of :mod:`sandboxctl._chart`, the
benchmark's and the evaluation's PNG charts' own); the templates draw it, so every label
goes through the same escaping as the rest of the page, and an SVG point can be a link,
which a PNG cannot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sandboxctl import _chart


def hex_color(color: _chart.Color) -> str:
    """``#rrggbb`` of a palette colour."""
    return "#{:02x}{:02x}{:02x}".format(*color)


@dataclass(frozen=True)
class Bar:
    """One bar: its box, the step it stands for and its value as shown in its tooltip."""

    x: float
    y: float
    width: float
    height: float
    label: str
    title: str


@dataclass(frozen=True)
class Tick:
    """A value marked on an axis: where, and its label."""

    at: float
    label: str


@dataclass(frozen=True)
class Bars:
    """A bar chart of one value per step."""

    title: str
    width: int
    height: int
    left: int
    bottom: int
    right: int
    top: int
    bars: list[Bar]
    ticks: list[Tick]
    color: str


def bars(title: str, values: Sequence[float], unit: str, color: int = 0) -> Bars:
    """One bar per step (numbered from 1), on an axis from 0 to a round number."""
    width, height = 460, 180
    left, right, top, bottom = 50, width - 10, 26, height - 24
    ticks = _chart.axis_ticks(max([*values, 0.0]))
    top_value = ticks[-1]
    slot = (right - left) / max(1, len(values))
    shown: list[Bar] = []
    for index, value in enumerate(values):
        tall = (bottom - top) * value / top_value
        shown.append(
            Bar(
                x=round(left + index * slot + slot * 0.15, 1),
                y=round(bottom - tall, 1),
                width=round(max(1.0, slot * 0.7), 1),
                height=round(tall, 1),
                label=str(index + 1),
                title=f"step {index + 1}: {value:g} {unit}",
            )
        )
    marks = [
        Tick(round(bottom - (bottom - top) * value / top_value, 1), _chart.tick_label(value))
        for value in ticks
    ]
    return Bars(
        title,
        width,
        height,
        left,
        bottom,
        right,
        top,
        shown,
        marks,
        hex_color(_chart.PALETTE[color % len(_chart.PALETTE)]),
    )


@dataclass(frozen=True)
class Point:
    """One (model, task) of an evaluation: where it is drawn and where it links."""

    x: float
    y: float
    color: str
    label: str
    title: str
    href: str


@dataclass(frozen=True)
class Scatter:
    """Pass rate (y) against mean wall time (x), one point per model and task."""

    width: int
    height: int
    left: int
    bottom: int
    right: int
    top: int
    points: list[Point]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    legend: list[tuple[str, str]]


@dataclass(frozen=True)
class Figure:
    """An evaluation's figure for one model and task, and where its runs are listed."""

    model: str
    task: str
    number: int
    wall_s: float
    pass_rate: float
    href: str


def scatter(figures: Sequence[Figure]) -> Scatter:
    """The evaluation chart: one point per figure, coloured by model, labelled by task."""
    width, height = 720, 420
    left, right, top, bottom = 60, 560, 20, 370
    x_values = _chart.axis_ticks(max([f.wall_s for f in figures] + [0.0]) * 1.05)
    x_max = x_values[-1]
    models = list(dict.fromkeys(f.model for f in figures))
    colors = {
        model: hex_color(_chart.PALETTE[i % len(_chart.PALETTE)]) for i, model in enumerate(models)
    }
    points = [
        Point(
            x=round(left + (right - left) * f.wall_s / x_max, 1),
            y=round(bottom - (bottom - top) * f.pass_rate, 1),
            color=colors[f.model],
            label=str(f.number),
            title=f"{f.model} {f.task}: {100 * f.pass_rate:.0f}% passed, {f.wall_s:.1f} s",
            href=f.href,
        )
        for f in figures
    ]
    x_ticks = [
        Tick(round(left + (right - left) * v / x_max, 1), _chart.tick_label(v)) for v in x_values
    ]
    y_ticks = [Tick(round(bottom - (bottom - top) * s / 4, 1), f"{25 * s}%") for s in range(5)]
    return Scatter(
        width,
        height,
        left,
        bottom,
        right,
        top,
        points,
        x_ticks,
        y_ticks,
        [(model, colors[model]) for model in models],
    )
