# Every target installs what it needs first; `make test` works on a fresh machine.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test test-all lint bench bench-perf clean

install: $(STAMP)

# The CPU build of torch 2.13.0 lies on the machine's disk; a plain `pip install torch` would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# WORKERS=auto: one pytest-xdist worker per core; --dist loadgroup keeps the tests of one xdist_group (a shared fixture)
# on one worker. On a machine whose cores are busy with other work, `make test WORKERS=0` (serial) can be faster.
WORKERS ?= auto

test: install
	$(PY) -m pytest -m "not slow and not gpu" -q -n $(WORKERS) --dist loadgroup

test-all: install
	$(PY) -m pytest -q -n $(WORKERS) --dist loadgroup

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(VENV)/bin/satbench bench

bench-perf: install
	$(PY) benchmarks/traffic.py
	$(PY) benchmarks/traffic.py --compiled
	$(PY) benchmarks/throughput.py
	$(PY) benchmarks/compiled_step.py
	$(PY) benchmarks/datasets.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
