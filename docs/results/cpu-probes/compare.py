"""Each probe's cotrain_a0.5 against the main run's cotrain_a0.5 on the same 200 starts."""
import json, sys
import numpy as np
from eval.report import paired_comparison
ref = json.load(open('/work/runs/cpu-lr/arms/cotrain_a0.5/eval_target/results.json'))['per_trial']
out = {}
for name in sys.argv[1:]:
    r = json.load(open(f'/work/runs/probes/{name}/arms/cotrain_a0.5/eval_target/results.json'))
    trials = r['per_trial']
    assert [t['initial_pose'] for t in trials] == [t['initial_pose'] for t in ref]
    c = paired_comparison(np.array([t['success'] for t in trials]), np.array([t['success'] for t in ref]))
    s = sum(t['success'] for t in trials)
    print(f"{name}: {s}/200 ({s/2:.1f}%) max cov {r['mean_max_coverage']:.3f}; vs main cotrain_a0.5 {sum(t['success'] for t in ref)}/200: "
          f"{100*c['difference']:+.1f} [{100*c['ci95'][0]:+.1f}, {100*c['ci95'][1]:+.1f}] p={c['mcnemar_p']:.3g}; eval wall {r['wall_time']/60:.1f} min")
    out[name] = {"successes": s, **c}
json.dump(out, open('/work/runs/probes/compare.json', 'w'), indent=1)
