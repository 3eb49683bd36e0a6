# The two commands a newcomer needs: `make lab` (open the course) and `make test`.
# Both create .venv on first use and are safe to run again.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ppo-edu-installed
# Jupyter refuses to run as root unless told; containers and Colab-like boxes often are root.
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: setup lab test test-full figures exercises bench clean

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

# The lessons as learners run them: every solution notebook in its `full` profile, with the
# asserts it makes there (about 14 minutes on 2 CPU cores). CI runs only `fast`; run this
# before teaching a cohort, or after changing a lesson's full settings.
test-full: setup
	PPO_EDU_PROFILE=full $(PY) -m pytest -q notebooks/0*.ipynb

figures: setup
	$(PY) -m ppo_edu.figures

exercises: setup
	$(PY) tools/build_notebooks.py

bench: setup
	$(PY) -m pip install -q -e ".[bench]"

clean:
	rm -rf $(VENV) .pytest_cache
