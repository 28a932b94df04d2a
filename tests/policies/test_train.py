"""Tiny real training runs: the loss falls, checkpoints round-trip, the policy acts, runs resume, the CLI fails cleanly."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from gymnasium.spaces import Box, Dict

from data_gen.episode_store import EpisodeStore, StoreError
from policies.checkpoint import load_checkpoint, model_from_checkpoint
from policies.config import DataConfig, PolicyConfig, RunConfig, TrainingConfig
from policies.ema import EMA
from policies.model import DiffusionModel
from policies.policy import PolicyError, act_batch, load_policy
from policies.train import BatchStream, TrainingError, admission_sampler, config_from_args, main, open_dataset, parse_args, total_steps, train
from tests.policies.synthetic_stores import make_store

STEPS = 40


def tiny_config(clean, corrupt=(), obs_mode="image", **training) -> RunConfig:
    training = {"method": "cotrain" if corrupt else "clean", "steps": STEPS, "batch_size": 16, "lr": 1e-3,
                "warmup_steps": 5, "seed": 0, "device": "cpu", "log_every": 5, **training}  # fmt: skip
    return RunConfig(
        policy=PolicyConfig(preset="tiny", obs_mode=obs_mode),
        training=TrainingConfig(**training),
        data=DataConfig(clean=(str(clean),), corrupt=tuple(str(c) for c in corrupt)),
    )


@pytest.fixture(scope="module")
def image_run(tmp_path_factory, clean_store, corrupt_store):
    out = tmp_path_factory.mktemp("runs") / "image"
    config = tiny_config(clean_store, [corrupt_store])
    return config, out, train(config, out, progress=False)


def test_a_few_training_steps_reduce_the_loss(image_run):
    _, out, result = image_run
    assert result.step == STEPS and len(result.losses) == STEPS and np.all(np.isfinite(result.losses))
    first, last = np.mean(result.losses[:10]), np.mean(result.losses[-10:])
    assert last < 0.8 * first, f"loss {first:.3f} -> {last:.3f}"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(5, STEPS + 1, 5))
    assert all(r["samples_per_s"] > 0 and 0 <= r["clean_fraction"] <= 1 for r in records)
    # LeRobot's names for the same figures, and the gradient norm measured before each update
    assert all(r["train/loss"] == r["loss"] and r["train/lr"] == r["lr"] and r["train/grad_norm"] > 0
               and 0 < r["train/update_s"] < 5 for r in records)


def test_checkpoint_loads_without_code_and_gives_the_same_outputs(image_run):
    config, out, result = image_run
    payload = torch.load(out / "ckpt.pt", weights_only=True)  # no pickled objects inside
    assert payload["step"] == STEPS and RunConfig.from_json(payload["config"]) == config
    assert RunConfig.load(out / "config.json") == config
    obs = {
        "overhead": torch.randint(0, 256, (3, 2, 3, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)),
        "agent_pos": torch.full((3, 2, 2), 0.55),
    }
    restored = model_from_checkpoint(load_checkpoint(out))
    for live, saved in [(result.ema_model, restored), (result.model, model_from_checkpoint(load_checkpoint(out), "model"))]:
        live.eval()
        a = live.sample_actions(obs, torch.Generator().manual_seed(1))
        b = saved.sample_actions(obs, torch.Generator().manual_seed(1))
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # EMA and raw weights differ after training: the checkpoint holds both.
    assert not torch.equal(result.model.unet.final[1].weight, result.ema_model.unet.final[1].weight)


def episode_observations(store_path, episode=0):
    with EpisodeStore.open(store_path) as store:
        data = store.episode(episode)
    return [{"pixels": {"overhead": data["overhead"][i]}, "agent_pos": data["agent_pos"][i]} for i in range(len(data["action"]))]


def test_act_returns_finite_actions_in_the_data_range_deterministically(image_run, clean_store, corrupt_store):
    _, out, _ = image_run
    policy = load_policy(out, device="cpu")
    observations = episode_observations(clean_store)[:20]
    actions = np.concatenate([EpisodeStore.open(p).array("action") for p in (clean_store, corrupt_store)])
    low, high = actions.min(0), actions.max(0)

    def rollout(seed):
        policy.reset(seed=seed)
        return np.stack([policy.act(obs) for obs in observations])

    first = rollout(7)
    assert first.shape == (20, 2) and first.dtype == np.float32 and np.all(np.isfinite(first))
    assert np.all(first >= low - 1e-5) and np.all(first <= high + 1e-5)  # clip_sample keeps chunks in range
    np.testing.assert_array_equal(rollout(7), first)
    assert not np.array_equal(rollout(8), first)


def test_act_replans_every_n_action_steps(image_run, clean_store, monkeypatch):
    _, out, _ = image_run
    policy = load_policy(out, device="cpu")
    calls = []
    original = policy.predict_chunk
    monkeypatch.setattr(policy, "predict_chunk", lambda obs, gen=None: calls.append(len(obs)) or original(obs, gen))
    policy.reset(seed=0)
    for obs in episode_observations(clean_store)[:17]:
        policy.act(obs)
    assert calls == [2, 2, 2]  # steps 0, 8 and 16, each with n_obs_steps observations


def test_a_batch_of_lockstep_policies_acts_as_each_policy_alone(image_run, clean_store, corrupt_store):
    """act_batch samples the due chunks in one call; in float64 each env's actions are its own alone,
    even when the envs' trials start at different steps (their chunks fall due at different times)."""
    _, out, _ = image_run
    episodes = [episode_observations(store, e)[:19] for store, e in [(clean_store, 0), (corrupt_store, 0), (corrupt_store, 1)]]
    starts = [0, 8, 3]  # env k resets at step starts[k]: its chunks fall due at starts[k] + 8j, alone or with others

    def alone(precision):
        actions = []
        for k, observations in enumerate(episodes):
            policy = load_policy(out, device="cpu", precision=precision)
            policy.reset(seed=100 + k)
            actions.append(np.stack([policy.act(obs) for obs in observations[: 19 - starts[k]]]))
        return actions

    def lockstep(precision):
        first = load_policy(out, device="cpu", precision=precision)
        policies = [first] + [first.sibling() for _ in episodes[1:]]
        assert all(p.model is first.model for p in policies)
        actions, batch_sizes = [[] for _ in episodes], []
        original = first.predict_chunks
        first.predict_chunks = lambda windows, generators: batch_sizes.append(len(windows)) or original(windows, generators)
        for step in range(19):
            active = [k for k in range(len(episodes)) if step >= starts[k]]
            for k in active:
                if step == starts[k]:
                    policies[k].reset(seed=100 + k)
            due = act_batch([policies[k] for k in active], [episodes[k][step - starts[k]] for k in active])
            for k, action in zip(active, due):
                actions[k].append(action)
        return [np.stack(a) for a in actions], batch_sizes

    reference = alone("float64")
    batched, batch_sizes = lockstep("float64")
    assert sorted(set(batch_sizes)) == [1, 2]  # chunks fell due together and apart
    for a, b in zip(reference, batched):
        np.testing.assert_array_equal(a, b)
    # float32 sampling: the same chunks up to rounding (which then depends on the batch).
    float32, _ = lockstep("float32")
    assert all(np.abs(a - b).max() < 1e-4 for a, b in zip(float32, reference))


