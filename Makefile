# `make run` and `make test` work on a fresh clone: they build .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export WANDB_MODE ?= disabled
export HYDRA_FULL_ERROR = 1

.PHONY: install run test test-py312 lint format bench clean

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

# The suite on Python 3.12 (pyenv's, or python3.12 on PATH) in .venv312, built on first use: torch 2.14.1 for 3.12
# has no local wheel here, so this downloads about 0.8 GB (61 s here) and the rest of requirements.txt (44 s); too
# long for CI's 7 minutes, so it is run by hand (README, "Deploy a checkpoint"). The project is installed there as
# by make install: jobs that run in processes of their own (submitit's) import it from the environment.
PY312 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python) python3.12)
VENV312 := .venv312

test-py312:
	@[ -x $(VENV312)/bin/python ] || $(PY312) -m venv $(VENV312)
	$(VENV312)/bin/python -m pip install -q -r requirements.txt
	$(VENV312)/bin/python -m pip install -q --no-deps --no-build-isolation -e .
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(VENV312)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: $(STAMP)
	$(PY) -m bench.layers

clean:
	rm -rf $(VENV) $(VENV312) .pytest_cache .ruff_cache outputs multirun
