# The two commands: `make run` starts everything on embedded defaults; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
export PORT

.PHONY: run test lint format migrate seed venv browser caddy bubblewrap prometheus clean help

help:
	@echo "make run    start web, worker (+beat) and the engine worker on http://127.0.0.1:$(PORT)"
	@echo "make test   run the whole test suite (embedded defaults, or DATABASE_URL/CELERY_BROKER_URL/REDIS_URL)"
	@echo "make lint   ruff, formatting, migrations check, Compose spec, import contracts, types, Dockerfile, Kubernetes manifests, alert rules"

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-engine.txt requirements-dev.txt omlpy_client/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

# Local runs are development runs: DEBUG on, demo accounts seeded, embedded engine on.
run: export DEBUG ?= true
run: venv
	@$(MAKE) --no-print-directory bubblewrap || echo "  Without bubblewrap the embedded engine refuses to run scripts (OMLENGINE_SANDBOX=off runs them unisolated)."
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	@echo ""
	@echo "  OMLPy Dashboard: http://127.0.0.1:$(PORT)/"
	@echo "  Demo logins: analyst / analyst, auditor / auditor, admin / admin"
	@echo "  Embedded OML engine user: OMLUSER / omluser"
	@echo ""
	$(BIN)/honcho -f Procfile.dev start

browser:
	@test -x /usr/bin/chromium || { echo "Installing Chromium for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || { echo "Chromium is needed for the browser tests: apt-get install chromium"; exit 1; }; }

# The embedded engine runs scripts inside bubblewrap (README "What the engine isolates"); its tests need it.
bubblewrap:
	@command -v bwrap >/dev/null || { echo "Installing bubblewrap for the embedded engine's sandbox"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bubblewrap >/dev/null) \
	  || { echo "bubblewrap is needed to isolate the engine's scripts: apt-get install bubblewrap"; exit 1; }; }

# Caddy fronts gunicorn in the production smoke test (tests/test_production_smoke.py), as in docker-compose.yml.
caddy:
	@command -v caddy >/dev/null || { echo "Installing Caddy for the production smoke test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends caddy >/dev/null) \
	  || { echo "Caddy is needed for the production smoke test: apt-get install caddy"; exit 1; }; }
	@# The package starts a system-wide Caddy where an init system runs; the tests start their own.
	@(command -v systemctl >/dev/null && systemctl is-active --quiet caddy && systemctl disable --now caddy) >/dev/null 2>&1 || true

# promtool checks and unit-tests the alert rules (make lint); a test scrapes the test stack with a real Prometheus.
prometheus:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { echo "Installing Prometheus for the alert rules and their test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null) \
	  || { echo "Prometheus is needed for make lint and the tests: apt-get install prometheus"; exit 1; }; }
	@# The package starts a system-wide Prometheus where an init system runs; the tests start their own.
	@(command -v systemctl >/dev/null && systemctl is-active --quiet prometheus && systemctl disable --now prometheus) >/dev/null 2>&1 || true
	@(test -x /etc/init.d/prometheus && /etc/init.d/prometheus status && /etc/init.d/prometheus stop) >/dev/null 2>&1 || true

test: venv browser caddy bubblewrap prometheus
	$(BIN)/pytest $(PYTEST_ARGS)

lint: venv prometheus
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DEBUG=true $(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
# The import boundaries of the design: contracts in pyproject.toml; a broken one prints the offending import.
	$(BIN)/lint-imports --no-cache
# Types of the core packages (pyproject.toml [tool.mypy]).
	DEBUG=true $(BIN)/mypy
# The image's Dockerfile (hadolint) and deploy/kubernetes/ (schemas of a pinned Kubernetes release), offline.
	LINT_BIN=$(BIN) deploy/lint.sh
	promtool check rules deploy/prometheus/alerts.yml
	promtool test rules deploy/prometheus/alerts.test.yml

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf var
