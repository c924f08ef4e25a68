# HomeVitals: `make demo` runs the pipeline on simulated devices; `make test` runs every check.
VENV := .venv/bin

.PHONY: setup demo test lock lock-check lint typecheck pytest services-up services-down bench soak clean

setup:
	@scripts/setup.sh

demo: setup
	$(VENV)/homevitals demo

test: setup lock-check
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy
	$(VENV)/pytest

# uv.lock pins every Python dependency with hashes; `make lock` re-resolves after a
# pyproject.toml edit, `make lock ARGS=--upgrade` takes new releases (docs/install.md).
lock: setup
	scripts/lock.sh $(ARGS)

lock-check: setup
	scripts/lock.sh --check
	$(VENV)/python -m readings.wire_schema --check

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

# The whole-chain fault scenarios of tests/faults (issue #13), longer; prints the counts.
READINGS ?= 5000
SEED ?= 13
ROUNDS ?= 1
soak: setup
	$(VENV)/python benchmarks/soak.py --readings $(READINGS) --seed $(SEED) --rounds $(ROUNDS) \
		$(foreach s,$(SCENARIOS),--scenario $(s))

clean: services-down
	rm -rf .homevitals
