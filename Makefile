# The README's two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BPO := $(VENV)/bin/bpo

.PHONY: install demo test test-fast lint bench stack-down clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

## make demo: start the local stack, run a sample batch through data entry, review it, show where to look
demo: install
	$(BPO) stack up
	$(BPO) demo

## make test: the whole suite, starting the services it needs (Prefect, SeaweedFS, PostgreSQL)
test: install
	$(PY) -m pytest

## make test-fast: only the tests that need no service
test-fast: install
	$(PY) -m pytest -m "not slow"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

bench: install
	$(PY) -m bench.data_entry --records 100000

stack-down: install
	$(BPO) stack down

clean: stack-down
	rm -rf .bpo
