"""The worker side of a job's life: submit, poll, fetch, cancel, and the janitor. (Being written.)"""


def submit(job_id: int) -> None:
    raise RuntimeError("not available yet")


def sweep() -> int:
    return 0


def fetch(job_id: int) -> None:
    raise RuntimeError("not available yet")


def cancel(job_id: int, *, actor: str) -> None:
    raise RuntimeError("not available yet")


def janitor() -> dict:
    return {}
