"""The poll schedules: backoff for scripts with no history, and the schedule learned from past durations."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from jobs import polling


def poll_times(duration_limit: float, expected=None, until_deadline=None) -> list[float]:
    """Ages at which a job accepted at 0 would be polled, until `duration_limit`."""
    ages = [polling.first_delay(expected)]
    while ages[-1] < duration_limit:
        ages.append(ages[-1] + polling.next_delay(age=ages[-1], expected=expected, until_deadline=until_deadline))
    return ages


def detection(ages: list[float], finish: float) -> float:
    return next(age for age in ages if age >= finish)


@pytest.mark.parametrize("finish", [0.3, 1.0, 2.7, 9.5, 33.0, 120.0, 1000.0])
def test_backoff_finds_a_first_time_script_within_a_third_of_its_age_or_the_cap(settings, finish):
    settings.JOBS_POLL_INITIAL, settings.JOBS_POLL_FACTOR, settings.JOBS_POLL_CAP = 0.5, 1.5, 10.0
    ages = poll_times(finish + 20)
    seen = detection(ages, finish)
    lag = seen - finish
    assert lag <= max(seen / 3, settings.JOBS_POLL_INITIAL) + 1e-9
    assert lag <= settings.JOBS_POLL_CAP


def test_learning_needs_three_runs_and_reads_median_and_spread():
    assert polling.learn([10.0, 11.0]) is None
    learned = polling.learn([10.0, 10.0, 10.0])
    assert learned.median == pytest.approx(10.0)
    assert learned.spread == polling.MIN_SPREAD
    rng = random.Random(1)
    runs = [100 * math.exp(rng.gauss(0, 0.1)) for _ in range(400)]
    wide = polling.learn(runs)
    assert wide.median == pytest.approx(100, rel=0.03)
    assert wide.spread == pytest.approx(0.1, rel=0.15)


def test_the_learned_schedule_polls_sparsely_before_the_window_and_densely_inside_it(settings):
    settings.JOBS_POLL_LAG_TARGET, settings.JOBS_POLL_INITIAL = 2.0, 0.5
    expected = polling.Expectation(median=300.0, spread=0.1)
    opens, closes = expected.window
    ages = poll_times(closes, expected)
    before = [age for age in ages if age < opens - 1e-6]
    inside = [age for age in ages if opens - 1e-6 <= age < closes]
    assert len(before) <= 2  # one guard look, then the window's opening
    gaps = [b - a for a, b in itertools.pairwise(inside)]
    assert gaps
    assert max(gaps) <= settings.JOBS_POLL_LAG_TARGET + 1e-9
    fixed_polls = closes / 2.0
    assert len(ages) < fixed_polls / 2


def test_the_learned_schedule_backs_off_from_the_windows_end_for_a_late_run(settings):
    settings.JOBS_POLL_INITIAL, settings.JOBS_POLL_FACTOR, settings.JOBS_POLL_CAP = 0.5, 1.5, 10.0
    settings.JOBS_POLL_LAG_TARGET = 1.5
    expected = polling.Expectation(median=200.0, spread=0.05)
    closes = expected.window[1]
    assert polling.next_delay(age=closes + 1, expected=expected) == pytest.approx(1.5)
    assert polling.next_delay(age=closes + 8, expected=expected) == pytest.approx(4.0)
    assert polling.next_delay(age=closes + 500, expected=expected) == pytest.approx(10.0)


def test_no_schedule_waits_past_the_deadline(settings):
    settings.JOBS_POLL_CAP = 600.0
    expected = polling.Expectation(median=3000.0, spread=0.1)
    assert polling.next_delay(age=10, expected=expected, until_deadline=5.0) == pytest.approx(5.0)
    assert polling.next_delay(age=1000, expected=None, until_deadline=3.0) == pytest.approx(3.0)
