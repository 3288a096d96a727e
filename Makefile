# Two entry points, both self-contained from a fresh clone:
#   make demo   set up .venv and run the plugin on examples/
#   make test   set up .venv and run lint, type checks and the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# The suite is mostly pytest sessions in subprocesses, one CPU each: two xdist workers
# take it from about 530 s to 290-320 s on a 2-vCPU machine (2026-11-30). worksteal: a few
# tests take 10-40 s, and an idle worker takes over the other's queue. Three workers were no
# faster (536 s of pytest against 535 s in the same spell, 2026-12-02).
TEST_WORKERS ?= 2

.PHONY: demo test install lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# A real (non-editable) install, so the tests see exactly what users get: package data included.
install: $(BIN)/python
	rm -rf build  # setuptools reuses build/lib: a module removed from the source would ship again
	$(BIN)/python -m pip install -q --force-reinstall --no-deps .
	$(BIN)/python -m pip install -q ".[test]"

demo: install
	$(BIN)/pytest examples -p no:cacheprovider --perf-record \
		--perf-report .perfguard/report.md --perf-json .perfguard/report.json
	$(BIN)/perfguard runs --limit 5

lint: install
	$(BIN)/ruff check pytest_perfguard tests benchmarks examples
	$(BIN)/mypy

# Bytecode cached, as Python does by default: where PYTHONDONTWRITEBYTECODE is set (some CI
# images set it), each of the suite's pytest subprocesses compiles pytest, the plugin (which
# pytest rewrites, as every plugin) and their dependencies again: 690 s against 432 s for
# the suite on a 2-vCPU machine (2026-12-02).
test: lint
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)
