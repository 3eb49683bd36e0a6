# The two commands a newcomer needs: `make lab` (open the course) and `make test`.
# Both create .venv on first use and are safe to run again.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ppo-edu-installed
# Jupyter refuses to run as root unless told; containers and Colab-like boxes often are root.
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: setup lab test test-full test-kernels test-floors test-newest figures exercises bench clean

$(STAMP): pyproject.toml Makefile constraints.txt  # torch is pinned here, the rest in constraints.txt: a new pin reinstalls
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# the pins in constraints.txt (numpy 2.4.6, transformers 5.25.0, matplotlib 3.11.2, ipykernel 7.4.0)
	@# have no Python 3.10 release: say so here, not as pip's "No matching distribution found"
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
		echo "error: make setup needs Python 3.11 or later, and $(PY) is $$($(PY) -V 2>&1): the versions"; \
		echo "pinned in constraints.txt have no release for it. Remove $(VENV) and run again with a newer"; \
		echo "interpreter, e.g. make PYTHON=python3.11 $(MAKECMDGOALS)"; exit 1; }
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned here only (pyproject leaves it unpinned: Colab brings its own). A CPU wheel already in
	# the venv, or one pip finds locally, is kept; from PyPI on Linux it is the CUDA build (README).
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]" -c constraints.txt
	touch $(STAMP)

setup: $(STAMP)

lab: setup
	$(VENV)/bin/jupyter lab $(LAB_ARGS) notebooks/

# `env -u PPO_EDU_SEED`: the lessons' asserts are checked on their own seeds, whatever a
# seed sweep left in the shell (README, "A different seed is a different run too").
# Two pytest workers (pytest-xdist), one file each at a time (`--dist loadfile`: a notebook's cells
# run in order in one kernel): on a 2-core CPU 1.7x faster than one (668 s against 1,137 s on an AMD
# EPYC, 2026-12-07). Each worker is its own process, so nothing computes with other thread counts.
test: setup
	env -u PPO_EDU_SEED PPO_EDU_PROFILE=fast $(PY) -m pytest -q -n 2 --dist loadfile

# The lessons as learners run them: every solution notebook in its `full` profile, with the
# asserts it makes there (8-23 minutes on 2 CPU cores; README). CI runs only `fast`; run this
# before teaching a cohort, or after changing a lesson's full settings.
test-full: setup
	env -u PPO_EDU_SEED PPO_EDU_PROFILE=full $(PY) -m pytest -q notebooks/0*.ipynb

# The lessons' asserts must hold on other CPUs, whose vector kernels round differently (RL turns a
# last-bit difference into a different run): the notebooks in the fast profile, once per kernel
# choice forced below (numpy's OpenBLAS on AVX2 / AVX kernels, torch's MKL on AVX2, torch's own
# kernels without SIMD). 8-14 minutes per choice on 2 cores; every choice runs, and the
# failed ones are listed at the end. Forcing works downwards only: a CPU cannot be made to run
# instructions it lacks.
KERNELS ?= OPENBLAS_CORETYPE=Haswell OPENBLAS_CORETYPE=Sandybridge MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=default
test-kernels: setup
	@failed=""; \
	for kernel in $(KERNELS); do \
		echo "== $$kernel"; \
		env -u PPO_EDU_SEED $$kernel PPO_EDU_PROFILE=fast $(PY) -m pytest -q notebooks/ || failed="$$failed $$kernel"; \
	done; \
	if [ -n "$$failed" ]; then echo "failed with:$$failed"; exit 1; fi; \
	echo "all kernel choices passed"

figures: setup
	$(PY) -m ppo_edu.figures

exercises: setup
	$(PY) tools/build_notebooks.py

bench: setup
	$(PY) -m pip install -q -e ".[bench]" -c constraints.txt

# The suite (fast profile) at the lowest versions pyproject.toml allows (tools/floors.txt, torch 2.2.0
# included), in a venv of its own: what a learner whose environment is older than constraints.txt gets.
# Needs PyPI, and on Linux x86-64 downloads torch 2.2.0's CUDA build (about 2.5 GB; it runs on the CPU).
# The dev tools are the newest. Python 3.10-3.12 (torch 2.2 and numpy 1.26 have no 3.13 wheels); for the
# oldest the metadata allows: make FLOORS_PYTHON=python3.10 test-floors. A venv of another Python is
# made again.
FLOORS_VENV ?= .venv-floors
FLOORS_PYTHON ?= $(PYTHON)
# $(call venv_of,VENV,PYTHON): VENV stays if it is a venv of that Python's version, else it is made again
venv_of = test -x $(1)/bin/python && [ "$$($(1)/bin/python -V)" = "$$($(2) -V)" ] || $(2) -m venv --clear $(1)
test-floors:
	$(call venv_of,$(FLOORS_VENV),$(FLOORS_PYTHON))
	$(FLOORS_VENV)/bin/python -m pip install -q --upgrade pip
	$(FLOORS_VENV)/bin/python -m pip install -q -e ".[dev,colab]" -c tools/floors.txt
	env -u PPO_EDU_SEED PPO_EDU_PROFILE=fast $(FLOORS_VENV)/bin/python -m pytest -q -n 2 --dist loadfile

# The same tests at the newest versions pyproject.toml allows, torch included (no constraints.txt), in
# a venv of its own: what `pip install` gives a learner today, and what the next bump of constraints.txt
# will meet. Needs PyPI; on Linux x86-64 the newest torch is its CUDA build (the venv came to 6.2 GB with
# torch 2.15.0; it runs on the CPU). It prints the versions it tested. NEWEST_PYTHON picks the Python,
# as FLOORS_PYTHON does above.
NEWEST_VENV ?= .venv-newest
NEWEST_PYTHON ?= $(PYTHON)
test-newest:
	$(call venv_of,$(NEWEST_VENV),$(NEWEST_PYTHON))
	$(NEWEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(NEWEST_VENV)/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e ".[dev,colab]"
	$(NEWEST_VENV)/bin/python -V
	$(NEWEST_VENV)/bin/python -m pip freeze | grep -i -E '^(torch|numpy|transformers|tokenizers|huggingface.hub|safetensors|gymnasium|matplotlib|datasets|pytest|nbval)=='
	env -u PPO_EDU_SEED PPO_EDU_PROFILE=fast $(NEWEST_VENV)/bin/python -m pytest -q -n 2 --dist loadfile

clean:
	rm -rf $(VENV) $(FLOORS_VENV) $(NEWEST_VENV) .pytest_cache
