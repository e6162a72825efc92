# tgfleet: `make demo` and `make test` work on a fresh clone with nothing but Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SRC := tgfleet tests bench migrations celeryconfig.py

.PHONY: demo test lint fmt typecheck services services-down clean venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/tgfleet demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check $(SRC)
	$(BIN)/ruff format --check $(SRC)

fmt: $(STAMP)
	$(BIN)/ruff format $(SRC)
	$(BIN)/ruff check --fix $(SRC)

typecheck: $(STAMP)
	$(BIN)/mypy

services: $(STAMP)
	$(BIN)/tgfleet dev up

services-down: $(STAMP)
	$(BIN)/tgfleet dev down

clean:
	-test -x $(BIN)/tgfleet && $(BIN)/tgfleet dev down
	rm -rf .tgfleet .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
