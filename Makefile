# One command each, on a fresh machine: `make test` and `make demo` create .venv and install what they need.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check pipeline tests benchmarks
	$(BIN)/ruff format --check pipeline tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy pipeline

unit: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck unit

demo: $(STAMP)
	$(BIN)/jobimport demo

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_sandbox.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
