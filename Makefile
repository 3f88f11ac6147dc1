# lenet-bench — every target sets itself up (.venv from pyproject.toml, datasets) and reuses it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LB := $(VENV)/bin/lenet-bench
STAMP := $(VENV)/.installed
# PROFILE: empty = full on a CUDA machine, quick on the CPU. `make bench PROFILE=full` forces it.
PROFILE ?=
RESULTS ?= results
QUIET := $(if $(CI),--quiet,)
# Levers `make perf` measures the engine with (the plain engine is always measured beside them).
PERF_LEVERS ?= --set channels_last=true --set compile=true

.PHONY: setup data bench report test check gate-power perf perf-micro lint clean browser

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev,ray,mlflow,parquet]'
	@touch $(STAMP)

setup: $(STAMP)

data: setup
	$(LB) data

bench: data
	@profile="$(PROFILE)"; \
	if [ -z "$$profile" ]; then \
	  if $(PY) -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then \
	    profile=full; echo "CUDA available: running profile full"; \
	  else \
	    profile=quick; echo "no CUDA device: running profile quick on the CPU (make bench PROFILE=full forces full)"; \
	  fi; \
	fi; \
	$(LB) run --suite variants --profile $$profile --results $(RESULTS) $(QUIET) && \
	$(LB) run --suite d2l --profile $$profile --results $(RESULTS) $(QUIET)
	$(LB) report --results $(RESULTS)

report: setup
	$(LB) report --results $(RESULTS)

# Installs chromium for the report's browser test (as root). make test requires it only under CI;
# on a workstation without it, that one test is skipped and says how to enable it.
browser:
	@sh scripts/ensure-chromium.sh --install

test: data
	@sh scripts/ensure-chromium.sh
	$(PY) -m pytest
	$(MAKE) --no-print-directory check

# The CI gate trains each variant at its gate budget afresh in a throwaway folder: committed
# records never stand in for the code under test.
check: data
	@d=$$(mktemp -d); trap 'rm -rf "$$d"' EXIT; \
	$(LB) check --suite variants --profile gate --results "$$d" $(QUIET)

# Plants realistic regressions one at a time in temporary copies and runs the gate on each
# (about 2.5 minutes a gate run on 2 cores; not part of make test).
gate-power: data
	$(LB) gate-power

perf: data
	$(LB) perf $(PERF_LEVERS)

perf-micro: data
	$(PY) -m pytest tests/benchmarks -m benchmark --benchmark-autosave
	$(LB) check --perf-only

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .benchmarks *.egg-info
