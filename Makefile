# One-command set-up and checks. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= runs/demo

.PHONY: setup test lint format demo clean bench

setup: $(STAMP)

# Re-install only when the project's dependencies change; a second `make setup` is a no-op.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	@touch $(STAMP)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint
	$(PY) -m pytest -q

# The unit tests only (no `slow`, no `servers`): about 2 minutes.
.PHONY: test-fast
test-fast: lint
	$(PY) -m pytest -q -m "not slow and not servers"

demo: setup
	$(VENV)/bin/mmm demo --out $(DEMO_DIR)

bench: setup
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist *.egg-info runs
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Container images (needs a Docker engine; none runs on the development machines here).
IMAGE ?= ghcr.io/mmm-vi-reid/mmm-vi-reid:0.1.0
.PHONY: image image-cpu compile
image:
	docker build -f docker/Dockerfile.gpu -t $(IMAGE) .
image-cpu:
	docker build -f docker/Dockerfile.cpu -t $(IMAGE)-cpu .

# Compile the pipelines to pipelines/compiled/*.yaml (committed; a test checks they are fresh).
compile: setup
	$(PY) -m pipelines.compile
