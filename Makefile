# heimdall: the two commands a newcomer needs are `make quickstart` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The install is redone when pyproject.toml or constraints.txt change, or the checkout moves.
INSTALL_KEY := $(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)-$(shell echo $(CURDIR) | sha256sum | cut -c1-8)
STAMP := $(VENV)/.heimdall-installed-$(INSTALL_KEY)
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: install quickstart test test-fast lint docs docs-gen docs-serve bench docker-validate up down logs train-docker stack-local clean help

help:
	@echo "make quickstart   install if needed, then train the quickstart profile (embedded MLflow, CPU)"
	@echo "make test         install if needed, then lint and run the whole test suite"
	@echo "make test-fast    ruff, the layer contract and the tests marked neither slow nor integration:"
	@echo "                  no PostgreSQL, S3 or mlflow server needed; under 5 minutes on 2 cores"
	@echo "make docs         build the documentation site into site/ (mkdocs build --strict)"
	@echo "make docs-gen     regenerate docs/reference/cli.md and configuration.md from the code"
	@echo "make bench        run the benchmarks in bench/ (prints numbers and ratios)"
	@echo "make up|down|logs the docker compose stack (PostgreSQL, MinIO, mlflow server)"

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test,docker-lint]"
	@rm -f $(VENV)/.heimdall-installed-*
	@touch $@

quickstart: install
	$(BIN)/heimdall train --config configs/quickstart.yaml

test: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	# the fast lane: markers in pyproject.toml; TESTS_WITHOUT_SERVICES=1 makes any service a test starts fail
	TESTS_WITHOUT_SERVICES=1 $(BIN)/pytest -m "not slow and not integration" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

docs: install
	$(BIN)/mkdocs build --strict --site-dir site

docs-gen: install
	$(BIN)/python scripts/gen_reference.py

docs-serve: install
	$(BIN)/mkdocs serve

bench: install
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b $(BENCH_ARGS) || exit 1; done

docker-validate:
	PYTHON=$(BIN)/python bash docker/validate.sh

up:
	docker compose -f docker/docker-compose.yml --env-file .env up -d

down:
	docker compose -f docker/docker-compose.yml --env-file .env down

logs:
	docker compose -f docker/docker-compose.yml --env-file .env logs -f --tail=100

train-docker:
	docker compose -f docker/docker-compose.yml --env-file .env --profile train run --rm trainer \
		train --config configs/default.yaml $(ARGS)

clean:
	rm -rf outputs mlartifacts mlflow.db .pytest_cache
