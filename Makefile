# Two commands set up a fresh machine (Python 3.11+); each does its own installing:
#   make serve   run the server on embedded defaults (SQLite + in-process bus)
#   make test    run the whole test suite (lint, types, layering, tests)
# Everything comes from the committed uv.lock. uv itself is the one on PATH if there is
# one, else it is installed into a private venv in .tools/ (python3 -m venv): that works
# with an externally managed Python (PEP 668) and touches nothing outside the checkout.
# After `make serve`, the tools are in .venv/bin (.venv/bin/tether ...), no uv needed.

PYTHON ?= python3
TOOLS := $(CURDIR)/.tools
UV ?= $(shell command -v uv 2>/dev/null || echo "$(TOOLS)/bin/uv")
VENV := $(CURDIR)/.venv
RUN := $(UV) run --frozen

.PHONY: serve test install runtime lint bench wheel clean

$(TOOLS)/bin/uv:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Tether needs Python 3.11+, $(PYTHON) is " + sys.version.split()[0])'
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv

# Everything: the server and the development tools (tests, linters, type checker).
# --inexact keeps the bench group (charts, profilers) once `make bench` has added it.
install: $(UV)
	$(UV) sync --frozen --quiet --inexact

# The server alone (no development tools); keeps any development tools already there.
runtime: $(UV)
	$(UV) sync --frozen --quiet --no-dev --inexact

serve: runtime
	$(VENV)/bin/tether serve

lint: install
	$(RUN) ruff check src tests bench
	$(RUN) ruff format --check src tests bench
	$(RUN) mypy
	$(RUN) lint-imports

test: lint
	$(RUN) pytest -q -rs -p no:cacheprovider

bench: install
	$(UV) sync --frozen --quiet --group bench
	$(RUN) --group bench python -m bench

# A wheel in dist/, for `pip install dist/tether-*.whl` (or pipx) on a server.
wheel: $(UV)
	$(UV) build --wheel --quiet

clean:
	rm -rf .venv .tools .mypy_cache .pytest_cache .ruff_cache dist tether-data
