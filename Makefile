# Quick start: `make train` (set up and train the default experiment), `make test` (set up and test).
# Extra arguments: make train ARGS="experiment=tutorial_augmented trainer.epochs=3"
#                  make test PYTEST_ARGS="-k config"
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ocrexp-installed

.PHONY: train test data ui bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/ocrexp-train $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

data: $(STAMP)
	$(BIN)/ocrexp data fetch mnist

ui: $(STAMP)
	$(BIN)/ocrexp ui

bench: $(STAMP)
	$(BIN)/python benchmarks/epoch_throughput.py

clean:
	rm -rf outputs multirun .pytest_cache
