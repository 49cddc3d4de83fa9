# relay: two commands matter on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast test-deps lint bench crash clean venv dist test-dist constraints

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# After a green `make test` with newer packages (pip install --upgrade ... in the venv):
# record them as the versions the suite passed with.
constraints: $(STAMP)
	{ sed -n '/^#/p' constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -vi '^relay=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

demo: $(STAMP)
	$(BIN)/relay demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# `make test` on a fresh Debian machine: as root it installs what the tests need first
# (scripts/test-deps); without root it stops at once, naming what is missing.
test: test-deps
	$(MAKE) lint
	$(BIN)/pytest -q

# The offline install kit: dist/relay-VERSION-offline-PYVER-PLATFORM.tar.gz (docs/offline-install.md).
dist: $(STAMP)
	$(BIN)/python scripts/make_dist.py

# Builds the real kit and installs it offline (a few minutes: every wheel); .ci/run runs it.
test-dist: $(STAMP)
	$(BIN)/pytest -q tests_dist

# The fast tier: no servers, no processes, under 30 s (tests marked `slow` are left out).
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

test-deps:
	scripts/test-deps

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# The long run of the kill harness (docs/crash-consistency.md): 210 SIGKILLs of real processes.
# CRASH_SEED=N replays a run; a failure prints its seed.
CRASH_POINTS ?= 210
CRASH_JOBS ?= 2
CRASH_ROTATION_POINTS ?= 30
crash: $(STAMP)
	$(BIN)/python -m tests.crash.harness --points $(CRASH_POINTS) --jobs $(CRASH_JOBS) $(if $(CRASH_SEED),--seed $(CRASH_SEED))
	$(BIN)/python -m tests.crash.rotations --points $(CRASH_ROTATION_POINTS) $(if $(CRASH_SEED),--seed $(CRASH_SEED))

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
