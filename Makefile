# The front door. `make help` lists the targets; CI calls `make test`.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3.11
TOOLS := .scrm/tools
# uv from PATH when present, else a private copy fetched from PyPI on first use.
UV := $(or $(shell command -v uv 2>/dev/null),$(TOOLS)/bin/uv)
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)

DEMO ?=
DEMO_RATE ?= 20

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[1m%-10s\033[0m %s\n", $$1, $$2}'

$(TOOLS)/bin/uv:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv

.venv/.installed: uv.lock pyproject.toml $(wildcard */pyproject.toml services/*/pyproject.toml) | $(UV)
	$(UV) sync --frozen
	@touch $@

.PHONY: install
install: .venv/.installed ## install the workspace from the lock file

.PHONY: lock
lock: | $(UV) ## refresh uv.lock after changing dependencies
	$(UV) lock

.PHONY: run
run: install ## start the whole platform on the embedded default (DEMO=1 adds demo traffic)
	.venv/bin/scrm-devstack $(if $(DEMO),--demo --demo-rate $(DEMO_RATE),)

.PHONY: test
test: install ## lint the architecture, then run every test (unit + integration)
	.venv/bin/lint-imports
	.venv/bin/pytest

.PHONY: unit
unit: install ## unit tests only (no sockets)
	.venv/bin/pytest -m "not integration"

.PHONY: lint
lint: install ## ruff and the import contracts
	.venv/bin/ruff check .
	.venv/bin/lint-imports

.PHONY: schemas
schemas: install ## regenerate the JSON Schema files of every event
	.venv/bin/scrm schemas export

.PHONY: bench
bench: install ## run the benchmarks under bench/ and print their figures
	.venv/bin/python -m bench

.PHONY: up
up: ## full stack with Apache Kafka, PostgreSQL, Prometheus, Grafana (needs Docker)
	docker compose up -d --build

.PHONY: down
down: ## stop the docker-compose stack
	docker compose down

.PHONY: clean
clean: ## remove local data of the embedded stack
	rm -rf .scrm/data
