# Sproxxo fraud platform: the developer's front door (`make help` lists the targets).
# Test environments are tox's (tox.ini): `make test` runs `tox -e coverage`, like CI.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export BENTOML_HOME ?= $(CURDIR)/.sproxxo/bentoml
export OMP_NUM_THREADS ?= 1
UV ?= uv
PORT ?= 3000
ROWS ?= 200000

.PHONY: help uv install run train serve test test-unit test-integration lint typing \
        requirements bento containerize bench load drift clean

help: ## Show the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

uv: ## Install uv with pip when it is missing
	@command -v $(UV) >/dev/null 2>&1 || python3 -m pip install --quiet uv

install: uv ## Create the virtualenv exactly from uv.lock
	$(UV) sync --locked

run: install train serve ## Quick start: install, train on synthetic data, register, serve on :3000

train: ## Train on synthetic data and register the model (ROWS=...)
	$(UV) run python -m training.train --source synthetic --rows $(ROWS) --bootstrap

serve: ## Serve the active model on localhost:$(PORT)
	$(UV) run bentoml serve service:FraudScorer --host 127.0.0.1 --port $(PORT)

# Test, lint and typing runs are defined once, as tox envs (tox.ini); these targets call them.
test: install ## The whole test suite once, with the coverage floor (what CI runs)
	$(UV) run tox -e coverage

test-unit: install ## Fast tests only (no server processes)
	$(UV) run tox -e unit

test-integration: install ## Tests that start a real bentoml serve
	$(UV) run tox -e integration

lint: install ## pre-commit hooks: ruff, format, hygiene, uv lock --check, actionlint
	$(UV) run tox -e lint

typing: install ## mypy --strict on every Python folder, and the import-linter layers
	$(UV) run tox -e typing

requirements: ## Export runtime requirements from uv.lock into build/ and check them
	$(UV) run python -c "import sys; sys.path.insert(0, 'deploy'); import build_bento as b; b.export_requirements()"

bento: ## Build the versioned Bento (model version + git sha); prints the tag
	$(UV) run python deploy/build_bento.py

containerize: ## Turn the newest Bento into an OCI image (needs Docker/buildx)
	$(UV) run bentoml containerize $$($(UV) run bentoml list -o json | $(UV) run python -c "import json,sys; print(json.load(sys.stdin)[0]['tag'])") -t sproxxo-fraud:latest

bench: ## Side-by-side benchmark (in-process, FastAPI baseline, Bento service)
	$(UV) run python -m load.bench

load: ## Headless locust run against a running service (HOST=..., RUN_TIME=...)
	$(UV) run python -m load.run --host $${HOST:-http://127.0.0.1:$(PORT)} --run-time $${RUN_TIME:-60s}

drift: ## Drift report of the last day of predictions against the active model's reference
	$(UV) run python -m monitoring.drift --model $${MODEL:-latest} --since $$(date -u -d '1 day ago' +%FT%T) --out .sproxxo/reports/drift

clean: ## Remove local state (models, MLflow runs, prediction logs, reports)
	rm -rf .sproxxo build
