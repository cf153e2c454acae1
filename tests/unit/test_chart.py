"""The charts' shared parts (sandboxctl._chart): round axes and labels that never cover
each other."""

from __future__ import annotations

import itertools

import pytest

from sandboxctl import _chart


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [(0, 1.0), (-3, 1.0), (0.7, 0.8), (1.0, 1.0), (1.01, 1.5), (2.2, 2.5), (3, 3.0),
     (5.1, 6.0), (176, 200.0), (202, 250.0), (541, 600.0), (999, 1000.0), (0.031, 0.04)],
)  # fmt: skip
def test_axis_ceiling_is_a_round_multiple_of_a_power_of_ten_just_above_the_value(
    value: float, ceiling: float
) -> None:
    assert _chart.nice_ceiling(value) == pytest.approx(ceiling)


@pytest.mark.parametrize("maximum", [0.3, 7, 42, 176, 202, 1234.5, 90_000])
def test_axis_ticks_start_at_zero_reach_the_maximum_and_print_short(maximum: float) -> None:
    ticks = _chart.axis_ticks(maximum)
    assert ticks[0] == 0
    assert ticks[-1] >= maximum
    assert len(ticks) == _chart.AXIS_STEPS + 1
    labels = [_chart.tick_label(t) for t in ticks]
    assert all(len(label) <= 6 for label in labels), labels  # never 0.6000000000000001
    assert ticks[-1] < 2 * maximum  # the data fill more than half the axis
    assert len(set(labels)) == len(labels)


def test_labels_of_points_at_one_place_stack_beside_it_without_overlapping() -> None:
    """A cluster's labels form a column right beside it, not a row running off to the
    right where they would sit next to other points."""
    _, draw = _chart.canvas(200, 400)
    font = _chart.font(12)
    taken: list[_chart.Box] = [(45.0, 195.0, 55.0, 205.0)]  # the point's disc
    for label in ["1", "12", "3", "14", "5", "6", "7"]:
        taken.append(_chart.free_label_box(draw, font, label, (58, 200), taken, (0, 400)))
    labels = taken[1:]
    assert all(box[0] == 58 for box in labels)
    assert not any(_chart.overlap(a, b) for a, b in itertools.combinations(taken, 2))


def test_labels_stay_within_the_bounds_and_move_right_only_when_the_column_is_full() -> None:
    _, draw = _chart.canvas(200, 60)
    font = _chart.font(12)
    taken: list[_chart.Box] = []
    for label in ["1", "2", "3", "4", "5", "6"]:
        taken.append(_chart.free_label_box(draw, font, label, (10, 30), taken, (0, 60)))
    assert all(box[1] >= 0 and box[3] <= 60 for box in taken)
    assert any(box[0] > 10 for box in taken)
    assert not any(_chart.overlap(a, b) for a, b in itertools.combinations(taken, 2))


def test_a_label_with_room_goes_right_where_asked() -> None:
    _, draw = _chart.canvas(200, 100)
    far_away: list[_chart.Box] = [(150.0, 0.0, 190.0, 20.0)]
    box = _chart.free_label_box(draw, _chart.font(12), "7", (20, 60), far_away)
    assert box[0] == 20.0
    assert box[1] < 60 < box[3]


def test_a_label_taller_than_its_bounds_is_still_placed() -> None:
    _, draw = _chart.canvas(100, 100)
    taken: list[_chart.Box] = [(0.0, 0.0, 30.0, 100.0)]
    box = _chart.free_label_box(draw, _chart.font(12), "9", (10, 50), taken, (48, 52))
    assert box[0] > 30
