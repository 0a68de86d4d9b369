# The README's entry points for a fresh machine. All are idempotent.
#   make quick     install, then the 4-configuration quick study with its full report (minutes on 2 CPU cores)
#   make test      install (with pytest), then the fast test tier (a few minutes)
#   make test-all  the fast tier and the slow one: kill/resume loops, real full disks, multi-process Ray
#   make lint      ruff check (pyproject.toml: line length 120, pyflakes, pycodestyle, imports, bugbear)
# EXTRAS adds optional extras, e.g. `make test-all EXTRAS=dev,ray,tensorboard`.
PY ?= python3
VENV ?= .venv
EXTRAS ?= dev
BIN := $(VENV)/bin
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# the CPU wheel first, so the torch>= range is already met (no CUDA download)
	$(BIN)/pip install -q "torch==2.13.0" || $(BIN)/pip install -q torch
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $@

install: $(STAMP)

quick: install
	$(BIN)/moe-ablate run --quick --preset tiny

test: install
	$(BIN)/python -m pytest

test-all: install
	$(BIN)/python -m pytest -m ""

# ruff (installed with the dev extra; its settings are in pyproject.toml)
lint: install
	$(BIN)/ruff check .

# what `make test` leaves out: the slow tier, and the tests of the optional extras (skipped without them)
test-rest: install
	$(BIN)/python -m pytest -m "slow or extras"

.PHONY: install quick test test-all test-rest lint
