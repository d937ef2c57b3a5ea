"""The poll schedules: backoff for scripts with no history, and the schedule learned from past durations."""

from __future__ import annotations

import functools
import itertools
import math
import random
import statistics

import pytest

from jobs.worker import polling


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


def test_the_learned_schedule_first_looks_at_the_start_quantile_then_polls_closely_into_the_late_tail(settings):
    settings.JOBS_POLL_LAG_TARGET, settings.JOBS_POLL_INITIAL, settings.JOBS_SWEEP_INTERVAL = 1.5, 0.5, 1.0
    expected = polling.Expectation(median=90.0, spread=0.1)
    opens, closes = expected.dense
    # The first look comes when START_QUANTILE of past runs had finished (asked half a sweep tick early, as the
    # next sweep sends it), and close polling lasts until all but 1 - END_QUANTILE of them had.
    assert opens == pytest.approx(expected.quantile(polling.START_QUANTILE))
    assert closes == pytest.approx(expected.quantile(polling.END_QUANTILE))
    assert expected.share_done(opens) == pytest.approx(polling.START_QUANTILE)
    ages = poll_times(closes, expected)
    assert ages[0] == pytest.approx(opens - 0.5)  # a first look this soon gets no early look before it
    # Every later wait lies within half a tick of the lag target: never more than one tick off it.
    gaps = [b - a for a, b in itertools.pairwise(ages)]
    assert min(gaps) >= 1.0 - 1e-9
    assert max(gaps) <= 2.0 + 1e-9


def test_waits_are_longer_where_finishing_is_unlikely_and_shorter_where_runs_finish_fast(settings):
    settings.JOBS_POLL_LAG_TARGET, settings.JOBS_POLL_INITIAL, settings.JOBS_SWEEP_INTERVAL = 1.5, 0.5, 1.0
    expected = polling.Expectation(median=300.0, spread=0.1)
    opens = expected.dense[0]
    # Early in a wide window few runs finish in a tick: the wait is the longest allowed. Where the runs still
    # going finish fast (late for this script, throughout for a shorter one), it is the shortest.
    assert polling.next_delay(age=opens, expected=expected) == pytest.approx(2.0)
    assert polling.next_delay(age=expected.quantile(0.999) - 0.1, expected=expected) == pytest.approx(1.0, abs=0.02)
    shorter = polling.Expectation(median=90.0, spread=0.1)
    assert polling.next_delay(age=shorter.median, expected=shorter) == pytest.approx(1.0)
    # In between, the wait lasts until another STEP_SHARE of the runs still going would have finished.
    age = expected.quantile(0.90)
    wait = polling.next_delay(age=age, expected=expected)
    assert 1.0 < wait < 2.0
    done = expected.share_done(age)
    assert expected.share_done(age + wait) == pytest.approx(done + polling.STEP_SHARE * (1 - done))


def test_the_learned_schedule_counts_in_sweep_ticks(settings):
    """A poll due at some time goes out at the next sweep: the bounds of each wait follow the sweep interval."""
    settings.JOBS_POLL_LAG_TARGET, settings.JOBS_POLL_INITIAL = 3.0, 0.5
    expected = polling.Expectation(median=600.0, spread=0.1)
    opens = expected.dense[0]
    for tick in (1.0, 2.0):
        settings.JOBS_SWEEP_INTERVAL = tick
        ages = poll_times(expected.quantile(0.999), expected)
        assert ages[0] == pytest.approx(opens - tick / 2)
        gaps = [b - a for a, b in itertools.pairwise(ages)]
        assert gaps[0] == pytest.approx(3.0 + tick / 2)  # early in the window: the longest wait allowed
        assert min(gaps) >= 3.0 - tick / 2 - 1e-9
        assert max(gaps) <= 3.0 + tick / 2 + 1e-9


def test_a_late_first_look_gets_one_early_look_half_way_there_unless_the_history_is_tight(settings):
    settings.JOBS_POLL_LAG_TARGET, settings.JOBS_POLL_INITIAL, settings.JOBS_SWEEP_INTERVAL = 1.5, 0.5, 1.0
    wide = polling.Expectation(median=1200.0, spread=0.3)
    opens = wide.dense[0]
    assert opens > polling.GUARD_AFTER
    assert wide.spread >= polling.GUARD_SPREAD
    assert poll_times(opens, wide)[:2] == [pytest.approx(opens / 2), pytest.approx(opens - 0.5)]
    tight = polling.Expectation(median=600.0, spread=0.1)
    opens = tight.dense[0]
    assert opens > polling.GUARD_AFTER
    assert tight.spread < polling.GUARD_SPREAD
    assert poll_times(opens, tight)[0] == pytest.approx(opens - 0.5)


