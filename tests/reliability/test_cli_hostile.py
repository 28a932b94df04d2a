"""Hostile but plausible use: two runs on one directory, an edited policy.json, malformed overrides, too many workers.

Each must end in one line naming the problem (exit 2 from a command line, a ValueError-type error from
the API), never a traceback, never lost data, and never memory or processes the machine does not have.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.reliability.cli_runs import REPO_ROOT, assert_one_line_failure, run_cli, tree

TINY_STATE_RUN = ["--method", "clean", "--obs", "state", "--preset", "tiny", "--device", "cpu", "--batch-size", "8"]


def cli_env() -> dict[str, str]:
    """The environment run_cli gives a command, for one started with Popen."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}


@pytest.fixture(scope="module")
def clean_store(tmp_path_factory) -> Path:
    """A small real store of smooth synthetic episodes (no Drake: the training tests need only its data)."""
    from tests.policies.synthetic_stores import make_store

    return make_store(tmp_path_factory.mktemp("data") / "clean.zarr", episodes=3, seed=0)


# --------------------------------------------------------------------------------------------------
# Item 6: two training runs on one --out


def test_a_second_training_run_on_a_busy_directory_is_refused_naming_the_first(clean_store, tmp_path):
    run = tmp_path / "run"
    args = ["--clean", str(clean_store), *TINY_STATE_RUN, "--log-every", "1", "--out", str(run)]
    first = subprocess.Popen([sys.executable, "-m", "policies.train", *args, "--steps", "100000"], cwd=tmp_path,
                             env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600  # generous: a loaded machine starts torch slowly
        while not ((run / "metrics.jsonl").is_file() and (run / "metrics.jsonl").read_text().strip()):
            assert first.poll() is None, f"the first run ended early ({first.returncode})"
            assert time.monotonic() < deadline, "the first run never began training"
            time.sleep(0.2)

        second = run_cli("policies.train", [*args, "--steps", "5"], cwd=tmp_path)

        assert_one_line_failure(second, f"pid {first.pid}")
    finally:
        first.send_signal(signal.SIGTERM)  # stops at the next step and saves
        first.wait(timeout=300)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, len(steps) + 1)), "the second run wrote into the first's metrics"
    # The lock dies with its holder: the same command (run here, to spare a start of torch) resumes the stopped run.
    from policies.train import config_from_args, parse_args, train

    resumed = train(config_from_args(parse_args([*args, "--steps", str(steps[-1] + 1)])), run, progress=False)
    assert resumed.step == steps[-1] + 1


# --------------------------------------------------------------------------------------------------
# Item 11: an edited policy.json


# load_policy under a 3 GB address-space limit, so that code which believes the edited sizes fails
# at once instead of taking the machine's memory. One line per case: "refused <message>", "loaded",
# or "crashed <exception type>".
LOAD_EACH = textwrap.dedent("""
    import json, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
    import numpy as np, torch
    torch.set_num_threads(1)
    from policies.policy import PolicyError, load_policy
    for path in sys.argv[1:]:
        try:
            policy = load_policy(path, device="cpu")
            policy.reset(seed=0)
            policy.act(np.array([0.55, 0.0, 0.5, 0.0, 0.3], np.float32))
            outcome = "loaded"
        except PolicyError as error:
            outcome = f"refused {error}"
        except BaseException as error:
            outcome = f"crashed {type(error).__name__}"
        print(json.dumps(outcome), flush=True)
""")

# (what the edit sets, the word the error must name)
EDITS = {
    "down_dims_huge": ({"policy": {"down_dims": [32, 1000000]}}, "down_dims"),
    "down_dims_negative": ({"policy": {"down_dims": [-32, 64]}}, "down_dims"),
    "action_dim_float": ({"action_dim": 5e7}, "action_dim"),
    "action_dim_huge": ({"action_dim": 50_000_000}, "action_dim"),
    "action_dim_fraction": ({"action_dim": 2.5}, "action_dim"),
    "action_dim_negative": ({"action_dim": -2}, "action_dim"),
    "horizon_huge": ({"policy": {"horizon": 1e7}}, "horizon"),
}


def edited_export(export: Path, dest: Path, edit: dict) -> Path:
    """A copy of ``export`` whose policy.json has ``edit`` applied (top-level keys, or {"policy": {...}} in the config)."""
    dest.mkdir()
    (dest / "model.safetensors").write_bytes((export / "model.safetensors").read_bytes())
    meta = json.loads((export / "policy.json").read_text())
    config = json.loads(meta["config"])
    config["policy"].update(edit.get("policy", {}))
    meta["config"] = json.dumps(config)
    meta.update({key: value for key, value in edit.items() if key != "policy"})
    (dest / "policy.json").write_text(json.dumps(meta))
    return dest