def test_act_batch_refuses_policies_on_different_models(image_run):
    _, out, _ = image_run
    one, two = load_policy(out, device="cpu"), load_policy(out, device="cpu")
    observation = {"pixels": {"overhead": np.zeros((32, 32, 3), np.uint8)}, "agent_pos": np.zeros(2, np.float32)}
    with pytest.raises(ValueError, match="share one model"):
        act_batch([one, two], [observation, observation])
    with pytest.raises(ValueError, match="precision must be one of float64, float32"):
        load_policy(out, device="cpu", precision="float16")


def test_wrong_observations_and_bad_checkpoints_are_one_line_errors(image_run, tmp_path):
    _, out, _ = image_run
    policy = load_policy(out, device="cpu")
    image = np.zeros((32, 32, 3), np.uint8)
    good = {"pixels": {"overhead": image}, "agent_pos": np.zeros(2, np.float32)}
    policy.act(good)
    for bad, match in [
        ({"overhead": image, "agent_pos": good["agent_pos"]}, "differ from training"),  # the flat layout of before
        ({**good, "pixels": {"front": image}}, "differ from training"),
        ({**good, "pixels": {"front": image, "wrist": image}}, "differ from training"),  # others, not the one it reads
        ({**good, "environment_state": np.zeros(3, np.float32)}, "differ from training"),
        ({**good, "pixels": image}, "differ from training"),
        ({**good, "pixels": {"overhead": np.zeros((96, 96, 3), np.uint8)}}, "trained on uint8"),
        ({**good, "pixels": {"overhead": image.astype(np.float32)}}, "trained on uint8"),
        ({**good, "agent_pos": np.zeros(3)}, "agent_pos"),
        (np.zeros(5, np.float32), "takes"),
    ]:
        with pytest.raises(PolicyError, match=match) as error:
            policy.act(bad)
        assert "\n" not in str(error.value)
    box = Box(0, 255, (32, 32, 3), np.uint8)
    agent_pos = Box(-1, 1, (2,), np.float32)
    policy.check_observation_space(Dict({"pixels": Dict({"overhead": box}), "agent_pos": agent_pos}))
    for space in [
        Dict({"overhead": box, "agent_pos": agent_pos}),
        Dict({"pixels": Dict({"wrist": box}), "agent_pos": agent_pos}),
        Dict({"pixels": Dict({"overhead": Box(0, 255, (96, 96, 3), np.uint8)}), "agent_pos": agent_pos}),
        Dict({"pixels": Dict({"overhead": box})}),
        Dict({"pixels": box, "agent_pos": agent_pos}),
        Box(-1, 1, (5,), np.float32),
    ]:
        with pytest.raises(PolicyError):
            policy.check_observation_space(space)
    with pytest.raises(PolicyError, match="no such checkpoint"):
        load_policy(tmp_path / "nothing.pt")
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes((out / "ckpt.pt").read_bytes()[:5000])
    with pytest.raises(PolicyError, match="damaged"):
        load_policy(damaged)


