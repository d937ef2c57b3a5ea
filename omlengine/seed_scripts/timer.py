import time


def timer(seconds=1.0):
    """Finishes after `seconds`. With timer scripts on, async calls complete without a process or a slot."""
    time.sleep(float(seconds))
    return {"slept": float(seconds)}
