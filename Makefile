# Every target creates what it needs: a fresh machine with python3 (and venv) is enough.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-sdk-majors lint bench clean

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

# The SDK instrumentation tests again on every older major the extras admit (.venv has the newest):
# one small venv per pair of pinned majors, against the same local fakes. The stamp names the pins.
SDK_TESTS := tests/test_instrument_openai.py tests/test_instrument_openai_surface.py tests/test_instrument_anthropic.py
SDK_OLD1 := .venv-sdk-openai1-anthropic0
SDK_OLD1_PINS := openai==1.109.1 anthropic==0.125.0
SDK_OLD2 := .venv-sdk-openai2-anthropic1
SDK_OLD2_PINS := openai==2.54.0 anthropic==1.17.0
SDK_TEST_DEPS := 'pytest>=8,<10' 'pytest-timeout>=2.3,<3'
SDK_OLD1_STAMP := $(SDK_OLD1)/.stamp-openai-1.109.1-anthropic-0.125.0
SDK_OLD2_STAMP := $(SDK_OLD2)/.stamp-openai-2.54.0-anthropic-1.17.0

$(SDK_OLD1_STAMP): pyproject.toml
	$(PYTHON) -m venv $(SDK_OLD1)
	$(SDK_OLD1)/bin/python -m pip install -q --upgrade pip
	$(SDK_OLD1)/bin/python -m pip install -q -e . $(SDK_TEST_DEPS) $(SDK_OLD1_PINS)
	touch $@

$(SDK_OLD2_STAMP): pyproject.toml
	$(PYTHON) -m venv $(SDK_OLD2)
	$(SDK_OLD2)/bin/python -m pip install -q --upgrade pip
	$(SDK_OLD2)/bin/python -m pip install -q -e . $(SDK_TEST_DEPS) $(SDK_OLD2_PINS)
	touch $@

test-sdk-majors: $(SDK_OLD1_STAMP) $(SDK_OLD2_STAMP)
	$(SDK_OLD1)/bin/python -m pytest -q -p no:cacheprovider $(SDK_TESTS)
	$(SDK_OLD2)/bin/python -m pytest -q -p no:cacheprovider $(SDK_TESTS)

test: $(VENV)/.test $(BACKENDS_STAMP) $(SDK_OLD1_STAMP) $(SDK_OLD2_STAMP)
	$(PY) -m ruff check src tests examples bench
	$(PY) -m ruff format --check src tests examples bench
	$(PY) -m mypy
	$(PY) -m pytest
	$(MAKE) test-sdk-majors

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
	rm -rf $(VENV) $(BACKENDS) $(BENCH_VENV) $(SDK_OLD1) $(SDK_OLD2) steptrace-logs build dist
