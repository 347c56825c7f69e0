# `make run` and `make test` work on a fresh clone: they build .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export WANDB_MODE ?= disabled
export HYDRA_FULL_ERROR = 1

.PHONY: install run test lint format bench clean

$(STAMP): requirements.txt pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) main.py $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# Two pytest workers, one test file each at a time (--dist loadfile: a module's shared fixtures are built once), and
# one BLAS/OpenMP thread per process, since two workers that each spin two threads oversubscribe a 2-core machine.
# On the 2-vCPU CI-like machine (2026-12-02): 597 s in one process, 472 s with two workers of two threads, 345 s
# with two workers of one. TEST_WORKERS=0 runs the suite in this process (for pdb or -x).
TEST_WORKERS ?= 2

test: lint
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: $(STAMP)
	$(PY) -m bench.layers

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache outputs multirun
