"""Every write of the jobs app: views, the API, tasks and admin actions call these."""
