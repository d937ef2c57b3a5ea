# OMLPy Dashboard's production image. Two targets:
#   dashboard (the default): web, worker and beat, with requirements.txt only
#   engine:                  the same code plus the embedded engine's scientific stack (requirements-engine.txt)
# docker build -t omlpy-dashboard .                          (dashboard)
# docker build --target engine -t omlpy-dashboard-engine .   (engine)
# Both run as uid 10001, ship their static files, and start gunicorn unless told to run something else.

FROM python:3.11-slim AS python
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Dependencies go into a virtualenv that the runtime stages copy whole: pip and its build leftovers stay here.
FROM python AS venv-dashboard
WORKDIR /build
RUN python -m venv /opt/venv
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

FROM venv-dashboard AS venv-engine
COPY requirements-engine.txt ./
RUN pip install --no-cache-dir -r requirements-engine.txt

# Static files are the same for both targets: built once, with the production settings, by the project's
# own build script (the production smoke test runs the same script).
FROM venv-dashboard AS static
WORKDIR /app
COPY . .
ENV STATIC_ROOT=/app/staticfiles
RUN deploy/build.sh python

FROM python AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="OMLPy Dashboard" \
      org.opencontainers.image.description="Compose, run, track and audit OML4Py Embedded Python Execution jobs" \
      org.opencontainers.image.version=$VERSION \
      org.opencontainers.image.revision=$REVISION \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim"
# A fixed uid, so that Kubernetes' runAsNonRoot can check it and volumes can be owned by it.
RUN groupadd --system --gid 10001 omlpy \
 && useradd --system --uid 10001 --gid omlpy --home-dir /app --no-create-home --shell /usr/sbin/nologin omlpy
WORKDIR /app
# The code and the static files belong to root: the application can read them, never change them.
COPY . .
COPY --from=static /app/staticfiles /app/staticfiles
# VAR_DIR is the one folder the application writes (broker folder, caches, beat's schedule); an orchestrator
# mounts a volume here when the root filesystem is read-only. Its audit-checkpoints folder is a volume of its
# own (AUDIT_CHECKPOINT_DIR); created here so that a new volume mounted on it belongs to the application.
RUN install -d -o omlpy -g omlpy -m 0750 /app/var /app/var/audit-checkpoints
ENV VAR_DIR=/app/var \
    STATIC_ROOT=/app/staticfiles \
    CELERY_BEAT_SCHEDULE_FILENAME=/app/var/celerybeat-schedule \
    GUNICORN_BIND=0.0.0.0:8000
USER 10001:10001
EXPOSE 8000
CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py", "omlpy_dashboard.wsgi:application"]

FROM runtime AS engine
LABEL org.opencontainers.image.title="OMLPy Dashboard with the embedded OML engine"
COPY --from=venv-engine /opt/venv /opt/venv

# Last, so that a build without --target gives the dashboard.
FROM runtime AS dashboard
COPY --from=venv-dashboard /opt/venv /opt/venv
