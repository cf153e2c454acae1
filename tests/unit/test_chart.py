"""The charts' shared parts (sandboxctl._chart): round axes and labels that never cover
each other."""

from __future__ import annotations

import itertools

import pytest

from sandboxctl import _chart


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [(0, 1.0), (-3, 1.0), (0.7, 1.0), (1.0, 1.0), (1.01, 2.0), (2.2, 2.5), (3, 5.0),
     (5.1, 10.0), (176, 200.0), (202, 250.0), (999, 1000.0), (0.031, 0.05)],
)  # fmt: skip
def test_axis_ceiling_is_one_two_two_and_a_half_or_five_times_a_power_of_ten(
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
    assert len(set(labels)) == len(labels)


def test_labels_of_points_at_one_place_sit_side_by_side_without_overlapping() -> None:
    _, draw = _chart.canvas(200, 100)
    font = _chart.font(12)
    taken: list[_chart.Box] = []
    for label in ["1", "12", "3", "14", "5"]:
        taken.append(_chart.free_label_box(draw, font, label, (50, 50), taken))
    assert all(box[0] >= 50 for box in taken)
    assert not any(_chart.overlap(a, b) for a, b in itertools.combinations(taken, 2))


def test_a_label_with_room_goes_right_where_asked() -> None:
    _, draw = _chart.canvas(200, 100)
    far_away: list[_chart.Box] = [(150.0, 0.0, 190.0, 20.0)]
    box = _chart.free_label_box(draw, _chart.font(12), "7", (20, 60), far_away)
    assert box[:2] == (20.0, 53.0)
