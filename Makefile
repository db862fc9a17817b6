# The two commands of the README: `make demo` and `make test`. Both create .venv when it is missing.
# Each installs what it needs and no more, with a stamp of its own: `make demo` vigil and its embedded broker
# (the `broker` extra), `make test` the test tools as well. A stamp is redone when pyproject.toml changes,
# so switching between the two never leaves one believing the other's install is its own.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_STAMP := $(VENV)/.installed-demo
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo demo-no-fault test lint bench clean

$(DEMO_STAMP): EXTRAS := broker
$(TEST_STAMP): EXTRAS := test,broker
$(DEMO_STAMP) $(TEST_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

demo: $(DEMO_STAMP)
	$(BIN)/vigil demo

demo-no-fault: $(DEMO_STAMP)
	$(BIN)/vigil demo --no-fault

lint: $(TEST_STAMP)
	$(BIN)/ruff check controller detectors tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy --strict controller detectors

test: lint
	$(BIN)/python -m pytest

bench: $(TEST_STAMP)
	$(BIN)/python -m benchmarks.replay_throughput

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist *.egg-info
