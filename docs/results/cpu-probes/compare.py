"""Each probe's cotrain_a0.5 against a reference cotrain_a0.5 (the 15,000-step run's) on the same 200 starts.

    python docs/results/cpu-probes/compare.py [--ref RESULTS_JSON] RUN_DIR ...   (from the repository root)

RUN_DIR is a probe's run directory (e.g. docs/results/cpu-probes/steps30k); writes compare.json beside this file.
"""
import argparse
import json
from pathlib import Path

import numpy as np

from eval.metrics import paired_comparison

HERE = Path(__file__).resolve().parent
parser = argparse.ArgumentParser()
parser.add_argument("--ref", type=Path, default=HERE.parent / "cpu-15k/run/arms/cotrain_a0.5/eval_target/results.json")
parser.add_argument("runs", type=Path, nargs="+")
args = parser.parse_args()
ref = json.loads(args.ref.read_text())["per_trial"]
out = {}
for run in args.runs:
    r = json.loads((run / "arms/cotrain_a0.5/eval_target/results.json").read_text())
    trials = r["per_trial"]
    assert [t["initial_pose"] for t in trials] == [t["initial_pose"] for t in ref], f"{run}: other start poses"
    c = paired_comparison(np.array([t["success"] for t in trials]), np.array([t["success"] for t in ref]))
    s = sum(t["success"] for t in trials)
    print(f"{run.name}: {s}/200 ({s/2:.1f}%) max cov {r['mean_max_coverage']:.3f}; vs reference {sum(t['success'] for t in ref)}/200: "
          f"{100*c['difference']:+.1f} [{100*c['ci95'][0]:+.1f}, {100*c['ci95'][1]:+.1f}] p={c['mcnemar_p']:.3g}; eval wall {r['wall_time']/60:.1f} min")
    out[run.name] = {"successes": s, **c}
(HERE / "compare.json").write_text(json.dumps(out, indent=1))
