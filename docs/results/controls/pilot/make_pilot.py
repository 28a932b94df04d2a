"""Pilot configs from experiments/controls.yaml: label-noise pool only, tuning starts only."""
import sys, yaml
steps = int(sys.argv[1]); arms = sys.argv[2].split(",")
cfg = yaml.safe_load(open("experiments/controls.yaml"))
cfg["name"] = f"controls-pilot-{steps // 1000}k"
cfg.pop("protocol", None)
cfg["corrupt"] = {"label_noise": cfg["corrupt"]["label_noise"]}
cfg["training"]["steps"] = steps
cfg["evaluation"] = {"trials": 100, "workers": 2, "envs_per_worker": 4, "videos": 1}
cfg["arms"] = [a for a in cfg["arms"] if a["name"] in arms]
yaml.safe_dump(cfg, open(f"docs/results/controls/pilot/pilot_{steps // 1000}k.yaml", "w"), sort_keys=False)
