# Loopline developer entry points. Thin on purpose: each target calls a script or a tool.
# `make help` lists them.

SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
# .venv/bin first: helm, kubectl, buf, noida-db and mlflow live there.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# mypy checks every service package (loopline_<dir name>) that exists.
PACKAGES := $(patsubst services/%/,loopline_%,$(sort $(dir $(wildcard services/*/pyproject.toml))))

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: setup
setup: ## install everything a developer needs (idempotent; quick on a re-run)
	@scripts/setup.sh

.PHONY: run
run: ## run the platform on this machine (the embedded stack, in the foreground; Ctrl-C stops it)
	@[ -x $(VENV)/bin/loopline ] || scripts/setup.sh
	$(VENV)/bin/loopline up

.PHONY: up down status
up: ## start the embedded stack in the background
	$(VENV)/bin/loopline up --detach
down: ## stop the embedded stack
	$(VENV)/bin/loopline down
status: ## health of each part of the embedded stack
	$(VENV)/bin/loopline status

.PHONY: test
test: lint proto-check ## run every test tier that can run on this machine (lint first)
	$(PY) -m pytest

.PHONY: lint
lint: ## ruff and mypy on service code and tests, buf lint on protos
	$(VENV)/bin/ruff check services scripts tests
	$(VENV)/bin/mypy $(addprefix -p ,$(PACKAGES))
	$(PY) scripts/protos.py lint

.PHONY: proto proto-check proto-lint
proto: ## regenerate the Python next to every .proto
	$(PY) scripts/protos.py gen
proto-check: ## fail if the committed generated Python is stale
	$(PY) scripts/protos.py check
proto-lint: ## buf lint
	$(PY) scripts/protos.py lint

.PHONY: clean
clean: ## remove the embedded stack's state (stop it first) and caches
	rm -rf .loopline .mypy_cache .ruff_cache
