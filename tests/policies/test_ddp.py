"""Training on two gloo processes under torchrun is training in one: the same batches, losses and weights.

Tiny real runs: a state policy on the shared clean store, 20 steps of a global batch of 16. The one-process
reference runs in this process; the two-process runs are ``python -m torch.distributed.run`` subprocesses.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from policies.checkpoint import load_checkpoint, model_from_checkpoint
from policies.distributed import DistributedError, Ranks
from policies.model import DiffusionModel
from policies.train import BatchStream, admission_sampler, config_from_args, main, open_dataset, parse_args, train
from tests.policies.test_train import tiny_config

STEPS = 20
REPOSITORY = Path(__file__).resolve().parents[2]
# Two processes add their halves' gradients in another order than one process sums its batch, so the
# steps differ by float32 rounding. Measured over these 20 steps: losses within 1.2e-7 relative (one
# float32 ulp), raw and EMA weights (|w| <= 1) within 1.2e-7. The bounds leave ~100x for other CPUs and
# torch builds; each process drawing its own batch instead of its share moves the losses by up to 0.17
# relative (checked by breaking the share), 10^4 times the bound.
LOSS_RTOL, LOSS_ATOL = 1e-5, 1e-6
WEIGHT_ATOL = 1e-5


def cli_args(store, out, steps=STEPS, batch_size=16):
    # warm-up beyond the run: the learning rate at a step does not depend on the run's length, so a run
    # stopped early and resumed to STEPS takes the steps of a run of STEPS.
    return ["--clean", str(store), "--method", "clean", "--obs", "state", "--preset", "tiny", "--steps", str(steps),
            "--batch-size", str(batch_size), "--lr", "1e-3", "--warmup-steps", "100", "--log-every", "1",
            "--device", "cpu", "--seed", "0", "--out", str(out)]  # fmt: skip


def torchrun(args, **kwargs):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone", "-m", "policies.train", *args]
    return subprocess.Popen(command, cwd=REPOSITORY, env={**os.environ, "OMP_NUM_THREADS": "1"}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)  # fmt: skip


# A torchrun of 20 tiny steps takes ~15 s on two idle cores, but minutes on a machine that other jobs load.
TIMEOUT_S = 900


def finished(process, timeout=TIMEOUT_S):
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return process.returncode, out, err


def records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def losses(out):
    return {r["step"]: r["loss"] for r in records(out)}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, clean_store):
    out = tmp_path_factory.mktemp("ddp") / "one"
    result = train(config_from_args(parse_args(cli_args(clean_store, out))), out, progress=False)
    assert result.step == STEPS
    return out


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, clean_store):
    out = tmp_path_factory.mktemp("ddp") / "two"
    code, stdout, stderr = finished(torchrun(cli_args(clean_store, out)))
    assert code == 0, stderr[-3000:]
    return out, stdout, stderr


def test_each_rank_keeps_its_rows_of_the_batch_one_process_draws(clean_store):
    config = tiny_config(clean_store)  # images: random crops too
    dataset = open_dataset(config)
    model = DiffusionModel(config.policy, dataset.cameras, dataset.action_dim)
    sampler, _ = admission_sampler(config.training, dataset, model.schedule.sigmas, model.normalizer)
    whole = BatchStream(dataset, sampler, model.crops, 12, seed=3, start=0)
    expected = whole.make(5)
    whole.close()
    for world_size in (2, 3, 4):
        shares = []
        for rank in range(world_size):
            stream = BatchStream(dataset, sampler, model.crops, 12, seed=3, start=0, share=Ranks(rank, world_size).share(12))
            shares.append(stream.make(5))
            stream.close()
        for key, value in expected.items():
            assert torch.equal(torch.cat([share[key] for share in shares]), value), (world_size, key)
    with pytest.raises(DistributedError, match="batch size 12 does not split evenly over 5 processes"):
        Ranks(0, 5).share(12)


def test_the_ranks_come_from_torchrun_s_variables():
    assert Ranks.from_env({}).world_size == 1 and not Ranks.from_env({}).distributed
    ranks = Ranks.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (ranks.rank, ranks.world_size, ranks.local_rank, ranks.is_main) == (3, 4, 1, False)
    for bad in ({"RANK": "0"}, {"RANK": "x", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, {"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}):
        with pytest.raises(DistributedError):
            Ranks.from_env(bad)
    assert Ranks().mean([1.5, 2.0]) == [1.5, 2.0] and Ranks().all(True) and not Ranks().all(False)  # one process: the identity


def test_two_processes_take_the_steps_of_one(one_process, two_processes):
    two, _, _ = two_processes
    reference, ranked = losses(one_process), losses(two)
    assert sorted(ranked) == sorted(reference) == list(range(1, STEPS + 1))
    np.testing.assert_allclose([ranked[s] for s in reference], list(reference.values()), rtol=LOSS_RTOL, atol=LOSS_ATOL)
    grad_norms = [[r["train/grad_norm"] for r in records(out)] for out in (one_process, two)]
    np.testing.assert_allclose(grad_norms[1], grad_norms[0], rtol=1e-4)  # the averaged gradient is the whole batch's
    assert np.mean(list(reference.values())[-5:]) < np.mean(list(reference.values())[:5])  # it did train
    saved = [load_checkpoint(out) for out in (one_process, two)]
    for weights in ("ema_model", "model"):
        assert saved[0][weights].keys() == saved[1][weights].keys()  # no "module." from the DDP wrapper
        for name, value in saved[0][weights].items():
            torch.testing.assert_close(saved[1][weights][name], value, rtol=0, atol=WEIGHT_ATOL, msg=f"{weights}.{name}")
    with torch.random.fork_rng(devices=[]):  # the initial weights: training moved them far beyond the tolerance
        torch.manual_seed(0)
        initial = DiffusionModel(saved[0]["run_config"].policy, {}, 2).state_dict()
    assert max(float((saved[0]["model"][n] - initial[n]).abs().max()) for n in initial if n.startswith("unet.")) > 100 * WEIGHT_ATOL


def test_only_rank_0_writes_the_run_and_its_checkpoint_loads_in_one_process(two_processes):
    out, stdout, _ = two_processes
    assert sorted(p.name for p in out.iterdir()) == ["admission.json", "ckpt.pt", "config.json", "metrics.jsonl"]
    written = records(out)
    assert [r["step"] for r in written] == list(range(1, STEPS + 1))  # one line per step, not one per process
    assert all(r["world_size"] == 2 for r in written)
    assert stdout.count("trained to step") == 1
    payload = torch.load(out / "ckpt.pt", weights_only=True)
    assert payload["world_size"] == 2 and payload["step"] == STEPS
    assert not any(name.startswith("module.") for name in payload["model"])
    model_from_checkpoint(load_checkpoint(out))  # a single process reads it as its own


def test_a_stop_signal_stops_both_processes_after_the_same_step_and_the_run_resumes(one_process, clean_store, tmp_path):
    out = tmp_path / "stopped"
    process = torchrun(cli_args(clean_store, out, steps=1000))  # far longer than the test waits
    deadline = time.monotonic() + TIMEOUT_S
    while not (out / "metrics.jsonl").exists() or len(records(out)) < 3:
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)  # what a scheduler sends; torchrun passes it on to both processes
    _, stdout, stderr = finished(process)
    # torchrun kills a process that has not stopped 30 s after the signal (one left waiting in a collective
    # for the other would be): both stopped by themselves.
    assert "forcefully exiting" not in stderr and "SIGKILL" not in stderr, stderr[-3000:]
    stopped_at = load_checkpoint(out)["step"]
    assert 3 <= stopped_at < STEPS and f"interrupted at step {stopped_at}" in stdout
    assert [r["step"] for r in records(out)] == list(range(1, stopped_at + 1))
    across = tmp_path / "resumed_in_one_process"
    shutil.copytree(out, across)

    code, _, stderr = finished(torchrun(cli_args(clean_store, out)))  # two processes resume to STEPS
    assert code == 0, stderr[-3000:]
    result = train(config_from_args(parse_args(cli_args(clean_store, across))), across, progress=False)  # one resumes the DDP run
    assert result.step == STEPS
    reference = losses(one_process)
    for resumed in (out, across):
        continued = losses(resumed)
        assert sorted(continued) == list(range(1, STEPS + 1))
        np.testing.assert_allclose([continued[s] for s in reference], list(reference.values()), rtol=LOSS_RTOL, atol=LOSS_ATOL)
        ema = [load_checkpoint(o)["ema_model"] for o in (one_process, resumed)]
        for name, value in ema[0].items():
            torch.testing.assert_close(ema[1][name], value, rtol=0, atol=WEIGHT_ATOL)


def test_a_batch_that_does_not_split_over_the_processes_is_one_line_exit_2(clean_store, tmp_path, monkeypatch, capsys):
    for name, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}.items():  # as torchrun starts rank 1
        monkeypatch.setenv(name, value)
    code = main(cli_args(clean_store, tmp_path / "run", batch_size=15))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("python -m policies.train (rank 1): error: batch size 15 does not split evenly over 2 processes")
    assert not (tmp_path / "run").exists()  # refused before any process group or file
