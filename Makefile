# The two commands a user needs: `make demo` and `make test`. Both create or reuse .venv.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv demo data-constrained test test-all test-slow lint format bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m mdm demo

# The data-constrained study (README "Data-constrained scaling"): sweep, collect, fit R_D* per family.
DC_SPEC := configs/sweeps/data-constrained.yaml
DC_OUT := data_constrained_out
data-constrained: $(STAMP)
	$(BIN)/python -m mdm data prepare books tokenizer=char vocab_size=256 --quiet
	$(BIN)/python -m mdm sweep run $(DC_SPEC)
	$(BIN)/python -m mdm sweep collect $(DC_SPEC) --params compute
	$(BIN)/python -m scaling fit $(DC_OUT)/results.csv --form data-constrained --json $(DC_OUT)/fit.json --plot $(DC_OUT)

# The eval tests that need the real benchmark files install them from a folder of copies:
# `make test MDM_TEST_BENCHMARK_SOURCE=DIR` (or install once: `mdm benchmarks install DIR`); else they skip.
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
	rm -rf $(VENV) runs data/cache demo_out data_constrained_out
