"""What the benchmark and evaluation charts share: a Pillow canvas with its built-in
font, one palette, and value axes that end on a round number.

Pillow is imported when a chart is drawn, not when the tasks load.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image, ImageDraw, ImageFont

Color = tuple[int, int, int]
Box = tuple[float, float, float, float]
"""A rectangle on the canvas: left, top, right, bottom."""

WHITE: Color = (255, 255, 255)
BLACK: Color = (0, 0, 0)
GREY: Color = (200, 200, 200)
PALETTE: tuple[Color, ...] = (
    (31, 119, 180),
    (214, 39, 40),
    (44, 160, 44),
    (255, 127, 14),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
)
"""Colours of the series, in order (the first two: container and host, or the first two
models)."""

AXIS_STEPS = 5
"""Intervals on a value axis: :func:`nice_ceiling` keeps each one a round number."""
NICE_STEPS = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)
"""The multiples of a power of ten an axis may end on (:func:`nice_ceiling`)."""


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten that is at
    least ``value`` (1.0 for nothing to show): the axis's five steps are round numbers too,
    and the bars fill more than half of it."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in NICE_STEPS:
        if step * power >= value:
            return float(step * power)
    return float(10 * power)


def axis_ticks(maximum: float) -> list[float]:
    """The values marked on an axis from 0 to ``nice_ceiling(maximum)``."""
    top = nice_ceiling(maximum)
    return [top * step / AXIS_STEPS for step in range(AXIS_STEPS + 1)]


def tick_label(value: float) -> str:
    """A tick's label: whole numbers without a decimal point, others as short as exact
    (``0.6``, not ``0.6000000000000001``)."""
    return f"{value:g}"


def canvas(width: int, height: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A white RGB image and the pen that draws on it."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), WHITE)
    return image, ImageDraw.Draw(image)


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's built-in scalable font at ``size`` pixels (no font file on the host needed)."""
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def overlap(a: Box, b: Box) -> bool:
    """Whether two boxes share any area (touching edges do not count)."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def free_label_box(
    draw: ImageDraw.ImageDraw,
    font: Any,
    label: str,
    at: tuple[int, int],
    taken: Sequence[Box],
    bounds: tuple[float, float] | None = None,
) -> Box:
    """Where ``label`` goes beside a point: right of ``at`` (left end, vertical middle),
    or the nearest free row above or below it (a column beside a cluster of points),
    within the vertical ``bounds`` (top, bottom); only when the column is full, further
    right. The box overlaps none of the boxes ``taken``; draw the text at its left, top."""
    x: float = at[0]
    _, _, width, height = draw.textbbox((0, 0), label, font=font)
    row = height + 2
    low, high = bounds if bounds is not None else (-1e9, 1e9)

    def box_at(x: float, y: float) -> Box:
        return (x, y, x + width, y + height)

    y0 = at[1] - height / 2
    rows = [y0] + [y0 + sign * k * row for k in range(1, 40) for sign in (-1, 1)]
    rows = [y for y in rows if y >= low and y + height <= high] or [y0]
    while True:
        blocked = []  # per row, the right edge of what is in the way
        for y in rows:
            box = box_at(x, y)
            edges = [other[2] for other in taken if overlap(box, other)]
            if not edges:
                return box
            blocked.append(max(edges))
        x = min(blocked) + 3
