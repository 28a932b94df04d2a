# Two commands do everything on a fresh machine (README):
#   make demo   create .venv, install, run the main job on a small default
#   make test   create .venv, install, run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build that pip finds on local disk here; a GPU user sets TORCH to a CUDA build (README).
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed
# The test suite's extras (pytest, and Ray, pyarrow and wandb, which it exercises), on top of the base install.
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: setup setup-dev demo test bench clean

# What the package and the demo need, no more (the dev extras add about a GB: Ray, pyarrow, wandb).
setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e .
	touch $(STAMP)

setup-dev: $(DEV_STAMP)

$(DEV_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(DEV_STAMP)

# The whole pipeline on a small default (a few minutes on 2 CPU cores); re-running resumes each step.
# Then a shipped policy (trained and evaluated in a committed run) pushes the T on a few starts.
SHIPPED_POLICY ?= ln_ambient_loss_true
SHIPPED := docs/results/controls/policies/$(SHIPPED_POLICY)
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
	$(PY) -m eval.rollout --ckpt $(SHIPPED) --trials 4 --max-steps 300 --videos 4 --out $(DEMO)/shipped_policy
	@echo
	@echo "Done. Look at $(DEMO)/:"
	@echo "  shipped_policy/videos/     a trained policy ($(SHIPPED), see its README.md) pushing the T from 4 starts, 30 s each"
	@echo "  camera_views.png, push_*.mp4   both domains' cameras and a scripted push in each"
	@echo "  sim.zarr, target.zarr      8 corrupt GCS demos in sim, 3 clean closed-loop expert demos in target"
	@echo "  ambient/, ambient/eval/    a tiny policy trained 100 steps with Ambient Diffusion, and its rollouts"
	@echo "  gcs_expert/, compare.png   the GCS expert's rollouts and a comparison plot"
	@echo "  analysis/                  the data's spectra and the classifier's sigma_min"

test: setup-dev
	$(PY) -m pytest -q

bench: setup-dev
	$(PY) benchmarks/env_speed.py
	$(PY) benchmarks/planner_quality.py --n 50
	$(PY) benchmarks/datagen_speed.py --n 40
	$(PY) benchmarks/train_speed.py
	$(PY) benchmarks/admission.py
	$(PY) benchmarks/analyze_speed.py
	$(PY) benchmarks/interop_roundtrip.py

clean:
	rm -rf $(VENV) out *.egg-info
