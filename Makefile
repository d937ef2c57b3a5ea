# The two commands: `make run` starts everything on embedded defaults; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
export PORT

.PHONY: run test lint format migrate seed venv browser clean help

help:
	@echo "make run    start web, worker (+beat) and the engine worker on http://127.0.0.1:$(PORT)"
	@echo "make test   run the whole test suite (embedded defaults, or DATABASE_URL/CELERY_BROKER_URL/REDIS_URL)"
	@echo "make lint   ruff, formatting, migrations check, docker-compose.yml against the Compose spec"

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

# Local runs are development runs: DEBUG on, demo accounts seeded, embedded engine on.
run: export DEBUG ?= true
run: venv
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

test: venv browser
	$(BIN)/pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DEBUG=true $(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf var