@pytest.mark.parametrize("weights, value", [("ema_model", float("nan")), ("model", float("inf"))])
def test_a_checkpoint_with_non_finite_weights_is_refused_at_load(image_run, tmp_path, weights, value):
    _, out, _ = image_run
    payload = torch.load(out / "ckpt.pt", weights_only=True)
    name = next(k for k, v in payload[weights].items() if v.is_floating_point() and v.numel() > 1)
    payload[weights][name].view(-1)[1] = value
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    with pytest.raises(PolicyError, match=f"{weights} weight '{name}' holds NaN or infinite values") as error:
        load_policy(bad)
    assert str(bad) in str(error.value) and "\n" not in str(error.value)


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, clean_store, monkeypatch, capsys):
    import errno

    out = tmp_path / "run"
    real_save, saves = torch.save, []

    def second_save_hits_a_full_disk(payload, path, *args, **kwargs):
        saves.append(payload["step"])
        if len(saves) == 1:
            return real_save(payload, path, *args, **kwargs)
        with open(path, "wb") as file:  # a partial file, as a real full disk leaves one
            file.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(torch, "save", second_save_hits_a_full_disk)
    code = main(["--clean", str(clean_store), "--method", "clean", "--obs", "state", "--preset", "tiny",
                 "--steps", "20", "--batch-size", "16", "--lr", "1e-3", "--warmup-steps", "5",
                 "--checkpoint-every", "10", "--device", "cpu", "--out", str(out)])
    monkeypatch.setattr(torch, "save", real_save)
    stderr = capsys.readouterr().err
    assert code == 2 and saves == [10, 20]
    last = stderr.strip().splitlines()[-1]  # after the progress bar: one line
    assert last.startswith("python -m policies.train: error:") and "Traceback" not in stderr
    assert "no space left on device" in last and str(out / "ckpt.pt") in last and "the previous one is kept" in last
    assert torch.load(out / "ckpt.pt", weights_only=True)["step"] == 10  # the previous checkpoint survives
    assert not (out / "ckpt.pt.partial").exists()


def test_resume_continues_the_step_count_and_refuses_another_config(tmp_path, clean_store):
    out = tmp_path / "run"
    first = train(tiny_config(clean_store, steps=3, obs_mode="state"), out, progress=False)
    assert first.step == 3
    second = train(tiny_config(clean_store, steps=6, obs_mode="state"), out, progress=False)
    assert second.step == 6 and len(second.losses) == 3
    assert torch.load(out / "ckpt.pt", weights_only=True)["step"] == 6
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [3, 5, 6]  # log_every 5, plus each run's last step
    with pytest.raises(TrainingError, match="another config.*lr"):
        train(tiny_config(clean_store, steps=9, obs_mode="state", lr=5e-4), out, progress=False)


