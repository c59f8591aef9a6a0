# Quick start: `make train` (set up and train the default experiment), `make test` (set up and test).
# Extra arguments: make train ARGS="experiment=tutorial_augmented trainer.epochs=3"
#                  make test PYTEST_ARGS="-k config"
# Setup installs the exact versions in uv.lock (the ones the test suite passed with) into .venv with
# uv, which pip installs into that venv first: Python 3.11 and pip are all a machine needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ocrexp-installed
UV_VERSION := 0.13.10
# uv installs into $(VENV), keeps pip and itself there (--inexact), and never downloads a Python.
# --compile-bytecode: as pip does; without it a process that may not write __pycache__
# (PYTHONDONTWRITEBYTECODE, a read-only venv) compiles TensorFlow, Keras and MLflow on every start.
UV := UV_PROJECT_ENVIRONMENT=$(VENV) UV_PYTHON_DOWNLOADS=never $(BIN)/uv
SYNC := sync --frozen --inexact --compile-bytecode --extra dev --python $(BIN)/python

.PHONY: train test test-fast lock data ui bench clean

$(STAMP): pyproject.toml uv.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv==$(UV_VERSION)
	$(UV) $(SYNC)
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/ocrexp-train $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# Refresh the lock to the newest versions pyproject.toml allows; then run `make test` before committing it.
lock: $(STAMP)
	$(UV) lock --upgrade
	$(UV) $(SYNC)

data: $(STAMP)
	$(BIN)/ocrexp data fetch mnist

ui: $(STAMP)
	$(BIN)/ocrexp ui

bench: $(STAMP)
	$(BIN)/python benchmarks/epoch_throughput.py

clean:
	rm -rf outputs multirun .pytest_cache
