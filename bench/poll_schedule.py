"""The poll schedules on bench/track.py's --strategy workload, simulated: many runs in seconds, no processes.

    .venv/bin/python bench/poll_schedule.py [--runs 80] [--per-script 30] [--seed 5] [--track-seed 7]

Each run draws the workload of `bench/track.py --strategy` (six recurring scripts with medians 10 to 300 s,
lognormal sigma 0.10, 20 past runs learned through jobs.worker.polling.learn, --per-script runs of each) and follows
each job under fixed 2 s polling and under the learned schedule (jobs.worker.polling.next_delay, the project's own
settings); with --track-seed N, every run has the very history and run durations of `bench/track.py
--strategy --seed N` (its default is 7), and only the ticks and answer times vary. A poll due at some time is
sent at the sweep's next tick (JOBS_SWEEP_INTERVAL, 1 s by default) and answered 0.1-0.9 s later (about what
the tracking benchmark measures on this machine under load); the result is stored 0.2 s after the answer
that finds the job finished. Per run: polls per job of each schedule, their ratio, and each schedule's p95
detection lag. The last line printed is one JSON object: the mean and the 10th and 90th percentiles over runs
of the ratio and of the p95 lags, how many runs have an equal or better p95, and how many reach 4x and 4.5x
at an equal or better p95.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MEDIANS = [10, 20, 45, 90, 180, 300]
SPREAD = 0.10
HISTORY_RUNS = 20


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def follow(finish: float, first: float, delay, rng: random.Random, phase: float, tick: float) -> tuple[int, float]:
    """Polls a job accepted at 0 and finishing at `finish` gets, and its detection lag (sweeps every `tick`)."""
    due, polls = first, 0
    while True:
        sent = math.ceil((due - phase) / tick) * tick + phase
        answered = sent + rng.uniform(0.1, 0.9)
        polls += 1
        if answered >= finish:
            return polls, answered + 0.2 - finish
        due = answered + delay(answered)


def track_workload(seed: int, per_script: int) -> dict[float, tuple[list[float], list[float]]]:
    """The frozen workload of `bench/track.py --strategy --seed N`: per median, the past durations it records
    and the durations of its runs, drawn in the order that script draws them."""
    rng = random.Random(seed)
    history = {median: [median * math.exp(rng.gauss(0, SPREAD)) for _ in range(HISTORY_RUNS)] for median in MEDIANS}
    for _ in range(2 * HISTORY_RUNS):  # the two-signature script's history comes next
        rng.gauss(0, SPREAD)
    runs: dict[float, list[float]] = {median: [] for median in MEDIANS}
    for _ in range(per_script):
        for median in MEDIANS:
            runs[median].append(round(median * math.exp(rng.gauss(0, SPREAD)), 3))
    return {median: (history[median], runs[median]) for median in MEDIANS}


def one_run(
    rng: random.Random, per_script: int, polling, fixed_interval: float, tick: float = 1.0, frozen: dict | None = None
) -> dict:
    """One draw of the workload (or, with `frozen`, that workload's history and runs; only ticks and answer times
    are drawn)."""
    polls: dict[str, list[int]] = {"fixed": [], "learned": []}
    lags: dict[str, list[float]] = {"fixed": [], "learned": []}
    for median in MEDIANS:
        if frozen:
            history, finishes = frozen[median]
        else:
            history = [median * math.exp(rng.gauss(0, SPREAD)) for _ in range(HISTORY_RUNS)]
            finishes = [median * math.exp(rng.gauss(0, SPREAD)) for _ in range(per_script)]
        expected = polling.learn(history)
        for finish in finishes:
            phase = rng.random() * tick
            schedules = {
                "fixed": (fixed_interval, lambda age: fixed_interval),
                "learned": (
                    polling.first_delay(expected),
                    lambda age, e=expected: polling.next_delay(age=age, expected=e),
                ),
            }
            for name, (first, delay) in schedules.items():
                count, lag = follow(finish, first, delay, rng, phase, tick)
                polls[name].append(count)
                lags[name].append(lag)
    return {
        "ratio": statistics.mean(polls["fixed"]) / statistics.mean(polls["learned"]),
        "fixed_p95": percentile(lags["fixed"], 0.95),
        "learned_p95": percentile(lags["learned"], 0.95),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=80)
    parser.add_argument("--per-script", type=int, default=30)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--track-seed", type=int, default=None, help="simulate the frozen workload of bench/track.py --seed N"
    )
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omlpy_dashboard.settings")
    os.environ.setdefault("DEBUG", "true")
    import django

    django.setup()
    from django.conf import settings

    from jobs.worker import polling

    rng = random.Random(args.seed)
    runs = [
        one_run(
            rng,
            args.per_script,
            polling,
            settings.JOBS_POLL_FIXED_INTERVAL,
            settings.JOBS_SWEEP_INTERVAL,
            frozen=track_workload(args.track_seed, args.per_script) if args.track_seed is not None else None,
        )
        for _ in range(args.runs)
    ]

    def summary(key: str) -> dict:
        values = [run[key] for run in runs]
        return {
            "mean": round(statistics.mean(values), 2),
            "p10_p90": [round(percentile(values, q), 2) for q in (0.1, 0.9)],
        }

    figures = {
        "runs": args.runs,
        "per_script": args.per_script,
        "poll_ratio": summary("ratio"),
        "fixed_lag_p95_s": summary("fixed_p95"),
        "learned_lag_p95_s": summary("learned_p95"),
        "runs_equal_or_better_p95": sum(r["learned_p95"] <= r["fixed_p95"] for r in runs),
        "runs_4x_at_equal_or_better_p95": sum(r["ratio"] >= 4 and r["learned_p95"] <= r["fixed_p95"] for r in runs),
        "runs_4_5x_at_equal_or_better_p95": sum(r["ratio"] >= 4.5 and r["learned_p95"] <= r["fixed_p95"] for r in runs),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