def test_state_policy_acts_on_the_state_vector(tmp_path, clean_store):
    out = tmp_path / "state"
    train(tiny_config(clean_store, steps=2, obs_mode="state"), out, progress=False)
    policy = load_policy(out, device="cpu")
    policy.reset(seed=0)
    action = policy.act(np.array([0.55, 0.5, 0.5, 0.0, 0.3], np.float32))
    assert action.shape == (2,) and np.all(np.isfinite(action))
    # The same state as LeRobot's environment_state + agent_pos gives the same action.
    policy.reset(seed=0)
    split = {"environment_state": np.array([0.5, 0.0, 0.3], np.float32), "agent_pos": np.array([0.55, 0.5], np.float32)}
    np.testing.assert_array_equal(policy.act(split), action)
    with pytest.raises(PolicyError, match=r"\(5,\)"):
        policy.act(np.zeros(4, np.float32))
    with pytest.raises(PolicyError, match="environment_state"):
        policy.act({"agent_pos": split["agent_pos"]})
    with pytest.raises(PolicyError, match="environment_state"):
        policy.act({**split, "environment_state": np.zeros(5, np.float32)})
    policy.check_observation_space(Box(-1, 1, (5,), np.float32))
    policy.check_observation_space(Dict({"environment_state": Box(-1, 1, (3,), np.float32), "agent_pos": Box(-1, 1, (2,), np.float32)}))
    with pytest.raises(PolicyError, match="state vector"):
        policy.check_observation_space(Dict({"agent_pos": Box(-1, 1, (2,), np.float32)}))
    with pytest.raises(PolicyError, match="state vector"):
        policy.check_observation_space(Dict({"environment_state": Box(-1, 1, (5,), np.float32), "agent_pos": Box(-1, 1, (2,), np.float32)}))


def normalizer_attrs(dataset):
    fitted = dataset.fit_normalizer()
    return {"normalizer": {"action_min": fitted.action_min.tolist(), "action_max": fitted.action_max.tolist()}}


def sampler_for(config):
    dataset = open_dataset(config)
    model = DiffusionModel(config.policy, {}, 2)
    model.normalizer.load_state_dict(dataset.fit_normalizer().state_dict())
    return dataset, *admission_sampler(config.training, dataset, model.schedule.sigmas, model.normalizer)


@pytest.fixture()
def annotated(tmp_path, clean_store):
    """A corrupt store with two annotation sets: one in this run's normalised units, one in others."""
    corrupt = make_store(tmp_path / "c.zarr", episodes=5, steps=20, noise=0.01)
    config = tiny_config(clean_store, [corrupt], obs_mode="state", method="ambient", sigma_min_from="classifier")
    dataset = open_dataset(config)
    with EpisodeStore.open(corrupt, "a") as store:
        values = np.linspace(0.0, 0.9, store.n_steps)
        store.write_annotation("classifier", values, attrs=normalizer_attrs(dataset))
        other = normalizer_attrs(dataset)
        other["normalizer"]["action_max"] = [v + 0.1 for v in other["normalizer"]["action_max"]]
        store.write_annotation("other_units", values, attrs=other)
        store.write_annotation("no_units", values)
        store.write_annotation("other_keys", values, attrs={"normalizer": {"agent_pos_min": [0.0, 0.0]}})
    return config, corrupt


def test_per_sample_sigma_min_comes_from_the_named_annotation_set(annotated):
    config, _ = annotated
    dataset, sampler, record = sampler_for(config)
    np.testing.assert_allclose(sampler.corrupt_sigma_min, dataset.corrupt_annotation("classifier").sigma_min)
    assert sampler.alpha_per_step[0] == 0.5 and sampler.order == "sample_first" and sampler.buffer == 1.0
    assert record["sources"]["sigma_min"]["annotation"] == "classifier"
    np.testing.assert_allclose(record["clean_probability_per_step"], sampler.clean_probability())


def test_an_explicit_dataset_level_sigma_min_is_what_trains(annotated, tmp_path):
    config, _ = annotated
    training = config.training.model_copy(update={"sigma_min": 0.3, "sigma_min_from": None})
    _, sampler, record = sampler_for(config.model_copy(update={"training": training}))
    np.testing.assert_array_equal(sampler.corrupt_sigma_min, 0.3)
    assert record["sources"]["sigma_min"] == {"dataset_level": 0.3}
    result = train(config.model_copy(update={"training": training.model_copy(update={"steps": 2})}), tmp_path / "run", progress=False)
    admission = json.loads((tmp_path / "run" / "admission.json").read_text())
    assert result.step == 2 and admission["sources"]["sigma_min"] == {"dataset_level": 0.3}
    assert json.loads(load_checkpoint(tmp_path / "run")["data"]["sigma_min_source"]) == {"dataset_level": 0.3}


@pytest.mark.parametrize(
    "name, error",
    [("missing", "no annotation set 'missing'"), ("other_units", "another action normaliser"), ("no_units", "records no action normaliser"),
     ("other_keys", "records no action normaliser")],
)
def test_annotations_in_other_units_or_absent_are_refused(annotated, name, error):
    config, _ = annotated
    training = config.training.model_copy(update={"sigma_min_from": name})
    with pytest.raises((TrainingError, StoreError), match=error):
        sampler_for(config.model_copy(update={"training": training}))


