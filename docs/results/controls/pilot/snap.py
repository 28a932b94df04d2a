"""Copy each pilot arm's checkpoint as it passes 5k, 10k, 15k steps (the run keeps only its last)."""
import json, shutil, time, pathlib
root = pathlib.Path("runs/experiments/pilot20k/arms")
marks = [5000, 10000, 15000]
done = set()
while len(done) < 2 * len(marks):
    for arm in ("ln_cotrain_a0.5", "ln_ambient_true"):
        metrics = root / arm / "train" / "metrics.jsonl"
        if not metrics.is_file():
            continue
        lines = metrics.read_text().splitlines()
        step = json.loads(lines[-1])["step"] if lines else 0
        for mark in marks:
            if (arm, mark) not in done and mark <= step < mark + 900:
                dst = pathlib.Path(f"runs/pilot-snapshots/{arm}_{mark}"); dst.mkdir(parents=True, exist_ok=True)
                time.sleep(5)
                shutil.copy2(root / arm / "train" / "ckpt.pt", dst / "ckpt.pt")
                shutil.copy2(root / arm / "train" / "config.json", dst / "config.json")
                print(arm, mark, "copied at step", step, flush=True); done.add((arm, mark))
    time.sleep(30)
