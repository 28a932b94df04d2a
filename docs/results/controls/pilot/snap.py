"""Copy each pilot arm's checkpoint as it passes the given steps (the run keeps only its last).

python snap.py RUN_DIR ARM,ARM STEP,STEP, e.g. `runs/experiments/pilot20k ln_cotrain_a0.5,ln_ambient_true 5000,10000,15000`.
"""
import json, shutil, sys, time, pathlib
root = pathlib.Path(sys.argv[1]) / "arms"
arms = sys.argv[2].split(",")
marks = [int(m) for m in sys.argv[3].split(",")]
done = set()
while len(done) < len(arms) * len(marks):
    for arm in arms:
        metrics = root / arm / "train" / "metrics.jsonl"
        if not metrics.is_file():
            continue
        lines = metrics.read_text().splitlines()
        step = json.loads(lines[-1])["step"] if lines else 0
        for mark in marks:
            if (arm, mark) not in done and mark <= step < mark + 900:
                dst = pathlib.Path(f"runs/pilot-snapshots/{root.parent.name}/{arm}_{mark}"); dst.mkdir(parents=True, exist_ok=True)
                time.sleep(5)
                shutil.copy2(root / arm / "train" / "ckpt.pt", dst / "ckpt.pt")
                shutil.copy2(root / arm / "train" / "config.json", dst / "config.json")
                print(arm, mark, "copied at step", step, flush=True); done.add((arm, mark))
    time.sleep(30)
