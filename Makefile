# Two commands matter: `make demo` and `make test`. Each creates .venv and
# installs what it needs, so a fresh clone with only Python works.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
PORT ?= 5000

.PHONY: demo test lint typecheck pytest bench soak docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.demo-installed: $(BIN)/python setup.cfg pyproject.toml
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.test-installed: $(BIN)/python setup.cfg pyproject.toml
	$(PIP) install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.demo-installed
	FLASK_RUN_HOST=127.0.0.1 FLASK_RUN_PORT=$(PORT) $(BIN)/flask --app example_app run

lint: $(VENV)/.test-installed
	$(BIN)/ruff check flask_logout example_app tests benchmarks scripts
	$(BIN)/ruff format --check flask_logout example_app tests benchmarks scripts

typecheck: $(VENV)/.test-installed
	$(BIN)/mypy

pytest: $(VENV)/.test-installed
	$(BIN)/pytest

test: lint typecheck pytest

$(VENV)/.docs-installed: $(BIN)/python setup.cfg pyproject.toml
	$(PIP) install --quiet -e '.[docs]'
	touch $@

# The Sphinx site, warnings as errors, into docs/_build/html.
docs: $(VENV)/.docs-installed
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

$(VENV)/.bench-installed: $(VENV)/.test-installed
	$(PIP) install --quiet -e '.[test,bench]'
	touch $@

# A 60 s soak against gunicorn on PostgreSQL; its summary goes into docs/reliability.md.
soak: $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks.soak --seconds 60 --write docs/reliability.md

# Prints the comparison table and writes it into docs/performance.md.
# Needs wrk (Debian: apt-get install wrk) and the PostgreSQL server.
bench: $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks.run --write docs/performance.md

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