def test_batches_carry_the_contraction_noise_and_the_ambient_sigma_min_only_for_the_ambient_loss(annotated):
    config, _ = annotated
    dataset, sampler, _ = sampler_for(config)
    for ambient_loss in (False, True):
        stream = BatchStream(dataset, sampler, {}, 256, seed=0, start=0, ambient_loss=ambient_loss)
        batch = stream.make(0)
        stream.close()
        corrupt = ~batch["is_clean"].numpy()
        assert corrupt.any() and not batch["ambient_sigma_min"][~corrupt].any()
        assert bool(batch["ambient_sigma_min"][corrupt].any()) == ambient_loss
        assert batch["contraction_noise"].shape == batch["noise"].shape == batch["action"].shape
        assert not torch.equal(batch["contraction_noise"], batch["noise"])


@pytest.mark.parametrize("contract", [True, False])
def test_the_loss_contracts_each_chunk_to_its_sigma_min_before_noising_it(annotated, monkeypatch, contract):
    """With the contraction y = sqrt(1 - s_m^2) a + s_m z1; without it the chunk itself is x_{s_m}."""
    config, _ = annotated
    dataset, sampler, _ = sampler_for(config)
    model = DiffusionModel(config.policy, {}, 2)
    model.normalizer.load_state_dict(dataset.fit_normalizer().state_dict())
    stream = BatchStream(dataset, sampler, {}, 64, seed=0, start=0, ambient_loss=True)
    batch = stream.make(0)
    stream.close()
    seen = {}
    monkeypatch.setattr(model.unet, "forward", lambda x_t, t, cond: seen.setdefault("x_t", x_t))
    model.loss(batch, batch["t"], batch["ambient_sigma_min"], batch["noise"], batch["contraction_noise"], contract=contract)
    x0 = model.normalizer.normalize("action", batch["action"])
    s_t = model.schedule.sigmas[batch["t"]][:, None, None].double()
    s_m = batch["ambient_sigma_min"][:, None, None].double()
    y = torch.sqrt(1 - s_m**2) * x0 + s_m * batch["contraction_noise"] if contract else x0.double()
    expected = torch.sqrt(1 - s_t**2) / torch.sqrt(1 - s_m**2) * y + torch.sqrt((s_t**2 - s_m**2) / (1 - s_m**2)) * batch["noise"]
    assert batch["ambient_sigma_min"].gt(0).any()
    torch.testing.assert_close(seen["x_t"].double(), expected, atol=1e-5, rtol=1e-5)


def test_ambient_losses_train(annotated, tmp_path):
    config, _ = annotated
    for loss, prediction in [("denoise", "epsilon"), ("ambient", "sample")]:
        run = config.model_copy(update={
            "training": config.training.model_copy(update={"corrupt_loss": loss, "steps": 5}),
            "policy": config.policy.model_copy(update={"prediction_type": prediction}),
        })  # fmt: skip
        result = train(run, tmp_path / f"ambient-{loss}", progress=False)
        assert result.step == 5 and np.isfinite(result.losses).all()


def test_a_run_without_the_contraction_trains_and_records_it(tmp_path, clean_store, corrupt_store):
    """The same seed with and without the contraction: the same batches and initial weights, so the first
    losses differ only if the flag reaches the loss."""
    losses = {}
    for contraction in (True, False):
        config = tiny_config(clean_store, [corrupt_store], obs_mode="state", method="ambient", sigma_min=0.3,
                             corrupt_loss="ambient", contraction=contraction, steps=4)  # fmt: skip
        out = tmp_path / f"contraction-{contraction}"
        result = train(config, out, progress=False)
        assert result.step == 4 and np.isfinite(result.losses).all()
        assert json.loads((out / "admission.json").read_text())["contraction"] is contraction
        assert RunConfig.load(out / "config.json").training.contraction is contraction
        assert RunConfig.from_json(load_checkpoint(out)["config"]) == config
        losses[contraction] = result.losses
    assert "contraction" not in json.loads((tmp_path / "contraction-True" / "config.json").read_text())["training"]
    assert abs(losses[True][0] - losses[False][0]) > 1e-4 * losses[True][0], losses


