# tgfleet: `make demo` and `make test` work on a fresh clone with nothing but Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# What each target needs: the demo the embedded services, the tests everything.
DEMO_STAMP := $(VENV)/.installed-demo
DEV_STAMP := $(VENV)/.installed-dev
SRC := tgfleet tests bench migrations examples celeryconfig.py

.PHONY: demo test test-unit lint fmt typecheck services services-down clean venv i18n

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[embedded]'
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(DEMO_STAMP)

venv: $(DEV_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/tgfleet demo $(DEMO_ARGS)

# Everything, on real PostgreSQL, Redis, Celery workers and the simulator. TEST_JOBS
# pytest processes, each with services of its own, take whole test files in turn
# (TEST_JOBS=0: one process).
TEST_JOBS ?= 2
test: $(DEV_STAMP)
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadfile $(PYTEST_ARGS)

# The unit layer alone: pure logic, no services, seconds.
test-unit: $(DEV_STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: $(DEV_STAMP)
	$(BIN)/ruff check $(SRC)
	$(BIN)/ruff format --check $(SRC)

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

fmt: $(DEV_STAMP)
	$(BIN)/ruff format $(SRC)
	$(BIN)/ruff check --fix $(SRC)

# The built-in app's translations: extract the messages, update every language's
# catalog (translators edit the .po files), compile them (the .mo files are committed).
APP_DIR := tgfleet/bots/apps/matchmaking
i18n: $(DEV_STAMP)
	$(BIN)/pybabel extract --no-location --sort-output -k N_ --project=tgfleet \
		-o $(APP_DIR)/locales/matchmaking.pot $(APP_DIR)
	$(BIN)/pybabel update --no-fuzzy-matching -D matchmaking -i $(APP_DIR)/locales/matchmaking.pot \
		-d $(APP_DIR)/locales
	$(BIN)/pybabel compile --statistics -D matchmaking -d $(APP_DIR)/locales

services: $(DEMO_STAMP)
	$(BIN)/tgfleet dev up

services-down: $(DEMO_STAMP)
	$(BIN)/tgfleet dev down

clean:
	-test -x $(BIN)/tgfleet && $(BIN)/tgfleet dev down
	rm -rf .tgfleet .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
