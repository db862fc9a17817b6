# The two commands of the README: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-no-fault test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/vigil demo

demo-no-fault: $(STAMP)
	$(BIN)/vigil demo --no-fault

lint: $(STAMP)
	$(BIN)/ruff check controller detectors tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy --strict controller detectors

test: lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/replay_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
