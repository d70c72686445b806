# Loopline developer entry points. Thin on purpose: each target calls a script or a tool.
# `make help` lists them.

SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
# .venv/bin first: helm, kubectl, buf, noida-db and mlflow live there.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Services with an environment of their own (feast, torch): their lock starts with `# own-venv`; their
# tests and type checks run in .venvs/<service>, everything else in .venv.
OWN_VENVS := $(sort $(patsubst services/%/requirements.lock,%,$(shell grep -l '^\# own-venv' services/*/requirements.lock 2>/dev/null)))
# mypy checks every service package (loopline_<dir name>) that exists, each in its environment.
ALL_PACKAGES := $(patsubst services/%/,%,$(sort $(dir $(wildcard services/*/pyproject.toml))))
DEV_PACKAGES := $(addprefix loopline_,$(filter-out $(OWN_VENVS),$(ALL_PACKAGES)))
EMPTY :=
SPACE := $(EMPTY) $(EMPTY)
# mypy finds each package from source (editable installs hide it behind an import hook).
MYPYPATH_ALL := protos:$(subst $(SPACE),:,$(addprefix services/,$(ALL_PACKAGES)))

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
	$(PY) -m pytest $(addprefix --ignore=tests/,$(OWN_VENVS))
	@set -e; for s in $(OWN_VENVS); do echo ".venvs/$$s/bin/python -m pytest tests/$$s"; \
	  .venvs/$$s/bin/python -m pytest tests/$$s; done

.PHONY: lint
lint: ## ruff and mypy on service code and tests, buf lint on protos
	$(VENV)/bin/ruff check services scripts tests
	MYPYPATH=$(MYPYPATH_ALL) $(VENV)/bin/mypy $(addprefix -p ,$(DEV_PACKAGES))
	@set -e; for s in $(OWN_VENVS); do echo ".venvs/$$s/bin/mypy -p loopline_$$s"; \
	  MYPYPATH=protos:services/common:services/$$s .venvs/$$s/bin/mypy -p loopline_$$s; done
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

.PHONY: bench-inference
bench-inference: ## inference server vs stock KServe 0.21 (REST and gRPC, one core each) → bench/results/inference.json
	@command -v wrk >/dev/null && command -v h2load >/dev/null || apt-get install -y -q wrk nghttp2-client
	$(PY) bench/inference.py

.PHONY: bench-registry
bench-registry: ## registry ResolveAlias/ListVersions vs MLflow's own client (writes bench/results/registry.json)
	$(PY) bench/registry.py
