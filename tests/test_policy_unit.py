"""The legal core on its own: ``policy.decide`` is pure, so each reason footage stays on the camera (or
leaves it) is tested here in microseconds, without a camera, a journal or a bucket. The end-to-end
tests (test_scope_reasons.py, test_clock_evidence.py) check the same rules through real dockings."""

from __future__ import annotations

import pytest

from bodycam.agent.pipeline import policy
from bodycam.agent.pipeline.clocks import Placement
from bodycam.agent.pipeline.policy import Exercise, decide
from bodycam.drivers.protocol.messages import Category, RecordingInfo

T0 = 1_800_000_000.0  # 2027-01-15, a time a set clock can show
HOUR = 3600.0
SERIAL = "CAM-P1"
EXERCISE = Exercise("EX-1", "range", T0, T0 + 4 * HOUR, frozenset({SERIAL}))
PLACED = Placement(0.0, "clock epoch 1")


def rec(start: float, end: float, category: Category = Category.TRAINING) -> RecordingInfo:
    """A recording stamped ``start``..``end`` in camera seconds."""
    return RecordingInfo(7, 1024, round(start * 1e6), round(end * 1e6), category, bytes(32), "r.mp4", 1)


def test_training_footage_inside_the_window_of_its_cameras_exercise_leaves() -> None:
    d = decide(rec(T0 + HOUR, T0 + 2 * HOUR), SERIAL, PLACED, [EXERCISE])
    assert d.in_scope and d.code == policy.IN_WINDOW and d.exercise_id == "EX-1"
    assert (d.start, d.end) == (T0 + HOUR, T0 + 2 * HOUR) and d.nearest is None


def test_the_window_is_inclusive_at_both_edges_and_the_whole_recording_must_fit() -> None:
    assert decide(rec(T0, T0 + 4 * HOUR), SERIAL, PLACED, [EXERCISE]).in_scope
    late = decide(rec(T0 + 3 * HOUR, T0 + 4 * HOUR + 1), SERIAL, PLACED, [EXERCISE])
    assert not late.in_scope and late.code == policy.OUTSIDE_WINDOW


def test_the_clock_offset_in_force_places_camera_time_before_the_window_is_checked() -> None:
    fast = Placement(600.0, "clock epoch 1")  # the camera's clock ran 10 min ahead when it stamped
    d = decide(rec(T0 + 4 * HOUR + 300, T0 + 4 * HOUR + 500), SERIAL, fast, [EXERCISE])
    assert d.in_scope and (d.start, d.end) == (T0 + 4 * HOUR - 300, T0 + 4 * HOUR - 100)
    slow = Placement(-600.0, "offset at first listing")  # 10 min behind: stamped inside, truly after
    late = decide(rec(T0 + 4 * HOUR - 300, T0 + 4 * HOUR - 100), SERIAL, slow, [EXERCISE])
    assert not late.in_scope and late.code == policy.OUTSIDE_WINDOW


@pytest.mark.parametrize("placement", [PLACED, Placement(None, "clock not placeable: x")])
def test_operational_footage_stays_even_inside_a_window_and_before_its_clock_is_looked_at(
    placement: Placement,
) -> None:
    d = decide(rec(T0 + HOUR, T0 + 2 * HOUR, Category.OPERATIONAL), SERIAL, placement, [EXERCISE])
    assert not d.in_scope and d.code == policy.OPERATIONAL and d.exercise_id is None


def test_an_unknown_tag_is_not_operational_and_still_needs_the_window() -> None:
    """docs/decisions.md: unknown category tags are treated as not operational, subject to the window."""
    inside = decide(rec(T0 + HOUR, T0 + 2 * HOUR, Category.UNKNOWN), SERIAL, PLACED, [EXERCISE])
    assert inside.in_scope and inside.exercise_id == "EX-1"
    outside = decide(rec(T0 - 2 * HOUR, T0 - HOUR, Category.UNKNOWN), SERIAL, PLACED, [EXERCISE])
    assert not outside.in_scope and outside.code == policy.OUTSIDE_WINDOW


@pytest.mark.parametrize(
    "reason",
    [
        "clock not placeable: this dock never measured clock epoch 3 of the camera",
        "clock not placeable: the camera clock was invalid (RTC reset) in epoch 2",
        "clock not placeable: the camera clock was invalid when this dock first listed it",
    ],
)
def test_a_time_that_cannot_be_placed_is_in_no_window_and_says_why(reason: str) -> None:
    d = decide(rec(T0 + HOUR, T0 + 2 * HOUR), SERIAL, Placement(None, reason), [EXERCISE])
    assert not d.in_scope and d.code == policy.CLOCK_UNPLACEABLE and d.reason == reason
    assert d.exercise_id is None and d.nearest is None


def test_a_camera_in_no_registered_exercise_keeps_its_footage() -> None:
    assert decide(rec(T0 + HOUR, T0 + 2 * HOUR), SERIAL, PLACED, []).code == policy.NO_EXERCISE
    others = Exercise("EX-2", "range", T0, T0 + 4 * HOUR, frozenset({"CAM-OTHER"}))
    d = decide(rec(T0 + HOUR, T0 + 2 * HOUR), SERIAL, PLACED, [others])  # the window fits, the camera is not in it
    assert not d.in_scope and d.code == policy.NO_EXERCISE and d.nearest is None


def test_outside_every_window_names_the_nearest_miss_only_among_the_cameras_own_exercises() -> None:
    later = Exercise("EX-3", "range", T0 + 10 * HOUR, T0 + 12 * HOUR, frozenset({SERIAL}))
    unrelated = Exercise("EX-4", "range", T0 + 5 * HOUR, T0 + 6 * HOUR, frozenset({"CAM-OTHER"}))
    d = decide(rec(T0 + 5 * HOUR, T0 + 6 * HOUR), SERIAL, PLACED, [EXERCISE, later, unrelated])
    assert not d.in_scope and d.code == policy.OUTSIDE_WINDOW and d.exercise_id is None
    assert d.nearest == policy.Miss("EX-1", 2 * HOUR, "after")  # ends 2 h after EX-1 closes; EX-3 is 4 h off
    early = decide(rec(T0 - 30, T0 + 60), SERIAL, PLACED, [EXERCISE, later])
    assert early.nearest == policy.Miss("EX-1", 30.0, "before")


def test_with_several_exercises_the_one_whose_window_holds_the_recording_is_named() -> None:
    later = Exercise("EX-3", "range", T0 + 10 * HOUR, T0 + 12 * HOUR, frozenset({SERIAL}))
    d = decide(rec(T0 + 11 * HOUR, T0 + 11.5 * HOUR), SERIAL, PLACED, [EXERCISE, later])
    assert d.in_scope and d.exercise_id == "EX-3"


def test_every_out_of_scope_code_is_a_stay_reason_and_none_names_a_site_or_window() -> None:
    """The code goes into custody and the bucket's custody segment: ids only, never the site or a time."""
    cases = [
        decide(rec(T0, T0 + 1, Category.OPERATIONAL), SERIAL, PLACED, [EXERCISE]),
        decide(rec(T0, T0 + 1), SERIAL, Placement(None, "clock not placeable: x"), [EXERCISE]),
        decide(rec(T0, T0 + 1), SERIAL, PLACED, []),
        decide(rec(T0 - 10, T0 + 1), SERIAL, PLACED, [EXERCISE]),
    ]
    assert sorted(d.code for d in cases) == sorted(set(policy.STAY_REASONS) - {policy.NO_AGREEMENT})
    for d in cases:
        assert not d.in_scope and "range" not in d.reason and "EX-1" not in d.reason
