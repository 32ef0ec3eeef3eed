# One command each, on a fresh machine: `make demo` and `make test` create .venv and install what they need.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHROMIUM ?= /usr/bin/chromium

.PHONY: test demo lint typecheck unit browser postgresql bench clean install

# pip and setuptools talk a lot (an editable install prints a banner even with --quiet): their output goes to
# $(VENV)/install.log, shown only when the install fails.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	@echo "installing jobimport and its dependencies into $(VENV) (log: $(VENV)/install.log)"
	@{ $(BIN)/pip install --upgrade pip && $(BIN)/pip install -e '.[dev]'; } > $(VENV)/install.log 2>&1 \
		|| { cat $(VENV)/install.log; echo "the install failed: see above (also in $(VENV)/install.log)"; exit 1; }
	@touch $(STAMP)

# A production install: a venv of its own under PREFIX with jobimport and its runtime dependencies only (no dev
# extras, not editable: the checkout can be removed afterwards). `make install PREFIX=/opt/jobimport` (as root).
PREFIX ?= /opt/jobimport
install:
	$(PY) -m venv $(PREFIX)/.venv
	$(PREFIX)/.venv/bin/pip install --quiet --upgrade pip
	$(PREFIX)/.venv/bin/pip install --quiet .
	@echo "installed: $(PREFIX)/.venv/bin/jobimport"

# The summary.html test opens the page in a real headless Chromium (Debian's package, not a downloaded build).
browser:
	@if [ ! -x "$(CHROMIUM)" ]; then \
		echo "installing Debian's chromium for the summary.html browser test"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

# The shared-ledger tests start a throw-away PostgreSQL server of their own (tests/conftest.py: initdb + pg_ctl in a
# temporary folder, as the postgres user when run as root): Debian's postgresql package provides the binaries.
postgresql:
	@if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 && ! command -v pg_ctl >/dev/null 2>&1; then \
		echo "installing Debian's postgresql for the shared-ledger tests"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check pipeline tests benchmarks
	$(BIN)/ruff format --check pipeline tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy pipeline

unit: $(STAMP) browser postgresql
	$(BIN)/python -m pytest -q -p no:cacheprovider

test: lint typecheck unit

# The sample has mistakes on purpose, so the import answers 1 (some rows need attention): that is the demo working.
demo: $(STAMP)
	@$(BIN)/jobimport demo || [ $$? -eq 1 ]

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_sandbox.py
	$(BIN)/python benchmarks/bench_dry_run.py
	$(BIN)/python benchmarks/bench_submit.py
	$(BIN)/python benchmarks/bench_scale.py
	$(BIN)/python benchmarks/bench_reports.py
	$(BIN)/python benchmarks/bench_refdata.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
