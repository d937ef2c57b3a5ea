import time


def sleep_seconds(seconds=1):
    """Sleeps for `seconds` and returns it: a slow job on demand."""
    time.sleep(float(seconds))
    return seconds
