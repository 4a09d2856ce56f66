# The platform's commands. Thin targets over `python -m pipelines`; `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

ENV ?= local
export MLOPS_ENV := $(ENV)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
PORT ?= 3000

# Spark binds to loopback; libraries report nothing home.
export SPARK_LOCAL_IP ?= 127.0.0.1
export GX_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export BENTOML_DO_NOT_TRACK := true
export DO_NOT_TRACK := 1

.PHONY: help setup check-java train test test-fast serve services-up services-down services-status \
	bench lint format lock clean distclean

help: ## Show this help
	@echo "usage: make <target> [ENV=local|services|aws]"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-11s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(STAMP) ## Create .venv and install the pinned stack (checks Java 17+ first)

$(STAMP): pyproject.toml constraints.txt
	@$(MAKE) check-java
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 is needed, found {sys.version.split()[0]} at {sys.executable}"'
	@echo "Creating $(VENV) and installing the pinned stack (a few minutes on first use)..."
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]' \
		2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
	$(BIN)/pip check
	@touch $(STAMP)

check-java: ## Check that Java 17+ (for Spark) is installed
	@if ! command -v java >/dev/null 2>&1; then \
		echo "Java 17+ is needed by Spark and was not found. Install it with:"; \
		echo "  sudo apt-get install -y openjdk-17-jre-headless   # Debian/Ubuntu"; \
		echo "  brew install openjdk@17                          # macOS"; \
		exit 1; \
	fi
	@major=$$(java -version 2>&1 | awk -F'"' '/version/ {split($$2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit}'); \
	if [ -z "$$major" ] || [ "$$major" -lt 17 ]; then \
		echo "Java 17+ is needed by Spark; found Java $${major:-unknown}. Install it with:"; \
		echo "  sudo apt-get install -y openjdk-17-jre-headless   # Debian/Ubuntu"; \
		echo "  brew install openjdk@17                          # macOS"; \
		exit 1; \
	fi; echo "Java $$major found"

train: $(STAMP) ## Run the whole chain on the embedded defaults (ENV=local)
	$(BIN)/python -m pipelines train

test: $(STAMP) ## Run every test tier: unit, integration (Spark) and end to end
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) ## Run the unit tests only (no JVM; seconds)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

serve: $(STAMP) ## Serve the champion on http://127.0.0.1:3000 (PORT=3000; after make train)
	SERVE_PORT=$(PORT) $(BIN)/python -m serving

# The services profile's servers; ENV defaults to services for these three.
SERVICES_ENV = $(if $(filter local,$(ENV)),services,$(ENV))

services-up: $(STAMP) ## Start the MLflow server (PostgreSQL, proxied artifacts); check PostgreSQL and Redis
	$(BIN)/python -m infra.services up --env $(SERVICES_ENV)

services-down: $(STAMP) ## Stop the MLflow server started by services-up
	$(BIN)/python -m infra.services down --env $(SERVICES_ENV)

services-status: $(STAMP) ## Say whether PostgreSQL, Redis and the MLflow server answer
	$(BIN)/python -m infra.services status --env $(SERVICES_ENV)

bench: $(STAMP) ## Benchmarks (not tests): serving latency at a constant rate vs a FastAPI baseline
	$(BIN)/python -m bench.serving_latency --rate 50 --seconds 30 --repeats 3

lint: $(STAMP) ## Lint, check formatting and type-check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy configs pipelines features serving infra

format: $(STAMP) ## Fix lint findings that can be fixed and format the code
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

lock: $(STAMP) ## Regenerate constraints.txt from the installed, tested venv
	@{ echo "# Lock for flight-delay-mlops: every installed version, from 'pip freeze' of a venv built"; \
	   echo "# with 'make setup' on Python 3.11 (Debian, OpenJDK 17), 'pip check' clean."; \
	   echo "# Regenerate with \`make lock\` after changing pyproject.toml."; \
	   $(BIN)/pip freeze --exclude-editable; } > constraints.txt
	@echo "constraints.txt written ($$(grep -vc '^#' constraints.txt) packages)"

clean: ## Remove what runs produce (data/, reports/, caches); keeps .venv
	rm -rf data reports spark-warehouse metastore_db derby.log .pytest_cache .ruff_cache .mypy_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean ## Also remove .venv
	rm -rf $(VENV)
