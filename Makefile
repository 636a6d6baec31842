# labelstack task runner. `make setup` is idempotent; every other target runs it first.
SHELL := /bin/bash
PY_BASE ?= python3
VENV := .venvs/main
LS_VENV := .venvs/label-studio
CHECKOV_VENV := .venvs/checkov
PY := $(VENV)/bin/python
STACK ?= dev

.PHONY: setup infra-setup system-packages plan test lint docs clean help sam2-install up-weights up down status logs images

help:  ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' Makefile | sed 's/:.*## /\t/'

setup: $(VENV)/.installed $(LS_VENV)/.installed $(CHECKOV_VENV)/.installed system-packages  ## create the virtualenvs and system packages

infra-setup: $(VENV)/.infra-installed  ## only what `make plan` needs (no torch, no Label Studio)

# stage 1: the Pulumi program, the pack and the `labelstack` console script
$(VENV)/.infra-installed: requirements/infra.txt pyproject.toml
	[ -x $(PY) ] || $(PY_BASE) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements/infra.txt
	$(VENV)/bin/pip install -q --no-deps --no-build-isolation -e .
	touch $@

# stage 2: backend, bootstrap, exports, review, tests (+ torch and sam2)
$(VENV)/.installed: $(VENV)/.infra-installed requirements/main.txt $(wildcard requirements/sam2.txt)
	$(VENV)/bin/pip install -q -r requirements/main.txt
	@if [ -f requirements/sam2.txt ]; then $(MAKE) --no-print-directory sam2-install; fi
	touch $@

$(LS_VENV)/.installed: requirements/label-studio.txt
	[ -x $(LS_VENV)/bin/python ] || $(PY_BASE) -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install -q --upgrade pip
	$(LS_VENV)/bin/pip install -q -r requirements/label-studio.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements/checkov.txt
	[ -x $(CHECKOV_VENV)/bin/python ] || $(PY_BASE) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --upgrade pip
	$(CHECKOV_VENV)/bin/pip install -q -r requirements/checkov.txt
	touch $@

system-packages:  ## PostgreSQL and headless Chromium for the end-to-end tests (Debian)
	@{ { command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; } && \
	   command -v chromium >/dev/null && command -v chromedriver >/dev/null; } || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    postgresql chromium chromium-driver >/dev/null; }

# Base images of our two images, pinned by digest (docs/images.md); `make images` refuses tags.
SAM2_BASE_IMAGE ?=
BOOTSTRAP_BASE_IMAGE ?=
images: infra-setup  ## build + push the SAM2 backend and bootstrap images to STACK's ECR (docs/images.md)
	$(PY) -m infra.images --stack $(STACK) --sam2-base "$(SAM2_BASE_IMAGE)" \
	  --bootstrap-base "$(BOOTSTRAP_BASE_IMAGE)" $(if $(CPU),--cpu) $(if $(DRY_RUN),--dry-run)

plan: infra-setup  ## offline plan + compliance check of STACK (default dev), no cloud account needed
	$(PY) -m infra.plan --stack $(STACK)

# the local stack: SAM2 uses $SAM2_CHECKPOINT when set; random weights only when asked for
# with RANDOM_WEIGHTS=1 (the masks are then meaningless, and a banner says so)
UP_FLAGS ?= $(if $(SAM2_CHECKPOINT),,$(if $(filter 1 true yes,$(RANDOM_WEIGHTS)),--random-weights))
up: up-weights setup  ## the whole stack on this machine (SAM2_CHECKPOINT=... or RANDOM_WEIGHTS=1)
	$(VENV)/bin/labelstack local up $(UP_FLAGS)

up-weights:
	@if [ -z "$(SAM2_CHECKPOINT)" ] && [ -z "$(filter 1 true yes,$(RANDOM_WEIGHTS))" ]; then \
	  echo "error: no SAM2 weights chosen: set SAM2_CHECKPOINT=/path/to/sam2.1_hiera_tiny.pt" \
	       "(no download here), or RANDOM_WEIGHTS=1 to run with random weights" \
	       "(the masks are meaningless)" >&2; exit 2; fi
	@if [ -n "$(SAM2_CHECKPOINT)" ] && [ ! -f "$(SAM2_CHECKPOINT)" ]; then \
	  echo "error: SAM2_CHECKPOINT=$(SAM2_CHECKPOINT): no such file" >&2; exit 2; fi

down:  ## stop what `make up` started (data in .local/ stays)
	$(VENV)/bin/labelstack local down

status:  ## the local stack's services: running, stale or stopped
	$(VENV)/bin/labelstack local status

logs:  ## the last lines of each local service's log
	$(VENV)/bin/labelstack local logs

test: setup  ## the whole test suite (starts its own servers on loopback)
	$(PY) -m pytest

lint:  ## ruff
	$(VENV)/bin/ruff check .

docs: setup  ## regenerate Pulumi.yaml config block and README tables
	$(PY) -m infra.config_docs

# sha256 of the sam2 1.1.0 sdist on PyPI (a third-party upload of Meta's code: pin the bytes)
SAM2_SDIST_SHA256 := 7e0ea252d43c10d853e3acfce0b5770ac683c30481bd6de311300e9d44f45b74
sam2-install:  ## torch + sam2 into the main venv (sam2 sdist checked, built without CUDA ext)
	$(VENV)/bin/pip install -q $$(grep -v -e '^#' -e '^sam2==' requirements/sam2.txt)
	rm -rf $(VENV)/sam2-sdist
	SAM2_BUILD_CUDA=0 $(VENV)/bin/pip download -q --no-deps --no-build-isolation \
	  -d $(VENV)/sam2-sdist $$(grep '^sam2==' requirements/sam2.txt)
	echo "$(SAM2_SDIST_SHA256)  $$(ls $(VENV)/sam2-sdist/sam2-*.tar.gz)" | sha256sum -c --quiet -
	SAM2_BUILD_CUDA=0 $(VENV)/bin/pip install -q --no-build-isolation --no-deps \
	  $(VENV)/sam2-sdist/sam2-*.tar.gz

clean:
	rm -rf .venvs .pytest_cache
