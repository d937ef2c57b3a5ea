def fail_always():
    """Always raises: shows how a script error is reported."""
    raise ValueError("fail_always always fails: this script exists to show how a script error is reported")