def test_a_tight_history_needs_fewer_polls_than_a_wide_one(settings):
    """The same script with a tight history and with a wide one: the polls its runs get, on average over runs
    drawn from each history (fewer polls on average, and a later first look)."""
    settings.JOBS_POLL_LAG_TARGET, settings.JOBS_POLL_INITIAL, settings.JOBS_SWEEP_INTERVAL = 1.5, 0.5, 1.0
    settings.JOBS_POLL_FACTOR, settings.JOBS_POLL_CAP = 1.5, 10.0
    rng = random.Random(3)
    means = {}
    for spread in (0.05, 0.1, 0.3):
        expected = polling.Expectation(median=120.0, spread=spread)
        delay = functools.partial(lambda age, e: polling.next_delay(age=age, expected=e), e=expected)
        polls = [
            simulate(delay, polling.first_delay(expected), 120.0 * math.exp(rng.gauss(0, spread)))[0]
            for _ in range(400)
        ]
        means[spread] = statistics.mean(polls)
    assert means[0.05] < means[0.1] < means[0.3]
    firsts = [polling.first_delay(polling.Expectation(median=120.0, spread=s)) for s in (0.05, 0.1, 0.3)]
    assert firsts == sorted(firsts, reverse=True)


def simulate(schedule_delay, first: float, finish: float) -> tuple[int, float]:
    """Polls a job finishing at `finish` receives, and its detection lag, under a schedule."""
    age, polls = first, 1
    while age < finish:
        age += schedule_delay(age)
        polls += 1
    return polls, age - finish


def test_quantile_placement_needs_four_times_fewer_polls_than_fixed_2_s_at_a_better_p95_lag(settings):
    """On the benchmark's workload (six recurring scripts, medians 10 to 300 s, lognormal sigma 0.10, 20 past
    runs each), the learned schedule, fitted to the past runs, against polling every 2 s."""
    settings.JOBS_POLL_LAG_TARGET, settings.JOBS_POLL_INITIAL = 1.5, 0.5
    settings.JOBS_POLL_FACTOR, settings.JOBS_POLL_CAP = 1.5, 10.0
    rng = random.Random(7)
    fixed_polls, fixed_lags, learned_polls, learned_lags = [], [], [], []
    for median in (10, 20, 45, 90, 180, 300):
        expected = polling.learn([median * math.exp(rng.gauss(0, 0.1)) for _ in range(20)])
        for _ in range(300):
            finish = median * math.exp(rng.gauss(0, 0.1))
            polls, lag = simulate(lambda age: 2.0, 2.0, finish)
            fixed_polls.append(polls)
            fixed_lags.append(lag)
            delay = functools.partial(lambda age, e: polling.next_delay(age=age, expected=e), e=expected)
            polls, lag = simulate(delay, polling.first_delay(expected), finish)
            learned_polls.append(polls)
            learned_lags.append(lag)
    assert statistics.mean(fixed_polls) / statistics.mean(learned_polls) >= 4
    p95 = statistics.quantiles(learned_lags, n=20)[-1]
    assert p95 <= statistics.quantiles(fixed_lags, n=20)[-1]
    assert p95 <= settings.JOBS_POLL_LAG_TARGET + settings.JOBS_SWEEP_INTERVAL / 2  # the longest wait allowed


def test_the_learned_schedule_backs_off_from_the_end_of_dense_polling_for_a_very_late_run(settings):
    settings.JOBS_POLL_INITIAL, settings.JOBS_POLL_FACTOR, settings.JOBS_POLL_CAP = 0.5, 1.5, 10.0
    settings.JOBS_POLL_LAG_TARGET, settings.JOBS_SWEEP_INTERVAL = 1.5, 1.0
    expected = polling.Expectation(median=200.0, spread=0.05)
    closes = expected.dense[1]
    assert polling.next_delay(age=closes - 1, expected=expected) == pytest.approx(1.0)  # runs finish fast here
    assert polling.next_delay(age=closes + 1, expected=expected) == pytest.approx(1.5)
    assert polling.next_delay(age=closes + 8, expected=expected) == pytest.approx(4.0)
    assert polling.next_delay(age=closes + 500, expected=expected) == pytest.approx(10.0)


@pytest.mark.parametrize("finish", [0.3, 2.7, 33.0, 1000.0])
def test_a_job_with_no_history_keeps_the_backoff_bound_whatever_the_lag_target(settings, finish):
    settings.JOBS_POLL_INITIAL, settings.JOBS_POLL_FACTOR, settings.JOBS_POLL_CAP = 0.5, 1.5, 10.0
    settings.JOBS_POLL_LAG_TARGET = 5.0
    ages = poll_times(finish + 20, expected=polling.learn([12.0, 13.0]))  # two runs: too few to learn from
    lag = detection(ages, finish) - finish
    assert lag <= min(settings.JOBS_POLL_CAP, max(detection(ages, finish) / 3, settings.JOBS_POLL_INITIAL)) + 1e-9


def test_no_schedule_waits_past_the_deadline(settings):
    settings.JOBS_POLL_CAP = 600.0
    expected = polling.Expectation(median=3000.0, spread=0.1)
    assert polling.next_delay(age=10, expected=expected, until_deadline=5.0) == pytest.approx(5.0)
    assert polling.next_delay(age=1000, expected=None, until_deadline=3.0) == pytest.approx(3.0)