def test_an_edited_policy_json_is_refused_in_one_line_before_anything_is_built(clean_store, tmp_path):
    from policies.export import export_policy
    from policies.train import config_from_args, parse_args, train

    train(config_from_args(parse_args(["--clean", str(clean_store), *TINY_STATE_RUN, "--steps", "2", "--out", "run"])),
          tmp_path / "run", progress=False)
    export_policy(tmp_path / "run", tmp_path / "export")
    paths = [edited_export(tmp_path / "export", tmp_path / name, edit) for name, (edit, _) in EDITS.items()]

    done = subprocess.run([sys.executable, "-c", LOAD_EACH, str(tmp_path / "export"), *map(str, paths)],
                          cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=600)

    assert done.returncode == 0, done.stderr[-2000:]
    outcomes = [json.loads(line) for line in done.stdout.splitlines()]
    assert outcomes[0] == "loaded"  # the export as written
    wrong = {name: outcome for (name, (_, field)), outcome in zip(EDITS.items(), outcomes[1:], strict=True)
             if not (outcome.startswith("refused") and field in outcome and "\n" not in outcome)}
    assert not wrong, wrong


# --------------------------------------------------------------------------------------------------
# Item 14: malformed overrides

BAD_OVERRIDES = [
    ("render.image_size=[32", "render.image_size"),
    ("physics.time_step=!!python/object/apply:os.system ['echo owned']", "physics.time_step"),
    ("physics.x=!!python/object:os.system", "physics.x"),
]
OVERRIDE_CASES = [
    (module, [*args, "--set", override], expected)
    for override, expected in BAD_OVERRIDES
    for module, args in [("eval.rollout", ["--policy", "random", "--trials", "1", "--max-steps", "1", "--workers", "1",
                                           "--out", "out/ev"]),
                         ("data_gen.gcs", ["--n", "1", "--workers", "1", "--out", "out/s.zarr"])]
]


@pytest.mark.parametrize("module, args, expected", OVERRIDE_CASES,
                         ids=[f"{m.split('.')[1]}:{a[-1][:40]}" for m, a, _ in OVERRIDE_CASES])
def test_a_malformed_override_is_one_line_exit_2_and_creates_nothing(tmp_path, module, args, expected):
    outcome = run_cli(module, args, cwd=tmp_path)

    assert_one_line_failure(outcome, expected)
    assert tree(tmp_path) == {}


def test_overrides_through_the_api_fail_as_value_errors_naming_them():
    from pushing_sim.domains import load_domain

    with pytest.raises(ValueError, match=r"render\.image_size.*YAML"):
        load_domain("sim", ["render.image_size=[32"])
    with pytest.raises(ValueError, match="key.path=value. strings, got int 32"):
        load_domain("sim", [32])
    with pytest.raises(ValueError, match="a list of .* got str"):
        load_domain("sim", "render.image_size=32")
    assert load_domain("sim", ("render.image_size=32",)).render.image_size == 32


@pytest.mark.parametrize("overrides", [[32], ["render.image_size=32", 64], "render.image_size=32", 7])
def test_the_env_refuses_overrides_that_are_not_strings_with_a_value_error(overrides):
    import gymnasium

    import pushing_sim  # noqa: F401  (registers the env)

    with pytest.raises(ValueError, match="domain_overrides") as error:
        gymnasium.make("pushing_sim/PlanarPushing-v0", obs_type="state", domain_overrides=overrides)
    assert "\n" not in str(error.value)


# --------------------------------------------------------------------------------------------------
# Item 17: more workers than cores


def test_workers_are_capped_at_the_cores_unless_a_ray_cluster_runs_them(monkeypatch, capsys):
    from data_gen.backends import available_cores, cap_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert available_cores() == 2
    assert cap_workers(64, "local") == 2
    notice = capsys.readouterr().out.strip().splitlines()
    assert len(notice) == 1 and "--workers 64 is more than the 2 cores available" in notice[0], notice
    assert cap_workers(64, "ray") == 2  # a local Ray instance runs on these cores too
    capsys.readouterr()
    assert cap_workers(2, "local") == 2 and cap_workers(1, "local") == 1
    assert cap_workers(64, "ray", "ray://head:10001") == 64  # a cluster's cores are not ours to count
    monkeypatch.setenv("RAY_ADDRESS", "head:6379")
    assert cap_workers(64, "ray") == 64
    assert capsys.readouterr().out == ""  # nothing capped, nothing said

    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # macOS has none
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert available_cores() == 3


def _pid_init() -> None:
    pass


def _pid_of_worker(item: int) -> int:
    return os.getpid()


def test_the_shared_worker_pool_starts_no_more_processes_than_cores(monkeypatch, capsys):
    """data_gen.gcs and eval.rollout both fan out through ordered_map: with one core it runs here."""
    from data_gen.backends import ordered_map

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    pids = list(ordered_map(_pid_init, (), _pid_of_worker, range(3), workers=3))
    assert pids == [os.getpid()] * 3
    assert "1 core available" in capsys.readouterr().out


def test_rollout_with_more_workers_than_cores_runs_on_the_cores_it_has(tmp_path):
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, cores[:1])  # the command inherits one core
    try:
        outcome = run_cli("eval.rollout", ["--policy", "random", "--trials", "2", "--max-steps", "1", "--workers", "3",
                                           "--videos", "0", "--out", "ev"], cwd=tmp_path)
    finally:
        os.sched_setaffinity(0, cores)
    assert outcome.returncode == 0, outcome.stderr[-2000:]
    notices = [line for line in outcome.stdout.splitlines() if "--workers" in line]
    assert len(notices) == 1 and "--workers 3 is more than the 1 core available" in notices[0], outcome.stdout
    assert json.loads((tmp_path / "ev" / "results.json").read_text())["config"]["workers"] == 1
