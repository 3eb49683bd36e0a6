# The two commands a newcomer needs: `make lab` (open the course) and `make test`.
# Both create .venv on first use and are safe to run again.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ppo-edu-installed
# Jupyter refuses to run as root unless told; containers and Colab-like boxes often are root.
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: setup lab test figures exercises bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned here only: the CPU wheel on these machines, no CUDA download.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

lab: setup
	$(VENV)/bin/jupyter lab $(LAB_ARGS) notebooks/

test: setup
	PPO_EDU_PROFILE=fast $(PY) -m pytest -q

figures: setup
	$(PY) -m ppo_edu.figures

exercises: setup
	$(PY) tools/build_notebooks.py

bench: setup
	$(PY) -m pip install -q -e ".[bench]"

clean:
	rm -rf $(VENV) .pytest_cache
