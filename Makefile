# Two commands on a fresh machine: `make synth` and `make test`. Both bootstrap what they need:
# a Python virtualenv with the pinned packages and the pinned CDK CLI (package.json) through npm.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= config/platform.yaml
PYTEST_WORKERS ?= auto

# No network at synth time: no notices, no telemetry, no version reporting. Node 20's end-of-life
# banner from jsii is silenced so the output stays readable.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := true
export CDK_DISABLE_VERSION_CHECK := true
CDK := npx --no-install cdk
CDK_FLAGS := --no-notices --no-version-reporting --ci

REQ_HASH := $(shell cat requirements.txt requirements-dev.txt lambdas/*/requirements.txt 2>/dev/null | sha256sum | cut -c1-16)
VENV_STAMP := $(VENV)/.installed-$(REQ_HASH)
NODE_STAMP := node_modules/.installed-$(shell sha256sum package.json package-lock.json | sha256sum | cut -c1-16)

.PHONY: bootstrap synth test lint bench clean bootstrap-commands

bootstrap: $(VENV_STAMP) $(NODE_STAMP) lambda-deps

$(VENV_STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@rm -f node_modules/.installed-* && touch $@

# Third-party wheels for Lambda functions and the fine-tuning jobs, built once per requirements hash
# (synth only packages them).
.PHONY: lambda-deps
lambda-deps: $(VENV_STAMP)
	$(PY) -m tools.build_lambda_deps
	$(PY) -m tools.build_job_deps

synth: bootstrap
	rm -rf cdk.out
	$(CDK) synth --quiet $(CDK_FLAGS) -c config=$(CONFIG)
	$(PY) -m tools.synth_report cdk.out

test: bootstrap
	$(PY) -m pytest -n $(PYTEST_WORKERS)

lint: bootstrap
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy app.py stacks lambdas tools bench

# The `cdk bootstrap` commands for every account and region of $(CONFIG), tooling first (docs/cicd.md).
bootstrap-commands: $(VENV_STAMP)
	@$(PY) -m tools.bootstrap_commands $(CONFIG)

bench: bootstrap
	$(PY) bench/synth_scaling.py

# Monthly GPU serving cost per business unit vs one endpoint per model (MODELS=10,100,1000 by default).
MODELS ?= 10,100,1000
.PHONY: cost
cost: $(VENV_STAMP)
	$(PY) -m tools.serving_cost --config $(CONFIG) --models $(MODELS)

clean:
	rm -rf cdk.out .build .pytest_cache .mypy_cache .ruff_cache

# Remove one environment completely (docs/operations.md): `make destroy STAGE=dev BU=retail`.
# Other stages are refused unless DESTROY_FLAGS=--force-retained (their data is retained anyway).
STAGE ?= dev
.PHONY: destroy
destroy: bootstrap
	rm -rf cdk.out
	$(CDK) synth --quiet $(CDK_FLAGS) -c config=$(CONFIG) > /dev/null
	$(PY) -m tools.destroy_environment --bu $(BU) --stage $(STAGE) --config $(CONFIG) $(DESTROY_FLAGS)
