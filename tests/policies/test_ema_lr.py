"""The EMA weights and the learning rate of a real run, against their formulas written out here.

EMA (policies/ema.py): after optimiser step k (1-based) the average becomes d_k * average + (1 - d_k) *
weights, with d_1 = 0 and d_k = min(max_decay, 1 - k^-power) after; it starts as a copy of the initial
weights. LR (policies/train.py): factor(s) = s / warmup for s < warmup, then (1 + cos(pi * (s - warmup)
/ (total - warmup))) / 2, and 0 from ``total`` on; optimiser step k runs at lr * factor(k - 1), and the
metrics record of step s logs the lr after it, lr * factor(s).
"""

from __future__ import annotations

import json
import math

import pytest
import torch

import policies.train
from policies.config import DataConfig, PolicyConfig, RunConfig, TrainingConfig
from policies.train import cosine_with_warmup, train

STEPS, WARMUP, LR = 12, 4, 1e-3
EMA_POWER, EMA_MAX_DECAY = 0.9, 0.75  # the cap binds from step 5 on (1 - 5^-0.9 = 0.765)


def expected_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return step / warmup
    if step >= total:
        return 0.0
    return (1 + math.cos(math.pi * (step - warmup) / (total - warmup))) / 2


def expected_decay(step: int) -> float:
    return 0.0 if step == 1 else min(EMA_MAX_DECAY, 1 - step**-EMA_POWER)


def test_cosine_with_warmup_rises_linearly_then_falls_as_a_half_cosine():
    factor = cosine_with_warmup(4, 12)
    assert [factor(s) for s in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert factor(6) == pytest.approx((1 + math.sqrt(0.5)) / 2, abs=1e-15)  # a quarter of the way down
    assert factor(8) == pytest.approx(0.5, abs=1e-15)
    assert factor(10) == pytest.approx((1 - math.sqrt(0.5)) / 2, abs=1e-15)
    assert factor(12) == pytest.approx(0.0, abs=1e-15) and factor(13) == factor(40) == 0.0
    for warmup, total in [(4, 12), (0, 7), (1, 2), (500, 10_000)]:
        factor = cosine_with_warmup(warmup, total)
        for step in range(total + 3):
            assert factor(step) == pytest.approx(expected_factor(step, warmup, total), abs=1e-15), (warmup, total, step)


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory, clean_store):
    """A tiny real run, each optimiser step recorded: the step number passed, the lr it ran at, and the
    model's and the EMA's weights after it (the initial weights first)."""
    config = RunConfig(
        policy=PolicyConfig(preset="tiny", obs_mode="state"),
        training=TrainingConfig(method="clean", steps=STEPS, batch_size=8, lr=LR, warmup_steps=WARMUP, seed=0, device="cpu",
                                log_every=1, ema_power=EMA_POWER, ema_max_decay=EMA_MAX_DECAY),  # fmt: skip
        data=DataConfig(clean=(str(clean_store),)),
    )
    real_step = policies.train.training_step
    record = {"steps": [], "lrs": [], "weights": [], "ema": [], "buffers_equal": []}

    def recording_step(model, ema, optimizer, scheduler, batch, step, *args, **kwargs):
        if not record["weights"]:
            record["weights"].append(snapshot(model))
            record["ema"].append(snapshot(ema.model))
        record["steps"].append(step)
        record["lrs"].append(optimizer.param_groups[0]["lr"])
        value = real_step(model, ema, optimizer, scheduler, batch, step, *args, **kwargs)
        record["weights"].append(snapshot(model))
        record["ema"].append(snapshot(ema.model))
        record["buffers_equal"].append(all(torch.equal(a, b) for a, b in zip(ema.model.buffers(), model.buffers(), strict=True)))
        return value

    out = tmp_path_factory.mktemp("runs") / "recorded"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(policies.train, "training_step", recording_step)
        result = train(config, out, progress=False)
    assert result.step == STEPS
    return record, result, out


def test_the_ema_follows_the_decay_formula_over_the_recorded_weights(recorded_run):
    record, result, _ = recorded_run
    assert record["steps"] == list(range(1, STEPS + 1))
    weights, ema = record["weights"], record["ema"]
    for name in weights[0]:
        torch.testing.assert_close(ema[0][name], weights[0][name], rtol=0, atol=0)  # starts as a copy
    # Step 1 runs at lr 0; every later step moves the weights (the last at lr * 0.04), so each decay matters.
    moved = [max((weights[k][n] - weights[k - 1][n]).abs().max().item() for n in weights[0]) for k in range(1, STEPS + 1)]
    assert moved[0] == 0 and min(moved[1:]) > 1e-5, moved

    expected = {name: value.double() for name, value in weights[0].items()}
    for k in range(1, STEPS + 1):
        decay = expected_decay(k)
        for name in expected:
            expected[name] = decay * expected[name] + (1 - decay) * weights[k][name].double()
            torch.testing.assert_close(ema[k][name].double(), expected[name], rtol=1e-5, atol=1e-7,
                                       msg=lambda m, k=k, name=name: f"EMA of {name} after step {k}: {m}")  # fmt: skip
    final = dict(result.ema_model.named_parameters())
    for name in expected:
        torch.testing.assert_close(final[name].detach().double(), expected[name], rtol=1e-5, atol=1e-7)
    assert all(record["buffers_equal"])  # buffers (the normaliser) are copied, not averaged


def test_each_step_runs_at_the_scheduled_lr_and_the_log_records_it(recorded_run):
    record, _, out = recorded_run
    assert record["lrs"] == pytest.approx([LR * expected_factor(k - 1, WARMUP, STEPS) for k in range(1, STEPS + 1)], abs=1e-15)
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == list(range(1, STEPS + 1))
    expected = [LR * expected_factor(s, WARMUP, STEPS) for s in range(1, STEPS + 1)]
    assert [r["train/lr"] for r in logged] == pytest.approx(expected, abs=1e-15)
    assert [r["lr"] for r in logged] == [r["train/lr"] for r in logged]
    assert max(r["train/lr"] for r in logged) == pytest.approx(LR, abs=1e-15)  # reached at the end of the warm-up
