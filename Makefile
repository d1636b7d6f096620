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
	$(PY) examples/quickstart.py

test: $(VENV)/.test
	$(PY) -m ruff check src tests examples
	$(PY) -m mypy
	$(PY) -m pytest

lint: $(VENV)/.test
	$(PY) -m ruff check src tests examples bench
	$(PY) -m ruff format --check src tests examples bench
	$(PY) -m mypy

clean:
	rm -rf $(VENV) steptrace-logs build dist
