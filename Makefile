# Two commands matter: `make run` and `make test` (see README). Everything else supports them.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

LOCK := requirements.lock
PIP_TOOLS := pip-tools==7.6.2

.PHONY: run test install postgres lint bench clean lock

# Installs exactly the locked versions, each checked against its sha256 (torch is the CPU build, no CUDA
# packages); then the project itself without dependencies and without fetching build tools (they are locked).
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

# Brings the hashed lock in step with pyproject.toml (runtime, dev and build), keeping the versions already
# locked where they still fit; `make lock UPGRADE=1` re-resolves everything to the newest allowed versions.
# pip-tools runs from a throwaway venv; the torch CPU wheel must be reachable through pip's configuration.
lock:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  $(PYTHON) -m venv "$$tmp/venv" && \
	  "$$tmp/venv/bin/pip" install --quiet $(PIP_TOOLS) && \
	  CUSTOM_COMPILE_COMMAND="make lock" "$$tmp/venv/bin/pip-compile" --quiet $(if $(UPGRADE),--upgrade) --generate-hashes \
	    --allow-unsafe --strip-extras --extra dev --build-deps-for editable \
	    --no-emit-find-links --no-emit-index-url -o $(LOCK) pyproject.toml 2>"$$tmp/log" || \
	  { grep -v '^WARNING: Location' "$$tmp/log" >&2; exit 1; }
	@if grep -qi '^nvidia-' $(LOCK) || ! grep -q '^torch==.*+cpu ' $(LOCK); then \
	  echo "$(LOCK): torch is not the CPU build; make the torch CPU wheel reachable to pip and rerun" >&2; \
	  exit 1; \
	fi

# PostgreSQL server binaries for the tests; installed from the OS packages when missing and we are root.
postgres:
	@if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "PostgreSQL binaries found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	else \
	  echo "PostgreSQL binaries missing and not root: the PostgreSQL tests will skip"; \
	fi

run: install
	$(BIN)/python -m bot serve

# Two pytest workers, each taking whole test files (module fixtures stay shared): half the suite waits on
# leases, child processes and servers, so two files at a time took 7 min instead of 14 on 2 cores. The 30
# slowest tests are listed at the end of every run (what to shorten next).
test: install postgres
	$(BIN)/python -m pytest -q -ra -n 2 --dist loadfile --durations=30

lint: install
	$(BIN)/ruff check bot storage tests bench testbed

bench: install
	$(BIN)/python -m bench.engine
	$(BIN)/python -m bench.engine_server
	$(BIN)/python -m bench.slack
	$(BIN)/python -m bench.claims
	$(BIN)/python -m bench.chaos
	$(BIN)/python -m bench.scale

clean:
	rm -rf $(VENV) var .pytest_cache
