"""Counters and histograms accumulated in this process's memory until the next flush (metrics.store.flush).

Recording costs a dictionary update under a lock, and no I/O: the sweep's threads record every request to
OML here, and one flush per sweep (or per task, or per request that recorded anything) adds them to the
database. A process that dies loses what it had not flushed, which keeps every counter monotonic (it only
ever grows by what was flushed). Imports nothing of the database, so that the OML client can use it.
"""

from __future__ import annotations

import bisect
import json
import threading

from . import catalog

# (series name, labels as canonical JSON) -> amount to add
Series = tuple[str, str]

_lock = threading.Lock()
_pending: dict[Series, float] = {}


def labels_key(labels: dict[str, str]) -> str:
    return json.dumps(labels, sort_keys=True, separators=(",", ":"))


def _add(name: str, labels: dict[str, str], amount: float) -> None:
    key = (name, labels_key(labels))
    with _lock:
        _pending[key] = _pending.get(key, 0.0) + amount


def inc(name: str, amount: float = 1.0, **labels: str) -> None:
    """Add `amount` to a counter of the catalog."""
    metric = catalog.check(name, labels)
    if not isinstance(metric, catalog.Counter):
        raise TypeError(f"{name} is a histogram: observe() it")
    if amount < 0:
        raise ValueError("counters only grow")
    if amount:
        _add(name, {key: str(value) for key, value in labels.items()}, amount)


def observe(name: str, value: float, **labels: str) -> None:
    """Count one observation of a histogram of the catalog: its bucket, its sum and its count."""
    metric = catalog.check(name, labels)
    if not isinstance(metric, catalog.Histogram):
        raise TypeError(f"{name} is a counter: inc() it")
    value = max(float(value), 0.0)
    labels = {key: str(val) for key, val in labels.items()}
    # Buckets are stored not cumulated (each observation in the first bucket that holds it); the exposition
    # cumulates them. "+Inf" holds what no bucket does.
    index = bisect.bisect_left(metric.buckets, value)
    bound = _bound(metric.buckets[index]) if index < len(metric.buckets) else "+Inf"
    key_bucket = (f"{name}_bucket", labels_key({**labels, "le": bound}))
    key_sum = (f"{name}_sum", labels_key(labels))
    key_count = (f"{name}_count", labels_key(labels))
    with _lock:
        _pending[key_bucket] = _pending.get(key_bucket, 0.0) + 1
        _pending[key_sum] = _pending.get(key_sum, 0.0) + value
        _pending[key_count] = _pending.get(key_count, 0.0) + 1


def _bound(value: float) -> str:
    return repr(float(value))


def drain() -> dict[Series, float]:
    """Take everything pending (the caller adds it to the database or gives it back with restore())."""
    global _pending
    with _lock:
        taken, _pending = _pending, {}
    return taken


def restore(taken: dict[Series, float]) -> None:
    """Give back what a flush could not write, to be tried again at the next one."""
    with _lock:
        for key, amount in taken.items():
            _pending[key] = _pending.get(key, 0.0) + amount


def has_pending() -> bool:
    with _lock:
        return bool(_pending)
