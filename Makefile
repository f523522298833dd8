# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install checkov worker demo chaos test lint bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

install: $(VENV)/.installed node_modules/.installed

# Checkov (offline Bicep scan in tests/infra) in its own venv, so its pins can't clash with the app's.
CHECKOV_VENV := .venv-checkov
$(CHECKOV_VENV)/.installed:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet checkov==3.3.30
	touch $@

checkov: $(CHECKOV_VENV)/.installed

# The 3.13 Python worker (azure-functions-runtime) in its own venv, when a Python 3.13 is on the
# machine (PATH or pyenv), so tests/infra/test_worker_indexing.py indexes the app as Azure does.
WORKER_VENV := .venv-worker
WORKER_PYTHON ?= $(shell for p in $$(pyenv root 2>/dev/null)/versions/3.13*/bin/python3.13 $$(command -v python3.13); do $$p -V >/dev/null 2>&1 && echo $$p && break; done)
$(WORKER_VENV)/.installed: requirements.txt requirements-worker.txt
	$(WORKER_PYTHON) -m venv $(WORKER_VENV)
	$(WORKER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(WORKER_VENV)/bin/python -m pip install --quiet -r requirements-worker.txt
	touch $@

ifneq ($(WORKER_PYTHON),)
worker: $(WORKER_VENV)/.installed
else
worker:
	@echo "no Python 3.13 here: tests/infra/test_worker_indexing.py will skip the real worker's check"
endif

demo: install
	$(PY) scripts/demo.py
	$(PY) scripts/triage_demo.py
	$(PY) scripts/fraud_demo.py

# A seeded chaos run over every agent (500 orders, 300 payments, 100 tickets over 250 s, every fault kind); ARGS="--seed 3 ..." to vary.
chaos: install
	$(PY) -m scripts.chaos $(ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: install checkov worker
	$(VENV)/bin/pytest

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) $(WORKER_VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
