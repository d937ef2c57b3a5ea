import math
import random
import time


def timer(seconds=1.0, jitter=0.0):
    """Finishes after `seconds` (with `jitter`, a lognormal sigma, drawn around it). With timer scripts on,
    async calls complete without a process or a slot."""
    seconds = float(seconds) * math.exp(random.gauss(0, float(jitter))) if jitter else float(seconds)
    time.sleep(seconds)
    return {"slept": seconds}
