# The two set-up commands are `make run` and `make test`; each builds .venv from the project's
# files first (python3 -m venv + pip, pinned by pyproject.toml and requirements.lock).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast ui bench lint sample clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[dev]"
	$(BIN)/python tools/check_pins.py
	touch $(STAMP)

## run: the whole pipeline on the bundled synthetic sample (or POD_LANDING_DIR) into data/
run: $(STAMP)
	$(BIN)/pod run

# Test processes per tier (pytest-xdist): the build machine's two cores. Tests that read the same
# session-scoped pipeline runs stay on one worker (--dist loadgroup); TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup

## test: pin check, lint, then the whole test suite in its two tiers (what CI runs); each tier
## prints its own duration and slowest tests, and both run even when the first fails
test: $(STAMP)
	$(BIN)/python tools/check_pins.py
	$(MAKE) --no-print-directory lint
	$(PYTEST) -m "not slow"; fast=$$?; $(PYTEST) -m slow; slow=$$?; \
	    echo "make test: fast tier exit $$fast, slow tier exit $$slow"; test $$fast -eq 0 -a $$slow -eq 0

## test-fast: the fast tier alone (unit, contract, dbt and small in-process pipeline tests)
test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

## ui: the Dagster UI on the same instance and data as `make run` (http://127.0.0.1:3000)
ui: $(STAMP)
	$(BIN)/pod ui

## bench: the benchmark (see README, "Scale and speed")
bench: $(STAMP)
	$(BIN)/pod bench

lint: $(STAMP)
	$(BIN)/ruff check pod_pipeline pod_devtools tests tools
	$(BIN)/sqlfluff lint dbt_project/models --disable-progress-bar

## sample: regenerate the bundled synthetic sample (deterministic)
sample: $(STAMP)
	rm -rf sample/landing
	$(BIN)/pod synth sample/landing --preset sample

clean:
	rm -rf data
