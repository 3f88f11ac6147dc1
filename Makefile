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
	$(LB) run --suite d2l --profile $$profile --results $(RESULTS) $(QUIET) && \
	$(LB) run --suite equal --profile $$profile --results $(RESULTS) $(QUIET)
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

# ruff, then mypy on bench/, variants/ and report/ (its settings: [tool.mypy] in pyproject.toml)
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The CUDA path, proven in one short run on a bare GPU machine (no registry, ~15 minutes, 8 files
# back). gpu-pack (here) gathers the xz-compressed datasets and the wheels that machine lacks into
# .gpu-pack (under 60 MiB); gpu-check (there, with .gpu-pack carried) installs from it alone,
# runs the cuda tests, perf and as much of profile full as fits in 8 minutes, and writes at
# most 8 files into OUT. Without CUDA it stops in one line, exit 2, before installing anything.
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
GPU_WHY_NOT = $(GPU_PY) scripts/gpu_check.py --why-not 2>/dev/null || echo "no CUDA device: \
  cannot run $(GPU_PY)"

.PHONY: gpu-pack gpu-check

gpu-pack: data
	$(PY) scripts/gpu_pack.py

# make's $(error): one line and exit 2 where torch sees no GPU, before the script installs a thing
gpu-check:
	$(eval GPU_WHY := $(shell $(GPU_WHY_NOT)))
	$(if $(GPU_WHY),$(error $(GPU_WHY)))
	@$(GPU_PY) scripts/gpu_check.py $(OUT)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .benchmarks *.egg-info
