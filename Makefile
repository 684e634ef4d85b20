# qgnn: two commands for a new user.
#   make demo   -- set up (.venv, Python and Debian packages) and run the main job
#   make test   -- set up and run the test suite
# Both are quick when everything is already installed (a stamp file tracks pyproject.toml).

PYTHON     ?= python3.11
VENV       ?= .venv
VPY        := $(VENV)/bin/python
STAMP      := $(VENV)/.qgnn-installed
# torch is installed first and pinned, so that no dependency can pull a CUDA build.
# Outside this environment, point pip at a CPU wheel index, e.g.
#   make test TORCH_PIP_ARGS="--index-url <your CPU wheel index>"
TORCH_SPEC     ?= torch==2.13.0
TORCH_PIP_ARGS ?=
# Debian packages the project needs at run time (checked with `command -v`, installed when absent).
APT_TOOLS  ?= iverilog:iverilog
PYTEST_ARGS ?=
# pytest-xdist workers for `make test` (auto: one per core; 0: no workers, one process)
PYTEST_WORKERS ?= auto

.PHONY: setup demo test test-fast test-all lint typecheck bench-accuracy bench-train-speed clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile scripts/ensure_system.sh
	@bash scripts/ensure_system.sh "$(PYTHON)" "$(VENV)" $(APT_TOOLS)
	@$(VPY) -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
	@$(VPY) -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null \
	  || $(VPY) -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(VPY) -m pip install --quiet -e ".[dev]" "$(TORCH_SPEC)"
	@$(VPY) -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__; \
	  assert torch.version.cuda is None, 'a CUDA build of torch was installed; reinstall the CPU build'"
	@touch $(STAMP)

# Datasets: $QGNN_DATA_ROOT when set; else, when a ../shared/datasets folder sits beside the
# checkout (this project's development machines, offline), a writable copy of it in
# .cache/datasets; else the user cache, where PyG downloads Cora on first use.
SHARED_DATASETS ?= ../shared/datasets

demo: setup
	@if [ -z "$$QGNN_DATA_ROOT" ] && [ -d "$(SHARED_DATASETS)" ]; then \
	  [ -d .cache/datasets ] || { mkdir -p .cache && cp -r "$(SHARED_DATASETS)" .cache/datasets; }; \
	  export QGNN_DATA_ROOT="$$PWD/.cache/datasets"; \
	  echo "datasets: $$QGNN_DATA_ROOT (copied from $(SHARED_DATASETS))"; \
	fi; \
	$(VENV)/bin/qgnn demo

test: setup
	$(VPY) -m pytest -q -n $(PYTEST_WORKERS) --durations=15 -m "not slow and not verilator" $(PYTEST_ARGS)

test-all: setup
	$(VPY) -m pytest -q $(PYTEST_ARGS)

lint: setup
	$(VPY) -m ruff check qgnn model sim hw sweeps tests benchmarks examples

typecheck: setup
	bash scripts/typecheck.sh $(VPY)

bench-accuracy: setup
	$(VPY) benchmarks/accuracy.py

bench-train-speed: setup
	$(VPY) benchmarks/train_speed.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
