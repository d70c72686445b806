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
run: ## set up if needed, then the closed-loop demo on a fresh stack; it stays up for exploring until Ctrl-C
	@scripts/setup.sh
	$(VENV)/bin/loopline demo

.PHONY: up down status
up: ## start the embedded stack in the background
	$(VENV)/bin/loopline up --detach
down: ## stop the embedded stack
	$(VENV)/bin/loopline down
status: ## health of each part of the embedded stack
	$(VENV)/bin/loopline status

.PHONY: test
test: proto-check ## lint and every test tier that can run on this machine (two lanes at once)
	$(PY) scripts/test_tiers.py

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
	@command -v wrk >/dev/null || apt-get install -y -q wrk
	$(PY) bench/inference.py

.PHONY: bench-features
bench-features: ## GetOnlineFeatures vs Feast SDK and `feast serve` (writes bench/results/features.json)
	.venvs/features/bin/python bench/features.py

.PHONY: bench-drift
bench-drift: ## drift benchmark: PSI and KS vs Evidently and scipy, consumer records/s (bench/results/drift.json)
	$(PY) bench/drift.py

.PHONY: bench-training
bench-training: ## MLflow logging overhead of a training job, logging on vs off (writes bench/results/training.json)
	.venvs/training/bin/python bench/training.py

.PHONY: bench-registry
bench-registry: ## registry ResolveAlias/ListVersions vs MLflow's own client (writes bench/results/registry.json)
	$(PY) bench/registry.py

.PHONY: bench-loop
bench-loop: ## drift -> v2 promoted and bad challenger -> rolled back, short and default profiles (bench/results/loop.json)
	$(PY) bench/loop.py

.PHONY: manifests dashboards deploy-check
manifests: ## render manifests/ (plain YAML for kubectl) from charts/loopline; a test keeps them in sync
	$(PY) scripts/render_manifests.py
dashboards: ## regenerate the Grafana dashboards (charts/loopline/dashboards) from scripts/dashboards.py
	$(PY) scripts/dashboards.py
deploy-check: ## the deployment tests only: helm, schemas, policy, promtool, images, skaffold (tests/deploy)
	$(PY) -m pytest tests/deploy

.PHONY: bench-rollout
bench-rollout: ## rollout decision times vs their bounds N*I+I and threshold*I+I (writes bench/results/rollout.json)
	$(PY) bench/rollout.py
