"""Pilot configs from experiments/controls.yaml: label-noise pool only, tuning starts only.

python make_pilot.py STEPS ARM,ARM [DOWN_DIMS EMBED], e.g. `30000 clean,ln_ambient_true 32,64,128 32`.
"""
import sys, yaml
steps = int(sys.argv[1]); arms = sys.argv[2].split(",")
cfg = yaml.safe_load(open("experiments/controls.yaml"))
tag = f"{steps // 1000}k"
if len(sys.argv) > 3:
    cfg["policy"]["down_dims"] = [int(d) for d in sys.argv[3].split(",")]
    cfg["policy"]["diffusion_step_embed_dim"] = int(sys.argv[4])
    tag = f"d{cfg['policy']['down_dims'][0]}_{tag}"
cfg["name"] = f"controls-pilot-{tag}"
cfg.pop("protocol", None)
cfg["corrupt"] = {"label_noise": cfg["corrupt"]["label_noise"]}
cfg["training"]["steps"] = steps
cfg["evaluation"] = {"trials": 100, "workers": 2, "envs_per_worker": 4, "videos": 1}
cfg["arms"] = [a for a in cfg["arms"] if a["name"] in arms]
yaml.safe_dump(cfg, open(f"docs/results/controls/pilot/pilot_{tag}.yaml", "w"), sort_keys=False)
