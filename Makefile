# The single entry point for people and CI: `make run`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-quick lint typecheck bench proto sample-config screenshots sysdeps-test dist clean

# The runtime alone for `make run`; the dev and test extras on top of it for everything else.
RUNTIME := $(VENV)/.runtime

$(RUNTIME): pyproject.toml
	@PYTHON=$(PYTHON) scripts/sysdeps.sh venv
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "AMOSKYS needs Python >= 3.11 (found: $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	@touch $@

$(STAMP): $(RUNTIME)
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

## Start the appliance on embedded defaults (pass flags with ARGS="--data-dir /tmp/a").
run: $(RUNTIME)
	@PYTHON=$(PYTHON) scripts/sysdeps.sh run
	@echo "the amoskys command: $(CURDIR)/$(BIN)/amoskys (amoskys --help lists the others)"
	MALLOC_ARENA_MAX=2 $(BIN)/amoskys run $(ARGS)

## Lint, type-check (mypy strict) and run the whole test suite (fails when no test ran).
test: $(STAMP) sysdeps-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/gen_proto.py --check
	$(BIN)/mypy
	$(BIN)/pytest

## The tests that need neither root nor a system tool, without the end-to-end ones: under a minute.
test-quick: $(STAMP)
	$(BIN)/pytest -m "not e2e and not needs_root and not needs_tool"

sysdeps-test:
	@PYTHON=$(PYTHON) scripts/sysdeps.sh test

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## mypy strict on amoskys/ (settings in pyproject.toml [tool.mypy]; the generated amoskys/proto/ excluded).
typecheck: $(STAMP)
	$(BIN)/mypy

## Run benchmarks/ and write benchmarks/RESULTS.md.
bench: $(STAMP)
	@PYTHON=$(PYTHON) scripts/sysdeps.sh bench
	$(BIN)/python benchmarks/run.py

## Regenerate docs/screenshots/*.png from a real appliance on live traffic (scripts/screenshots.py).
## Needs root: it makes a network namespace and a veth pair and replays pcaps onto it.
screenshots: $(STAMP)
	@[ "$$(id -u)" -eq 0 ] || { echo "make screenshots needs root: it makes a network namespace and a veth pair, captures on it and replays traffic (run: sudo make screenshots)"; exit 1; }
	@PYTHON=$(PYTHON) scripts/sysdeps.sh test
	$(BIN)/python scripts/screenshots.py

## Regenerate amoskys/proto/ from protos/.
proto: $(STAMP)
	$(BIN)/python scripts/gen_proto.py

## Build dist/amoskys.pyz: one executable file (shiv) with every dependency, for this machine's CPU
## (x86_64 or aarch64) and CPython 3.11-3.13; ARCH=aarch64 OUT=dist/amoskys-aarch64.pyz for the other.
ARCH ?= $(shell uname -m)
OUT ?= dist/amoskys.pyz
dist: $(STAMP)
	$(BIN)/python scripts/build_pyz.py --arch $(ARCH) --out $(OUT)

## Rewrite the root amoskys.toml and agent.toml, assembled from amoskys/samples/ and each collector's sample.toml.
sample-config: $(STAMP)
	$(BIN)/amoskys config sample > amoskys.toml.tmp && mv amoskys.toml.tmp amoskys.toml
	$(BIN)/amoskys config sample --agent > agent.toml.tmp && mv agent.toml.tmp agent.toml

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
