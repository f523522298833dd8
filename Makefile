# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install checkov demo chaos test lint bench clean

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

demo: install
	$(PY) scripts/demo.py
	$(PY) scripts/triage_demo.py
	$(PY) scripts/fraud_demo.py

# A seeded chaos run on the local cloud (500 orders over 250 s, every fault kind); ARGS="--seed 3 ..." to vary.
chaos: install
	$(PY) scripts/chaos.py $(ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: install checkov
	$(VENV)/bin/pytest

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
