"""The benchmarks still run (tiny sizes) and print their figures: a benchmark that broke with the code
it measures would otherwise go unnoticed until someone needs its numbers. Nothing here is timed."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                            cwd=ROOT, timeout=600, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_train_speed_prints_a_row_per_preset():
    out = _run("train_speed.py", "--presets", "tiny", "--steps", "2", "--episodes", "2", "--episode-steps", "20")
    row = next(line for line in out.splitlines() if line.startswith("tiny "))
    params, samples_per_s = (float(v) for v in row.split()[1:3])
    assert 0.1 < params < 10 and samples_per_s > 0


def test_image_policy_cost_counts_the_encoders_flops_beside_the_u_net_s():
    out = _run("image_policy_cost.py", "--configs", "cpu-64-1cam", "state-cpu.yaml", "--steps", "1", "--batch-size", "4")
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith(("cpu-64-1cam ", "state-cpu.yaml "))}
    image, state = ([float(v) for v in rows[name][:5]] for name in ("cpu-64-1cam", "state-cpu.yaml"))
    # params M, GFLOP/step, enc %, samples/s, step ms: the same U-Net, plus an encoder that does most of the work
    assert image[0] > state[0] > 0 and image[1] > state[1] > 0 and 20 < image[2] < 90 and state[2] == 0 and image[3] > 0


def test_admission_prints_p_clean_per_order():
    out = _run("admission.py", "--clean-episodes", "3", "--corrupt-episodes", "20", "--windows", "10")
    assert re.search(r"sample.first", out) and re.search(r"\d+(\.\d+)?\s*ms", out), out


@pytest.mark.parametrize("script", ["eval_speed.py", "analyze_speed.py", "planner_quality.py", "env_speed.py", "datagen_speed.py"])
def test_every_benchmark_has_a_help_that_runs(script):
    assert "usage" in _run(script, "--help").lower()
