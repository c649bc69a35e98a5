# Two set-up commands: `make demo` (the portal with demo data) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install lint bench clean load faults

# The build tools of setup.py, in the venv too, for the in-place builds below (Cython pinned as
# in pyproject.toml's build-system; a setuptools that reads its SPDX licence, >= 77); the
# editable install leaves the compiling to them.
$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools==84.2.1 cython==3.3.1
	PORTAL_PURE_PYTHON=1 $(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

# The modules setup.py compiles with Cython, built in place again when a source changes
# (importing the package refuses a compiled module older than its source).
BUILT := $(VENV)/.compiled
$(BUILT): $(STAMP) setup.py $(wildcard projections/*.py)
	$(BIN)/python setup.py --quiet build_ext --inplace --parallel 2
	touch $(BUILT)

install: $(BUILT)

# Starts Meilisearch (managed child) and the portal on http://127.0.0.1:8000 with demo data.
# Data is kept between runs; `make demo FRESH=1` starts afresh.
demo: $(BUILT)
	bash deploy/provision-meilisearch.sh >/dev/null
	$(BIN)/portal demo $(if $(FRESH),--fresh,)

# Runs the whole suite against real SQLite, PostgreSQL, Meilisearch (a throwaway server on a
# free port, started by the tests) and headless Chromium. With CI=true nothing may be skipped.
test: $(BUILT)
	bash deploy/provision-meilisearch.sh >/dev/null
	$(BIN)/ruff check .
	$(BIN)/pytest -q

# Load test on PostgreSQL (PORTAL_POSTGRES_URL, else postgresql://postgres@127.0.0.1:5432/test):
# 200 public readers and 20 staff writers for 60 s against 3 web workers, a projection worker and
# a managed Meilisearch; JSON report on stdout. Override e.g. `make load LOAD_ARGS="--duration 10"`.
load: $(BUILT)
	bash deploy/provision-meilisearch.sh >/dev/null
	$(BIN)/portal bench-load $(LOAD_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf var .pytest_cache .ruff_cache build $(BUILT) projections/*.so

# Hostile input at full strength (issue 8): schemathesis with many examples per OpenAPI
# operation, the whole XSS corpus on every page kind, malformed input, the authorization matrix.
.PHONY: hostile
hostile: $(BUILT)
	PORTAL_HOSTILE_EXAMPLES=$(or $(EXAMPLES),200) PORTAL_HOSTILE_FULL=1 $(BIN)/pytest -q tests/hostile

# Fault tests at full strength (issue 8): SIGKILLed web and projection workers, Meilisearch
# stopped for a minute and a private PostgreSQL restarted, all under load; numbers as JSON.
# `make faults ONLY=web` runs one scenario (web, projections, search, postgres).
faults: $(BUILT)
	bash deploy/provision-meilisearch.sh >/dev/null
	$(BIN)/python -m portal.cli faults $(if $(ONLY),--only $(ONLY),)
