# HomeVitals: `make demo` runs the pipeline on simulated devices; `make test` runs every check.
VENV := .venv/bin

.PHONY: setup demo test lint typecheck pytest services-up services-down bench clean

setup:
	@scripts/setup.sh

demo: setup
	$(VENV)/homevitals demo

test: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy
	$(VENV)/pytest

lint: setup
	$(VENV)/ruff check . && $(VENV)/ruff format --check .

typecheck: setup
	$(VENV)/mypy

services-up: setup
	$(VENV)/homevitals services up

services-down:
	$(VENV)/homevitals services down

bench: setup
	for b in benchmarks/bench_*.py; do $(VENV)/python $$b || exit 1; done

clean: services-down
	rm -rf .homevitals
