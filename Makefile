# Two entry points for a fresh machine (see README.md). Both are idempotent.
PY ?= python3
VENV ?= .venv
EXTRAS ?= dev
BIN := $(VENV)/bin

$(BIN)/moe-ablate: pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# the CPU wheel first, so the torch>= range is already met (no CUDA download)
	$(BIN)/pip install -q "torch==2.13.0" || $(BIN)/pip install -q torch
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $@

install: $(BIN)/moe-ablate

quick: install
	$(BIN)/moe-ablate run --quick --preset tiny

test: install
	$(BIN)/python -m pytest

.PHONY: install quick test
