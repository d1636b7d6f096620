# Every target creates what it needs: a fresh machine with python3 (and venv) is enough.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint bench clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.test: $(VENV)/.base pyproject.toml
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.base
	$(PY) -m steptrace demo

# Arize Phoenix and the rotel collector for the integration tests, in a venv of their own so
# their dependencies never constrain ours. The stamp names the versions: bumping one reinstalls.
BACKENDS := .venv-phoenix
PHOENIX_VERSION := 20.26.1
ROTEL_VERSION := 0.0.1a15
BACKENDS_STAMP := $(BACKENDS)/.stamp-phoenix-$(PHOENIX_VERSION)-rotel-$(ROTEL_VERSION)

$(BACKENDS_STAMP):
	$(PYTHON) -m venv $(BACKENDS)
	$(BACKENDS)/bin/python -m pip install -q --upgrade pip
	$(BACKENDS)/bin/python -m pip install -q 'arize-phoenix==$(PHOENIX_VERSION)' 'rotel==$(ROTEL_VERSION)'
	touch $@

test: $(VENV)/.test $(BACKENDS_STAMP)
	$(PY) -m ruff check src tests examples bench
	$(PY) -m ruff format --check src tests examples bench
	$(PY) -m mypy
	$(PY) -m pytest

# The benchmarks (bench/README.md): steptrace and its peers in a venv of their own, so the peers
# never enter the project's venv. Not part of `make test`. Writes bench/RESULTS.md.
BENCH_VENV := .venv-bench
BENCH_PY := $(BENCH_VENV)/bin/python

$(BENCH_VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_PY) -m pip install -q --upgrade pip
	$(BENCH_PY) -m pip install -q -e '.[bench]'
	touch $@

bench: $(BENCH_VENV)/.stamp
	$(BENCH_PY) bench/run.py --output bench/RESULTS.md

lint: $(VENV)/.test
	$(PY) -m ruff check src tests examples bench
	$(PY) -m ruff format --check src tests examples bench
	$(PY) -m mypy

clean:
	rm -rf $(VENV) $(BACKENDS) $(BENCH_VENV) steptrace-logs build dist
