"""keep_checkpoints: the snapshots a learning curve evaluates are the run's own checkpoints of those steps."""

import torch

from policies.checkpoint import load_checkpoint
from policies.config import DataConfig, PolicyConfig, RunConfig, TrainingConfig
from policies.train import main, train


def config(store, steps: int, keep: tuple[int, ...]) -> RunConfig:
    return RunConfig(
        policy=PolicyConfig(preset="tiny", obs_mode="state"),
        training=TrainingConfig(method="clean", steps=steps, batch_size=8, lr=1e-3, warmup_steps=2, device="cpu",
                                checkpoint_every=4, keep_checkpoints=keep, log_every=2),
        data=DataConfig(clean=(str(store),)),
    )  # fmt: skip


def test_kept_snapshots_are_the_checkpoints_of_their_steps_and_a_resume_adds_more(tmp_path, clean_store):
    out = tmp_path / "run"
    train(config(clean_store, 6, (3, 6)), out, progress=False)
    # 3 is not a multiple of checkpoint_every (4): it is saved for the snapshot; 4 is saved and not kept.
    assert sorted(p.name for p in out.glob("ckpt*.pt")) == ["ckpt.pt", "ckpt_3.pt", "ckpt_6.pt"]
    three, six, last = (load_checkpoint(out / name) for name in ("ckpt_3.pt", "ckpt_6.pt", "ckpt.pt"))
    assert (three["step"], six["step"], last["step"]) == (3, 6, 6)
    assert all(torch.equal(a, b) for a, b in zip(six["ema_model"].values(), last["ema_model"].values()))
    assert not all(torch.equal(a, b) for a, b in zip(three["ema_model"].values(), six["ema_model"].values()))

    # A resume may ask for more steps and more snapshots; the kept ones stay as they were.
    before = (out / "ckpt_6.pt").read_bytes()
    train(config(clean_store, 9, (3, 6, 8)), out, progress=False)
    assert sorted(p.name for p in out.glob("ckpt*.pt")) == ["ckpt.pt", "ckpt_3.pt", "ckpt_6.pt", "ckpt_8.pt"]
    assert load_checkpoint(out / "ckpt_8.pt")["step"] == 8 and load_checkpoint(out / "ckpt.pt")["step"] == 9
    assert (out / "ckpt_6.pt").read_bytes() == before


def test_the_command_line_keeps_snapshots(tmp_path, clean_store, capsys):
    out = tmp_path / "cli"
    code = main(["--clean", str(clean_store), "--method", "clean", "--obs", "state", "--preset", "tiny", "--steps", "4",
                 "--batch-size", "8", "--device", "cpu", "--keep-checkpoints", "2,4", "--out", str(out)])  # fmt: skip
    assert code == 0 and load_checkpoint(out / "ckpt_2.pt")["step"] == 2 and load_checkpoint(out / "ckpt_4.pt")["step"] == 4
    assert '"keep_checkpoints": [\n      2,\n      4\n    ]' in (out / "config.json").read_text()
