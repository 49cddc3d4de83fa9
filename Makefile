# relay: two commands matter on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench crash clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/relay demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# The long run of the kill harness (docs/crash-consistency.md): 210 SIGKILLs of real processes.
# CRASH_SEED=N replays a run; a failure prints its seed.
CRASH_POINTS ?= 210
CRASH_JOBS ?= 2
crash: $(STAMP)
	$(BIN)/python -m tests.crash.harness --points $(CRASH_POINTS) --jobs $(CRASH_JOBS) $(if $(CRASH_SEED),--seed $(CRASH_SEED))

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
