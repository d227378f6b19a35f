# Two commands for a newcomer: `make run` (the demo) and `make test` (every test).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test lint bench clean

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.runtime  ## install and start the embedded demo on http://127.0.0.1:8050
	$(PY) app.py

test: $(VENV)/.dev  ## install and run every test (needs PostgreSQL, Redis and chromium; see README)
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: $(VENV)/.dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: $(VENV)/.dev  ## on-demand benchmarks (not part of the tests)
	$(PY) bench/ingest.py

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
