# relay: two commands matter on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast test-deps lint bench clean venv

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

# `make test` on a fresh Debian machine: as root it installs what the tests need first
# (scripts/test-deps); without root it stops at once, naming what is missing.
test: test-deps
	$(MAKE) lint
	$(BIN)/pytest -q

# The fast tier: no servers, no processes, under 30 s (tests marked `slow` are left out).
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

test-deps:
	scripts/test-deps

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
