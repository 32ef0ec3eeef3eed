# One command each, on a fresh machine: `make demo` and `make test` create .venv and install what they need.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHROMIUM ?= /usr/bin/chromium

.PHONY: test demo lint typecheck unit browser bench clean

$(STAMP): pyproject.toml setup.py pipeline/_csvscan.c pipeline/_jsonrows.c
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The summary.html test opens the page in a real headless Chromium (Debian's package, not a downloaded build).
browser:
	@if [ ! -x "$(CHROMIUM)" ]; then \
		echo "installing Debian's chromium for the summary.html browser test"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check pipeline tests benchmarks
	$(BIN)/ruff format --check pipeline tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy pipeline

unit: $(STAMP) browser
	$(BIN)/python -m pytest -q -p no:cacheprovider

test: lint typecheck unit

demo: $(STAMP)
	$(BIN)/jobimport demo

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_sandbox.py
	$(BIN)/python benchmarks/bench_dry_run.py
	$(BIN)/python benchmarks/bench_submit.py
	$(BIN)/python benchmarks/bench_reports.py
	$(BIN)/python benchmarks/bench_refdata.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
