# The two commands a user needs: `make demo` and `make test`. Both create or reuse .venv.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv demo test test-all test-slow lint format bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m mdm demo

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check mdm scaling tests bench
	$(BIN)/ruff format --check mdm scaling tests bench

format: $(STAMP)
	$(BIN)/ruff format mdm scaling tests bench
	$(BIN)/ruff check --fix mdm scaling tests bench

bench: $(STAMP)
	$(BIN)/python -m mdm bench train

clean:
	rm -rf $(VENV) runs data/cache demo_out
