# Two commands do everything on a fresh machine (README):
#   make demo   create .venv, install, run the main job on a small default
#   make test   create .venv, install, run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build that pip finds on local disk here; a GPU user sets TORCH to a CUDA build (README).
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(PY) -m pushing_sim.demo --out out/demo

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/env_speed.py

clean:
	rm -rf $(VENV) out *.egg-info
