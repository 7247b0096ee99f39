# discogsography: `make run` starts everything on this machine, `make test` runs the whole suite.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PY := .venv/bin/python
CARGO ?= $(shell command -v cargo 2>/dev/null || echo $(HOME)/.cargo/bin/cargo)
NATIVE := extractor/rust_normalizer/Cargo.toml
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: help install uv deps native assets infra-up infra-down infra-status schema run run-detached stop test lint typecheck \
        pytest bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

uv:
	@command -v uv >/dev/null 2>&1 || [ -x "$(HOME)/.local/bin/uv" ] || python3 -m pip install --quiet --user uv \
	  || { echo "could not install uv from PyPI"; exit 1; }

deps: uv ## Python dependencies (uv.lock, all workspace members)
	@$(UV) sync --all-packages --frozen --quiet

# Optional: without it (no cargo, or a failed build) releases are normalised in Python, the same
# records about 3x slower to parse; the extractor says which at start. CI's tests require it.
native: ## the extractor's native release normaliser (Rust, no crates, offline)
	@if [ ! -x "$(CARGO)" ]; then echo "cargo not found: the extractor normalises releases in Python (slower)"; \
	elif ! $(CARGO) build --release --offline --quiet --manifest-path $(NATIVE); then \
	  echo "WARNING: the native normaliser did not build: the extractor normalises releases in Python (slower)"; fi

assets: ## front-end packages from npm, served locally by api and dashboard
	@if [ -f package.json ]; then \
	  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then npm ci --no-audit --no-fund --silent; fi; \
	  if [ -x scripts/vendor-assets.sh ]; then scripts/vendor-assets.sh; fi; \
	fi

install: deps native assets ## everything the project needs (Python deps, Debian packages, Neo4j launcher, assets)
	@scripts/infra.sh install
	@scripts/install-compose.sh

infra-up: install ## start PostgreSQL, Redis, RabbitMQ and Neo4j on 127.0.0.1 (idempotent)
	@scripts/infra.sh up

infra-down: ## stop the local stores
	@scripts/infra.sh down

infra-status: ## show which stores answer
	@scripts/infra.sh status

schema: infra-up ## Neo4j constraints/indexes and PostgreSQL migrations (idempotent)
	@$(PY) -m schema_init

run: schema ## start every service, ingest the samples, print the URLs (Ctrl-C or `make stop` stops them)
	@$(PY) scripts/run_stack.py

run-detached: schema ## like `make run`, but in the background (stop with `make stop`)
	@$(PY) scripts/run_stack.py --detach

stop: ## stop the services started by `make run`
	@$(PY) scripts/run_stack.py --stop

lint:
	@$(PY) -m ruff check .
	@$(PY) -m ruff format --check .
	@if [ -x "$(CARGO)" ] && $(CARGO) clippy --version >/dev/null 2>&1 && $(CARGO) fmt --version >/dev/null 2>&1; \
	then $(CARGO) fmt --check --manifest-path $(NATIVE) \
	  && $(CARGO) clippy --release --offline --quiet --manifest-path $(NATIVE) -- -D warnings; fi

typecheck:
	@$(PY) -m mypy .

pytest: schema
	@$(PY) -m pytest

test: install infra-up schema lint typecheck pytest ## ruff, mypy and the whole pytest suite against real services

# The bench stacks get the normal stack's Neo4j memory (the test stacks' 1g heap and 512 MB page
# cache are too small for the 1M-release graphs), so the numbers are those of `make run`.
BENCH_NEO4J_MEMORY := NEO4J_HEAP=2g NEO4J_PAGECACHE_MB=2048

bench: install ## benchmarks on isolated local stacks (ports +90; the api's on +91), one JSON line each; your data is untouched
	@set -e; eval "$$(scripts/stack-env.sh 90)"; export $(BENCH_NEO4J_MEMORY); \
	  scripts/infra.sh up >/dev/null; $(PY) -m schema_init >/dev/null 2>&1; \
	  export BENCH_PIPELINE_UPDATE=$${BENCH_PIPELINE_UPDATE:-1}; \
	  status=0; for b in benchmarks/bench_*.py; do [ $$b = benchmarks/bench_api.py ] || $(PY) $$b || status=1; done; \
	  [ -n "$$BENCH_KEEP_STACK" ] || scripts/infra.sh down >/dev/null; \
	  eval "$$(scripts/stack-env.sh 91)"; export $(BENCH_NEO4J_MEMORY); \
	  scripts/infra.sh up >/dev/null; $(PY) -m schema_init >/dev/null 2>&1; \
	  $(PY) benchmarks/bench_api.py || status=1; \
	  [ -n "$$BENCH_KEEP_STACK" ] || scripts/infra.sh down >/dev/null; exit $$status

clean: stop infra-down ## stop everything and delete local data
	rm -rf .local
