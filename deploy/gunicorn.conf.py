"""gunicorn's configuration for the web process, in the image and in the production smoke test alike.

Every value can be changed from the environment; the defaults suit a container with 1-2 CPUs.
"""

import os

import environ

from omlpy_dashboard.logs import gunicorn_logconfig, log_format_from

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
# Threads let one worker wait on OML or the database for one request while it serves another.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# A result download can stream for a while; anything slower than this is stuck.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = 5
# Recycle workers now and then so that a slow leak cannot grow without bound; the jitter keeps them from
# restarting all at once.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "2000"))
max_requests_jitter = max_requests // 10
# Django decides which proxy to believe (TRUSTED_PROXIES): gunicorn must not act on forwarded headers itself.
forwarded_allow_ips = ""
# Django logs each request with its request id; gunicorn's own access log would repeat it without one.
accesslog = None
errorlog = "-"
# gunicorn's own lines (start, worker boots, timeouts) in the application's format: JSON lines in production.
logconfig_dict = gunicorn_logconfig(
    log_format_from(os.environ.get("LOG_FORMAT"), debug=environ.Env().bool("DEBUG", default=False))
)
# gunicorn's control socket would be created under $HOME, which is read-only in the image: nothing uses it.
control_socket_disable = True
