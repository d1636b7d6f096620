# Every target creates what it needs: a fresh machine with python3 (and venv) is enough.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-sdk-majors test-latest pins lint bench clean

# Every venv of `make demo` and `make test` installs exact versions from requirements/*.txt, so a
# fresh clone passes the same tests next month as today. `make pins` refreshes them (README, "Tests").
PIP_VERSION := 26.3
PINS := requirements/test.txt
PHOENIX_PINS := requirements/phoenix.txt

$(VENV)/.base: pyproject.toml $(PINS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q 'pip==$(PIP_VERSION)'
	$(PY) -m pip install -q -c $(PINS) -e .
	touch $@

$(VENV)/.test: $(VENV)/.base pyproject.toml $(PINS)
	$(PY) -m pip install -q -c $(PINS) -e '.[test]'
	touch $@

demo: $(VENV)/.base
	$(PY) -m steptrace demo

# Arize Phoenix and the rotel collector for the integration tests, in a venv of their own so
# their dependencies never constrain ours. The stamp names the versions: bumping one reinstalls.
BACKENDS := .venv-phoenix
PHOENIX_VERSION := 20.26.1
ROTEL_VERSION := 0.0.1a15
BACKENDS_STAMP := $(BACKENDS)/.stamp-phoenix-$(PHOENIX_VERSION)-rotel-$(ROTEL_VERSION)

$(BACKENDS_STAMP): $(PHOENIX_PINS)
	$(PYTHON) -m venv $(BACKENDS)
	$(BACKENDS)/bin/python -m pip install -q 'pip==$(PIP_VERSION)'
	$(BACKENDS)/bin/python -m pip install -q -c $(PHOENIX_PINS) 'arize-phoenix==$(PHOENIX_VERSION)' 'rotel==$(ROTEL_VERSION)'
	touch $@

# The SDK instrumentation tests again on every older major the extras admit (.venv has the newest):
# one small venv per pair of pinned majors, against the same local fakes. The stamp names the pins.
SDK_TESTS := tests/test_instrument_openai.py tests/test_instrument_openai_surface.py tests/test_instrument_anthropic.py \
	tests/test_instrument_recorded.py
SDK_OLD1 := .venv-sdk-openai1-anthropic0
SDK_OLD1_PINS := openai==1.109.1 anthropic==0.125.0
SDK_OLD2 := .venv-sdk-openai2-anthropic1
SDK_OLD2_PINS := openai==2.54.0 anthropic==1.17.0
SDK_TEST_DEPS := 'pytest>=8,<10' 'pytest-timeout>=2.3,<3'
# The oldest LangGraph/LangChain, boto3 and Pydantic AI the `langchain`, `bedrock` and `pydantic-ai` extras
# admit (langgraph-prebuilt 1.0.0 warns on import of a name it moved; the suite turns warnings into
# errors, so that one is ignored).
SDK_OLD3 := .venv-sdk-frameworks-oldest
SDK_OLD3_PINS := langgraph==1.0.0 langchain-core==1.0.0 langgraph-prebuilt==1.0.0 langchain-openai==1.0.0 \
	boto3==1.34.116 botocore==1.34.116 'pydantic-ai-slim[openai]==2.23.0' \
	openai==2.54.0 anthropic==2.17.0 genai-prices==0.2.5
SDK_OLD3_STAMP := $(SDK_OLD3)/.stamp-langgraph-1.0.0-boto3-1.34.116-botocore-floor-pydantic-ai-2.23.0
SDK_OLD3_TESTS := tests/test_instrument_langchain.py tests/test_instrument_bedrock.py \
	tests/test_instrument_pydantic_ai.py
# aiobotocore (async Bedrock) pins botocore to its own narrow range, below the newest botocore .venv
# tests: its tests and the sync Bedrock ones run again in a venv of their own, on its botocore.
SDK_AIO := .venv-sdk-aiobotocore
SDK_AIO_PINS := aiobotocore==3.10.0 boto3==1.43.117 botocore==1.43.117 openai==2.54.0 anthropic==2.17.0 \
	genai-prices==0.2.5
SDK_AIO_STAMP := $(SDK_AIO)/.stamp-aiobotocore-3.10.0-botocore-1.43.117
SDK_AIO_TESTS := tests/test_instrument_aiobotocore.py tests/test_instrument_bedrock.py tests/test_rerun_bedrock.py
SDK_OLD1_STAMP := $(SDK_OLD1)/.stamp-openai-1.109.1-anthropic-0.125.0
SDK_OLD2_STAMP := $(SDK_OLD2)/.stamp-openai-2.54.0-anthropic-1.17.0

$(SDK_OLD1_STAMP): pyproject.toml requirements/$(SDK_OLD1:.venv-%=%).txt
	$(PYTHON) -m venv $(SDK_OLD1)
	$(SDK_OLD1)/bin/python -m pip install -q 'pip==$(PIP_VERSION)'
	$(SDK_OLD1)/bin/python -m pip install -q -c requirements/$(SDK_OLD1:.venv-%=%).txt -e . $(SDK_TEST_DEPS) $(SDK_OLD1_PINS)
	touch $@

$(SDK_OLD2_STAMP): pyproject.toml requirements/$(SDK_OLD2:.venv-%=%).txt
	$(PYTHON) -m venv $(SDK_OLD2)
	$(SDK_OLD2)/bin/python -m pip install -q 'pip==$(PIP_VERSION)'
	$(SDK_OLD2)/bin/python -m pip install -q -c requirements/$(SDK_OLD2:.venv-%=%).txt -e . $(SDK_TEST_DEPS) $(SDK_OLD2_PINS)
	touch $@

$(SDK_OLD3_STAMP): pyproject.toml requirements/$(SDK_OLD3:.venv-%=%).txt
	$(PYTHON) -m venv $(SDK_OLD3)
	$(SDK_OLD3)/bin/python -m pip install -q 'pip==$(PIP_VERSION)'
	$(SDK_OLD3)/bin/python -m pip install -q -c requirements/$(SDK_OLD3:.venv-%=%).txt -e . $(SDK_TEST_DEPS) $(SDK_OLD3_PINS)
	touch $@

$(SDK_AIO_STAMP): pyproject.toml requirements/$(SDK_AIO:.venv-%=%).txt
	$(PYTHON) -m venv $(SDK_AIO)
	$(SDK_AIO)/bin/python -m pip install -q 'pip==$(PIP_VERSION)'
	$(SDK_AIO)/bin/python -m pip install -q -c requirements/$(SDK_AIO:.venv-%=%).txt -e . $(SDK_TEST_DEPS) $(SDK_AIO_PINS)
	touch $@

test-sdk-majors: $(SDK_OLD1_STAMP) $(SDK_OLD2_STAMP) $(SDK_OLD3_STAMP) $(SDK_AIO_STAMP)
	$(SDK_OLD1)/bin/python -m pytest -q -p no:cacheprovider $(SDK_TESTS)
	$(SDK_OLD2)/bin/python -m pytest -q -p no:cacheprovider $(SDK_TESTS)
	$(SDK_OLD3)/bin/python -m pytest -q -p no:cacheprovider \
		-W "ignore:AgentStatePydantic has been moved:DeprecationWarning" $(SDK_OLD3_TESTS)
	$(SDK_AIO)/bin/python -m pytest -q -p no:cacheprovider $(SDK_AIO_TESTS)

test: $(VENV)/.test $(BACKENDS_STAMP) $(SDK_OLD1_STAMP) $(SDK_OLD2_STAMP) $(SDK_OLD3_STAMP) $(SDK_AIO_STAMP)
	$(PY) -m ruff check src tests examples bench
	$(PY) -m ruff format --check src tests examples bench
	$(PY) -m mypy
	$(PY) -m pytest
	$(MAKE) test-sdk-majors

# The newest versions the extras allow, unpinned, in a venv made anew each time: the SDK and framework
# instrumentation tests and the rerun of SDK calls. Run it before a release; fix what it finds in
# steptrace, then `make pins`.
LATEST := .venv-latest
LATEST_TESTS := tests/test_instrument_*.py tests/test_rerun_sdk.py

test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip
	$(LATEST)/bin/python -m pip install -q --upgrade -e '.[test]'
	$(LATEST)/bin/python -m pip list 2>/dev/null | grep -iE '^(openai|anthropic|google-genai|mcp|openai-agents|langgraph|langchain-core|langchain-openai|boto3|pydantic-ai-slim) '
	$(LATEST)/bin/python -m pytest -q -p no:cacheprovider $(LATEST_TESTS)

# Regenerates requirements/*.txt from fresh venvs resolved today, with no constraints.
PINS_WORK := .venv-pins
define freeze
	rm -rf $(PINS_WORK)
	$(PYTHON) -m venv $(PINS_WORK)
	$(PINS_WORK)/bin/python -m pip install -q 'pip==$(PIP_VERSION)'
	$(PINS_WORK)/bin/python -m pip install -q $(2)
	{ echo "# Exact versions for $(1). Generated by 'make pins'; do not edit by hand."; \
	  $(PINS_WORK)/bin/python -m pip freeze --exclude-editable --exclude steptrace; } > requirements/$(1).txt
endef

pins:
	$(call freeze,test,-e '.[test]')
	$(call freeze,phoenix,'arize-phoenix==$(PHOENIX_VERSION)' 'rotel==$(ROTEL_VERSION)')
	$(call freeze,$(SDK_OLD1:.venv-%=%),-e . $(SDK_TEST_DEPS) $(SDK_OLD1_PINS))
	$(call freeze,$(SDK_OLD2:.venv-%=%),-e . $(SDK_TEST_DEPS) $(SDK_OLD2_PINS))
	$(call freeze,$(SDK_OLD3:.venv-%=%),-e . $(SDK_TEST_DEPS) $(SDK_OLD3_PINS))
	$(call freeze,$(SDK_AIO:.venv-%=%),-e . $(SDK_TEST_DEPS) $(SDK_AIO_PINS))
	rm -rf $(PINS_WORK)

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
	rm -rf $(VENV) $(BACKENDS) $(BENCH_VENV) $(SDK_OLD1) $(SDK_OLD2) $(SDK_OLD3) $(SDK_AIO) $(LATEST) $(PINS_WORK) steptrace-logs build dist
