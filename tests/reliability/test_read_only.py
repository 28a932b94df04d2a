"""Outputs pointed at a read-only place: one line naming it, exit 2, nothing created. As root, whom
permission bits do not stop, the place is a read-only tmpfs; skipped where that cannot be mounted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.reliability.cli_runs import assert_one_line_failure, run_cli


@pytest.fixture
def read_only_dir(tmp_path):
    """An empty directory in which nothing can be created."""
    point = tmp_path / "read_only"
    point.mkdir()
    if os.geteuid() != 0:
        point.chmod(0o555)
        yield point
        point.chmod(0o755)
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(point)],
                          capture_output=True, text=True) if shutil.which("mount") else None
    if done is None or done.returncode != 0:
        pytest.skip(f"root ignores mode 0o555, and a read-only tmpfs cannot be mounted here "
                    f"({done.stderr.strip() if done else 'no mount command'})")
    yield point
    subprocess.run(["umount", str(point)], capture_output=True)


TRAIN = ["--method", "clean", "--obs", "state", "--preset", "tiny", "--steps", "2", "--device", "cpu"]
CASES = [  # {ro}: the read-only directory, {target}: a real store, {results}: an evaluation directory
    ("policies.train", ["--clean", "{target}", *TRAIN, "--out", "{ro}"]),
    ("policies.train", ["--clean", "{target}", *TRAIN, "--out", "{ro}/run"]),
    ("eval.compare", ["{results}", "--out", "{ro}/c.png"]),
    ("eval.rollout", ["--policy", "random", "--trials", "1", "--max-steps", "1", "--workers", "1", "--out", "{ro}/ev"]),
]


@pytest.mark.parametrize("module, args", CASES, ids=[f"{m.split('.')[1]}:{a[-1]}" for m, a in CASES])
def test_an_output_in_a_read_only_place_is_one_line_exit_2(read_only_dir, made_stores, tmp_path, module, args):
    results = tmp_path / "eval"
    results.mkdir()
    (results / "results.json").write_text(json.dumps({"success_rate": 0.5, "ci95": [0.3, 0.7], "trials": 10}))
    places = {"ro": read_only_dir, "target": made_stores / "target.zarr", "results": results}

    outcome = run_cli(module, [a.format(**places) for a in args], cwd=tmp_path)

    assert_one_line_failure(outcome, str(read_only_dir))
    assert list(read_only_dir.iterdir()) == []
