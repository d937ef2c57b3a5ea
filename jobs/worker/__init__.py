"""What Celery runs: submit, the poll sweep and its schedule, fetch, cancel, the janitor."""
