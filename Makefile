# Two commands on a fresh machine: `make synth` and `make test`. Both bootstrap what they need:
# a Python virtualenv with the pinned packages and the pinned CDK CLI (package.json) through npm.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= config/platform.yaml
PYTEST_WORKERS ?= auto

# Node.js: package.json pins an LTS release that jsii supports (npm package `node`); its binary in
# node_modules/.bin comes first on PATH, so the CDK CLI and the jsii runtime behind the Python app both run
# on it rather than on whatever Node the machine has. No network at synth time: no notices, no telemetry, no
# version reporting (cdk.json says the same, so plain `npx cdk` is as quiet).
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
export CDK_DISABLE_CLI_TELEMETRY := true
export CDK_DISABLE_VERSION_CHECK := true
# the pinned CLI straight from node_modules/.bin: `npx --no-install` finds the same binary, a third of a
# CPU-second later on every call (docs/PERFORMANCE.md)
CDK := node_modules/.bin/cdk
CDK_FLAGS := --no-notices --no-version-reporting --ci

REQ_HASH := $(shell cat requirements.txt requirements-dev.txt lambdas/*/requirements.txt 2>/dev/null | sha256sum | cut -c1-16)
VENV_STAMP := $(VENV)/.installed-$(REQ_HASH)
NODE_STAMP := node_modules/.installed-$(shell sha256sum package.json package-lock.json | sha256sum | cut -c1-16)
BYTECODE_STAMP := $(VENV)/.bytecode-$(REQ_HASH)

.PHONY: bootstrap synth test lint bench clean bootstrap-commands

bootstrap: $(VENV_STAMP) $(NODE_STAMP) $(BYTECODE_STAMP) lambda-deps

$(VENV_STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@rm -f node_modules/.installed-* && touch $@

# cdk.json runs the app as `python -O app.py` (jsii's runtime type checks off: about a CPU-second less per
# synth); optimized mode reads .opt-1.pyc files, which pip does not write, so they are compiled here once for
# every installed module the synth loads (tools/compile_synth_bytecode.py, docs/PERFORMANCE.md).
$(BYTECODE_STAMP): $(VENV_STAMP) $(NODE_STAMP)
	$(PY) -m tools.compile_synth_bytecode
	@rm -f $(VENV)/.bytecode-* && touch $@

# Third-party wheels for Lambda functions and the fine-tuning jobs, built once per requirements hash
# (synth only packages them; each Lambda layer is packed once as a zip, so synth stages one file).
.PHONY: lambda-deps
lambda-deps: $(VENV_STAMP)
	$(PY) -m tools.build_lambda_deps
	$(PY) -m tools.build_job_deps

# Templates are validated once: CDK's built-in CloudFormation validator is a port of cfn-lint's rules (plus
# Rego rules for services the platform does not use), and the report step runs the pinned cfn-lint itself over
# every template and fails on any error, so the synth skips the built-in copy (CDK_VALIDATION=false; cdk-nag
# still runs). A plain `cdk synth` or the app in tests keeps it (docs/PERFORMANCE.md).
synth: bootstrap
	rm -rf cdk.out
	CDK_VALIDATION=false $(CDK) synth --quiet $(CDK_FLAGS) -c config=$(CONFIG)
	$(PY) -m tools.synth_report cdk.out

test: bootstrap
	$(PY) -m pytest -n $(PYTEST_WORKERS)

lint: bootstrap
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy app.py stacks lambdas tools bench

# Validate a config without synthesizing: one line per problem, exit code 2 (docs/operations.md).
.PHONY: check-config
check-config: $(VENV_STAMP)
	@$(PY) -m tools.check_config $(CONFIG)

# The `cdk bootstrap` commands for every account and region of $(CONFIG), tooling first (docs/cicd.md).
bootstrap-commands: $(VENV_STAMP)
	@$(PY) -m tools.bootstrap_commands $(CONFIG)

bench: bootstrap
	$(PY) bench/synth_scaling.py

# Monthly GPU serving cost per business unit vs one endpoint per model (MODELS=10,100,1000 by default).
# A region without prices in config/gpu_catalog.yaml is refused; COST_FLAGS=--price-region=us-east-1 estimates
# at that region's prices, shown in every row.
# Also the model (token) spend of each application at REQUESTS answered /invoke calls a month (docs/cost.md).
MODELS ?= 10,100,1000
REQUESTS ?= 100000,1000000
.PHONY: cost
cost: $(VENV_STAMP)
	$(PY) -m tools.serving_cost --config $(CONFIG) --models $(MODELS) $(COST_FLAGS)
	$(PY) -m tools.model_cost --config $(CONFIG) --requests $(REQUESTS)

# The evaluation CLI on the worked example of docs/evaluation.md; EVALUATE_ARGS runs it on your own files.
EXAMPLE := docs/examples/evaluation
EVALUATE_ARGS ?= --dataset $(CURDIR)/$(EXAMPLE)/dataset.jsonl --outputs $(CURDIR)/$(EXAMPLE)/outputs.jsonl \
	--settings $(CURDIR)/$(EXAMPLE)/settings.json --prompts $(CURDIR)/$(EXAMPLE)/prompts.json \
	--report $(CURDIR)/.build/evaluation-report.html
.PHONY: evaluate
evaluate: $(VENV_STAMP)
	cd lambdas && ../$(PY) -m evaluation.cli $(EVALUATE_ARGS)

clean:
	rm -rf cdk.out .build .pytest_cache .mypy_cache .ruff_cache

# Remove one environment completely (docs/operations.md): `make destroy STAGE=dev BU=retail`.
# The tool checks the business unit, the stage and the credentials first, then synthesizes once into its own
# temporary directory and destroys from that assembly; cdk.out is left alone. Other stages are refused unless
# DESTROY_FLAGS=--force-retained (their data is retained anyway).
STAGE ?= dev
.PHONY: destroy
destroy:
	@test -n "$(BU)" || { echo "make destroy: BU= is required, e.g. make destroy STAGE=dev BU=retail" >&2; exit 2; }
	@$(MAKE) --no-print-directory bootstrap
	$(PY) -m tools.destroy_environment --bu $(BU) --stage $(STAGE) --config $(CONFIG) $(DESTROY_FLAGS)