def test_cli_no_contraction_needs_the_ambient_loss(tmp_path, clean_store, corrupt_store, capsys):
    common = ["--clean", str(clean_store), "--corrupt", str(corrupt_store), "--out", str(tmp_path / "run"), "--preset", "tiny",
              "--steps", "2", "--device", "cpu", "--no-contraction"]  # fmt: skip
    for method in (["--method", "cotrain"], ["--method", "ambient", "--sigma-min", "0.3"]):
        code, err = run_cli(common + method, capsys)
        assert code == 2 and "--no-contraction applies to --method ambient with --corrupt-loss ambient only" in err and len(err.splitlines()) == 1, err
        assert not (tmp_path / "run").exists()
    code, err = run_cli(common + ["--method", "cotrain", "--corrupt-loss", "ambient"], capsys)
    assert code == 2 and "--corrupt-loss ambient applies to --method ambient only" in err and len(err.splitlines()) == 1, err
    args = common + ["--method", "ambient", "--sigma-min", "0.3", "--corrupt-loss", "ambient"]
    assert config_from_args(parse_args(args)).training.contraction is False
    assert config_from_args(parse_args([a for a in args if a != "--no-contraction"])).training.contraction is True


def test_epochs_give_every_method_the_same_number_of_steps(tmp_path, clean_store, corrupt_store):
    clean = open_dataset(tiny_config(clean_store, obs_mode="state", steps=None, epochs=3))
    mixed = open_dataset(tiny_config(clean_store, [corrupt_store], obs_mode="state", steps=None, epochs=3))
    steps = [total_steps(TrainingConfig(method=m, epochs=3, batch_size=16), d) for m, d in [("clean", clean), ("cotrain", mixed)]]
    assert steps[0] == steps[1] == 3 * -(-clean.num_clean // 16) and mixed.num_corrupt > clean.num_clean


def run_cli(args, capsys):
    try:
        code = main(args)
    except SystemExit as exit_info:  # argparse's own errors
        code = exit_info.code
    return code, capsys.readouterr().err.strip()


def test_cli_bad_inputs_exit_2_with_one_line(tmp_path, clean_store, capsys):
    common = ["--out", str(tmp_path / "run"), "--preset", "tiny", "--steps", "2", "--device", "cpu"]
    other_camera = make_store(tmp_path / "wrist.zarr", episodes=1, cameras=("wrist",))
    cases = [
        (["--clean", str(tmp_path / "missing.zarr"), "--method", "clean"], "no such episode store"),
        (["--clean", str(clean_store), "--corrupt", str(other_camera), "--method", "cotrain"], "cameras"),
        (["--clean", str(clean_store), "--method", "bogus"], "invalid choice: 'bogus'"),
        (["--clean", str(clean_store), "--method", "cotrain"], "--method cotrain needs at least one --corrupt store"),
        (["--clean", str(clean_store), "--method", "clean", "--alpha-schedule", "0.1"], "LO,HI"),
        (["--clean", str(clean_store), "--corrupt", str(clean_store), "--method", "ambient"],
         "--method ambient needs exactly one of --sigma-min (dataset-level) or --sigma-min-from"),
        (["--clean", str(clean_store), "--corrupt", str(clean_store), "--method", "ambient", "--sigma-min", "0.1",
          "--sigma-min-from", "classifier"], "not allowed with argument"),
        (["--clean", str(clean_store), "--method", "clean", "--seed", "-1"], "--seed must be at least 0, got -1"),
        (["--clean", str(clean_store), "--method", "clean", "--lr", "inf"], "--lr must be a finite number, got inf"),
        (["--clean", str(clean_store), "--method", "clean", "--image-cache-gb", "inf"], "--image-cache-gb must be a finite number, got inf"),
        (["--clean", str(clean_store), "--method", "clean", "--keep-checkpoints", "10k"], "--keep-checkpoints must be whole steps"),
        (["--clean", str(clean_store), "--method", "clean", "--keep-checkpoints", "20,10"], "--keep-checkpoints must be increasing step numbers from 1, got [20, 10]"),
        (["--clean", str(clean_store), "--method", "clean", "--cameras", "wrist"], "no camera 'wrist'"),
        (["--clean", str(clean_store), "--method", "clean", "--cameras", "overhead", "overhead"], "name a camera twice"),
    ]
    for args, message in cases:
        code, err = run_cli(args + common, capsys)
        assert code == 2 and message in err and len(err.splitlines()) == 1, (args, err)
        assert not (tmp_path / "run").exists(), args
    code, err = run_cli(["--clean", str(clean_store), "--out", str(tmp_path / "x")], capsys)  # no --method
    assert code == 2 and err.splitlines()[-1].startswith("python -m policies.train: error:") and "--method" in err


def test_cli_subprocess_prints_no_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "policies.train", "--clean", str(tmp_path / "none.zarr"), "--method", "clean",
         "--out", str(tmp_path / "r"), "--steps", "1"],  # fmt: skip
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_non_finite_loss_stops_with_exit_1(tmp_path, clean_store, capsys, monkeypatch):
    monkeypatch.setattr(DiffusionModel, "loss", lambda self, batch, *a, **k: torch.full((len(batch["t"]),), float("nan")))
    code, err = run_cli(["--clean", str(clean_store), "--method", "clean", "--obs", "state", "--preset", "tiny",
                         "--out", str(tmp_path / "nan"), "--steps", "3", "--device", "cpu"], capsys)  # fmt: skip
    assert code == 1 and err.splitlines()[-1].startswith("python -m policies.train: error: non-finite loss (nan) at step 1")
    assert "Traceback" not in err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_saves_a_checkpoint(tmp_path, clean_store, capsys, monkeypatch, signum):
    original = EMA.update

    def interrupt_at_third_step(self, model, step):
        original(self, model, step)
        if step == 3:
            signal.raise_signal(signum)  # as Ctrl-C or `kill`: the step finishes, then the run saves and stops

    monkeypatch.setattr(EMA, "update", interrupt_at_third_step)
    out = tmp_path / "interrupted"
    code, _ = run_cli(["--clean", str(clean_store), "--method", "clean", "--obs", "state", "--preset", "tiny",
                       "--out", str(out), "--steps", "10", "--device", "cpu"], capsys)  # fmt: skip
    assert code == 130
    assert torch.load(out / "ckpt.pt", weights_only=True)["step"] == 3


