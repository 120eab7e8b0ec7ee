# Two commands set up a fresh machine (Python 3.11+); each does its own installing:
#   make serve   run the server on embedded defaults (SQLite + in-process bus)
#   make test    run the whole test suite (lint, types, layering, tests)
# Tooling comes from the committed uv.lock; uv itself is installed with pip if missing.

UV ?= $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")
PYTHON ?= python3

.PHONY: serve test install lint bench clean

$(UV):
	$(PYTHON) -m pip install --user --quiet uv

install: $(UV)
	$(UV) sync --frozen --quiet

serve: install
	$(UV) run --frozen tether serve

lint: install
	$(UV) run --frozen ruff check src tests bench
	$(UV) run --frozen ruff format --check src tests bench
	$(UV) run --frozen mypy
	$(UV) run --frozen lint-imports

test: lint
	$(UV) run --frozen pytest -q -p no:cacheprovider

bench: install
	$(UV) run --frozen python -m bench

clean:
	rm -rf .venv .mypy_cache .pytest_cache .ruff_cache tether-data
