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

# The whole pipeline on a small default (a few minutes on 2 CPU cores); re-running resumes each step.
DEMO := out/demo
demo: setup
	$(PY) -m pushing_sim.demo --out $(DEMO)
	$(PY) -m data_gen.gcs --n 8 --out $(DEMO)/sim.zarr
	$(PY) -m data_gen.gcs --n 3 --domain target --replay physics --replan-every 20 --keep successful --out $(DEMO)/target.zarr
	$(PY) -m policies.classify --clean $(DEMO)/target.zarr --corrupt $(DEMO)/sim.zarr --steps 200 --folds 3 --overwrite
	$(PY) -m policies.train --clean $(DEMO)/target.zarr --corrupt $(DEMO)/sim.zarr --method ambient --sigma-min-from classifier --preset tiny --steps 100 --out $(DEMO)/ambient
	$(PY) -m eval.rollout --ckpt $(DEMO)/ambient/ckpt.pt --trials 2 --max-steps 100 --videos 1
	$(PY) -m eval.rollout --policy gcs --trials 2 --videos 1 --out $(DEMO)/gcs_expert
	$(PY) -m eval.compare $(DEMO)/ambient/eval $(DEMO)/gcs_expert --out $(DEMO)/compare.png
	$(PY) -m eval.analyze --store $(DEMO)/target.zarr --store $(DEMO)/sim.zarr --out $(DEMO)/analysis

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/env_speed.py
	$(PY) benchmarks/planner_quality.py --n 50
	$(PY) benchmarks/datagen_speed.py --n 40
	$(PY) benchmarks/train_speed.py
	$(PY) benchmarks/admission.py
	$(PY) benchmarks/analyze_speed.py
	$(PY) benchmarks/interop_roundtrip.py

clean:
	rm -rf $(VENV) out *.egg-info