def test_should_stop_ends_the_run_after_its_step_and_saves(tmp_path, clean_store):
    """A caller's stop request (the experiment runner's) stops like a first Ctrl-C, however often it is asked."""
    asked = []

    def should_stop() -> bool:
        asked.append(True)
        return len(asked) >= 4

    out = tmp_path / "stopped"
    result = train(tiny_config(clean_store, obs_mode="state", steps=50), out, progress=False, should_stop=should_stop)
    assert result.interrupted and result.step == 4 and len(asked) == 4
    assert torch.load(out / "ckpt.pt", weights_only=True)["step"] == 4


def test_training_curves_plot_from_metrics(image_run, tmp_path, capsys):
    from policies.plot import main as plot_main, read_metrics

    _, out, _ = image_run
    records = read_metrics(out)
    assert [r["step"] for r in records] == list(range(5, STEPS + 1, 5))
    resumed = tmp_path / "metrics.jsonl"  # a resumed run repeats steps: the later record wins
    lines = (out / "metrics.jsonl").read_text().splitlines()
    resumed.write_text("\n".join(lines + [json.dumps({**json.loads(lines[-1]), "loss": 123.0})]) + "\n")
    assert read_metrics(resumed)[-1]["loss"] == 123.0 and len(read_metrics(resumed)) == len(records)

    png = tmp_path / "curves.png"
    assert plot_main([str(out), str(resumed), "--out", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 20_000
    assert f"step {STEPS}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_code:
        plot_main([str(tmp_path / "no_run")])
    err = capsys.readouterr().err
    assert exit_code.value.code == 2 and err.count("\n") == 1 and "no metrics.jsonl" in err


def test_an_exported_policy_is_the_ema_weights_alone_and_acts_the_same(image_run, tmp_path, capsys):
    from policies.export import main as export_main

    _, out, _ = image_run
    export = tmp_path / "shared"
    assert export_main([str(out), "--out", str(export)]) == 0
    assert sorted(p.name for p in export.iterdir()) == ["model.safetensors", "policy.json"]
    assert (export / "model.safetensors").stat().st_size < 0.4 * (out / "ckpt.pt").stat().st_size
    obs = {"pixels": {"overhead": np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)},
           "agent_pos": np.array([0.55, 0.0], np.float32)}
    actions = []
    for source in (out, export):
        policy = load_policy(source, device="cpu")
        policy.reset(seed=3)
        actions.append(np.stack([policy.act(obs) for _ in range(3)]))
    np.testing.assert_array_equal(actions[0], actions[1])
    with pytest.raises(PolicyError, match="only the EMA weights"):
        load_policy(export, weights="raw")

    with pytest.raises(SystemExit) as exit_code:  # never over an existing directory
        export_main([str(out), "--out", str(export)])
    assert exit_code.value.code == 2 and "exists" in capsys.readouterr().err
    (export / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(PolicyError, match="damaged or not an exported policy"):
        load_policy(export)


def shapes(model: DiffusionModel) -> dict[str, tuple[int, ...]]:
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def test_a_recorded_run_config_trains_again_exactly_from_the_command_line(tmp_path, clean_store, corrupt_store, capsys, monkeypatch):
    """An arm's config.json as the runner has train() record it, with fields no flag sets (or none at its
    default): --config alone trains a run with the same config, model and losses, from another directory
    (the stores named relative to the recorded run's directory)."""
    source = tmp_path / "arms" / "ambient" / "train"
    source.mkdir(parents=True)
    recorded = RunConfig(
        policy=PolicyConfig(preset="tiny", obs_mode="state", state_angle="cos_sin", down_dims=(16, 24, 32), kernel_size=3,
                            diffusion_step_embed_dim=24, num_inference_steps=5),
        training=TrainingConfig(method="ambient", alpha_schedule=(0.2, 0.8), sigma_min=0.3, corrupt_loss="ambient", contraction=False,
                                lr=2e-3, betas=(0.9, 0.99), weight_decay=0.0, warmup_steps=1, batch_size=8, steps=3, seed=5,
                                device="cpu", log_every=1),
        data=DataConfig(clean=(os.path.relpath(clean_store, source),), corrupt=(os.path.relpath(corrupt_store, source),),
                        action_normalizer="clean"),
    )  # fmt: skip
    monkeypatch.chdir(source)
    train(recorded, source, progress=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    code, err = run_cli(["--config", str(source / "config.json"), "--out", "again"], capsys)

    assert code == 0, err
    again = RunConfig.load(elsewhere / "again" / "config.json")
    assert again.policy == recorded.policy and again.training == recorded.training
    assert again.data.action_normalizer == "clean"
    assert [os.path.samefile(a, source / b) for a, b in zip(again.data.clean + again.data.corrupt, recorded.data.clean + recorded.data.corrupt)] == [True, True]
    losses = [[json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()] for run in (source, elsewhere / "again")]
    assert len(losses[0]) == 3 and losses[0] == losses[1]
    models = [model_from_checkpoint(load_checkpoint(run), "model") for run in (source, elsewhere / "again")]
    for name, tensor in models[0].state_dict().items():
        torch.testing.assert_close(models[1].state_dict()[name], tensor, rtol=0, atol=0)
    # down_dims and state_angle reached the model: its weights have their shapes, not the preset's or the raw angle's
    action_dim = int(load_checkpoint(source)["action_dim"])
    assert shapes(models[1]) == shapes(DiffusionModel(recorded.policy, {}, action_dim))
    for other in ({"down_dims": (32, 64)}, {"state_angle": "raw"}):
        assert shapes(models[1]) != shapes(DiffusionModel(recorded.policy.model_copy(update=other), {}, action_dim)), other


def test_flags_beside_config_replace_their_fields_only(tmp_path, clean_store, corrupt_store):
    recorded = tiny_config(clean_store, [corrupt_store], obs_mode="state", method="ambient", sigma_min=0.3, steps=7)
    recorded = recorded.model_copy(update={"policy": recorded.policy.model_copy(update={"down_dims": (16, 32), "state_angle": "cos_sin"})})
    recorded.save(tmp_path / "config.yaml")
    (tmp_path / "recorded").mkdir()
    recorded.save(tmp_path / "recorded" / "config.json")
    base = ["--config", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "run")]
    assert config_from_args(parse_args(base)) == recorded
    assert config_from_args(parse_args(["--config", str(tmp_path / "recorded"), "--out", "r"])) == recorded  # a run directory
    changed = config_from_args(parse_args([*base, "--epochs", "2", "--sigma-min-from", "classifier", "--seed", "3"]))
    assert changed.training == recorded.training.model_copy(update={"steps": None, "epochs": 2, "sigma_min": None,
                                                                    "sigma_min_from": "classifier", "seed": 3})  # fmt: skip
    assert changed.policy == recorded.policy and changed.data == recorded.data
    sized = config_from_args(parse_args([*base, "--down-dims", "8", "16", "--state-angle", "raw"])).policy
    assert sized == recorded.policy.model_copy(update={"down_dims": (8, 16), "state_angle": "raw"})
    assert config_from_args(parse_args([*base, "--preset", "default"])).policy == PolicyConfig(preset="default", obs_mode="state",
                                                                                               state_angle="cos_sin")
    # Without --config the two new flags set the model too.
    flags = ["--clean", str(clean_store), "--method", "clean", "--steps", "2", "--out", "r", "--preset", "tiny", "--obs", "state"]
    policy = config_from_args(parse_args([*flags, "--down-dims", "16", "32", "--state-angle", "cos_sin"])).policy
    assert policy.down_dims == (16, 32) and policy.state_angle == "cos_sin"
