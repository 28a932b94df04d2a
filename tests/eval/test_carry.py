"""eval.carry: a run's record, not its data, checkpoints or videos, replaces the destination whole.

That the carried record resumes a real run is tested in test_experiment (the carried-run test).
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from data_gen.episode_store import META_COLUMNS, EpisodeMeta, EpisodeStore
from eval.carry import carry, main, record_files
from eval.experiment_data import store_digest


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def make_run(root: Path) -> Path:
    """A run directory with the layout eval.experiment writes (file contents do not matter to carry)."""
    files = {
        "ledger.json": json.dumps({"data/clean": {"done": True}}),
        "experiment.yaml": "name: x\n",
        "experiment.lock": "",
        "results.md": "| arm |\n",
        "results.png": "png",
        "data/clean.zarr/zarr.json": "{}",
        "data/clean.zarr/data/action/c/0": "bytes",
        "arms/clean/train/config.json": "{}",
        "arms/clean/train/metrics.jsonl": "{}\n",
        "arms/clean/train/ckpt.pt": "weights",
        "arms/clean/eval_target/results.json": "{}",
        "arms/clean/eval_target/trials.jsonl": "{}\n",
        "arms/clean/eval_target/videos/trial_000.mp4": "video",
        "arms/clean/eval_target/videos/trial_000.json": "{}",
    }
    return write(root, files)


RECORD = {
    "ledger.json", "experiment.yaml", "results.md", "results.png", "arms/clean/train/config.json",
    "arms/clean/train/metrics.jsonl", "arms/clean/eval_target/results.json", "arms/clean/eval_target/trials.jsonl",
}  # fmt: skip


def test_the_record_leaves_data_checkpoints_videos_and_the_lock_behind(tmp_path):
    run = make_run(tmp_path / "run")
    assert {str(f) for f in record_files(run)} == RECORD
    written = carry(run, tmp_path / "dest")
    assert {str(f) for f in written} == RECORD
    assert {str(p.relative_to(tmp_path / "dest")) for p in (tmp_path / "dest").rglob("*") if p.is_file()} == RECORD
    assert (tmp_path / "dest" / "ledger.json").read_text() == (run / "ledger.json").read_text()


def test_carrying_again_replaces_the_old_record_whole(tmp_path):
    run = make_run(tmp_path / "run")
    dest = tmp_path / "dest"
    carry(run, dest)
    (dest / "arms" / "gone" / "train").mkdir(parents=True)
    (dest / "arms" / "gone" / "train" / "metrics.jsonl").write_text("stale\n")
    (run / "ledger.json").write_text('{"newer": true}')
    carry(run, dest)
    assert not (dest / "arms" / "gone").exists()
    assert json.loads((dest / "ledger.json").read_text()) == {"newer": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "run"]  # no staging or old copy left


def test_a_carry_stopped_between_its_renames_is_put_back_by_the_next(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run")
    dest = tmp_path / "dest"
    carry(run, dest)
    before = {p.relative_to(dest): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    renames = []
    real_rename = Path.rename

    def die_on_second_rename(self, target):
        renames.append(self)
        if len(renames) == 2:  # the old record is aside, the new one not yet in place: as if killed here
            raise KeyboardInterrupt
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", die_on_second_rename)
    with pytest.raises(KeyboardInterrupt):
        carry(run, dest)
    monkeypatch.undo()
    assert {p.relative_to(dest): p.read_bytes() for p in dest.rglob("*") if p.is_file()} == before  # put back at once
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "run"]

    # killed for real between the renames (no cleanup ran): the next carry restores, then replaces
    aside = tmp_path / ".dest.old-x"
    aside.mkdir()
    real_rename(dest, aside / "record")
    (tmp_path / ".dest.carrying-y").mkdir()
    (run / "ledger.json").write_text('{"newer": true}')
    carry(run, dest)
    assert json.loads((dest / "ledger.json").read_text()) == {"newer": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "run"]


def test_only_the_runner_s_own_data_and_video_folders_are_left_behind(tmp_path):
    run = make_run(tmp_path / "run")
    for name in ("arms/data/train/metrics.jsonl", "arms/videos/eval_target/results.json", "arms/x.zarr/train/config.json"):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text("{}")
    assert {str(f) for f in record_files(run)} == RECORD | {
        "arms/data/train/metrics.jsonl", "arms/videos/eval_target/results.json", "arms/x.zarr/train/config.json"}


def test_a_linked_file_or_folder_of_the_run_is_carried_by_content(tmp_path):
    run = make_run(tmp_path / "run")
    elsewhere = tmp_path / "bigdisk"
    (elsewhere / "arm").mkdir(parents=True)
    (elsewhere / "arm" / "metrics.jsonl").write_text('{"step": 1}\n')
    (run / "arms" / "linked").mkdir()
    (run / "arms" / "linked" / "train").symlink_to(elsewhere / "arm")
    carry(run, tmp_path / "dest")
    carried = tmp_path / "dest" / "arms" / "linked" / "train" / "metrics.jsonl"
    assert carried.read_text() == '{"step": 1}\n' and not carried.is_symlink()


def test_a_live_run_directory_is_never_replaced(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    other = make_run(tmp_path / "other")  # e.g. the two paths given the wrong way round
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit):
        main([str(run), str(other)])
    assert "not only a carried record" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_folder_of_the_user_s_beside_the_destination_is_never_touched(tmp_path):
    run = make_run(tmp_path / "run")
    mine = tmp_path / "dest.old"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    carry(run, tmp_path / "dest")
    carry(run, tmp_path / "dest")
    assert (mine / "keep.txt").read_text() == "mine"


def test_a_carry_that_fails_midway_leaves_the_old_record_intact(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run")
    dest = tmp_path / "dest"
    carry(run, dest)
    before = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    (run / "ledger.json").write_text('{"newer": true}')
    calls = []

    def copy_then_fail(source, target):
        calls.append(source)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        Path(target).write_bytes(Path(source).read_bytes())

    monkeypatch.setattr("eval.carry.shutil.copy2", copy_then_fail)
    with pytest.raises(OSError):
        carry(run, dest)
    assert {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()} == before
    monkeypatch.undo()
    carry(run, dest)  # the staging left by the failure is cleared
    assert json.loads((dest / "ledger.json").read_text()) == {"newer": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "run"]


def snapshot(root: Path) -> dict:
    """Every path under root (folders too), with the bytes of each file."""
    return {p: (p.read_bytes() if p.is_file() else None) for p in root.rglob("*")}


@pytest.mark.parametrize(
    "source, dest, setup, message",
    [
        ("missing", "dest", lambda t: None, "no such directory"),
        ("notrun", "dest", lambda t: (t / "notrun").mkdir(), "not an experiment run directory"),
        ("run", "dest", lambda t: write(t / "dest", {"mine.txt": "keep"}), "refusing to replace it"),
        ("run", "dest", lambda t: write(t / "dest", {"ledger.json": "{}", "arms/a/train/ckpt.pt": "w"}), "ckpt.pt"),  # a live run
        ("run", "dest", lambda t: write(t / "dest", {"ledger.json": "{}", "experiment.lock": ""}), "experiment.lock"),
        ("run", "dest", lambda t: (t / "dest").write_text("a file"), "is not a directory"),
        ("run", "new/deeper/dest", lambda t: None, "No such file"),
    ],
)
def test_bad_input_is_a_one_line_error_and_touches_nothing(tmp_path, capsys, monkeypatch, source, dest, setup, message):
    make_run(tmp_path / "run")
    setup(tmp_path)
    if dest.startswith("new/"):  # the copy fails after the destination's parents were made: they go again
        monkeypatch.setattr("eval.carry.shutil.copy2", lambda *a: (_ for _ in ()).throw(FileNotFoundError(2, "No such file or directory")))
    before = snapshot(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / source), str(tmp_path / dest)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("python -m eval.carry: error:") and message in err
    assert snapshot(tmp_path) == before


def test_the_destination_may_not_lie_inside_the_run_or_hold_it(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    for dest in (run / "carried", tmp_path, run):
        with pytest.raises(SystemExit):
            main([str(run), str(dest)])
        assert "must lie outside" in capsys.readouterr().err
    assert not (run / "carried").exists()


def test_the_command_line_reports_what_it_carried(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    assert main([str(run), str(tmp_path / "dest")]) == 0
    assert f"carried {len(RECORD)} files" in capsys.readouterr().out


def make_store(path: Path, episodes: int = 3) -> Path:
    """A real episode store with one camera and an annotation set, as the generator and classifier leave it."""
    rng = np.random.default_rng(0)
    with EpisodeStore.create(path, cameras={"overhead": (8, 8)}, domain_config={"name": "sim"}, run={"seed": 2}) as store:
        for index in range(episodes):
            steps = 5 + index
            store.append_episode(
                {"action": rng.normal(size=(steps, 2)), "agent_pos": rng.normal(size=(steps, 2)),
                 "slider_pose": rng.normal(size=(steps, 3)), "overhead": rng.integers(0, 255, (steps, 8, 8, 3), np.uint8)},
                EpisodeMeta(source="gcs", domain="sim", seed=index, initial_pose=(0.1, 0.2, index), success=index != 1,
                            planning_time=0.5, plan_cost=2.0 + index, extra={"attempt": index}),
            )  # fmt: skip
        store.write_annotation("cls", rng.uniform(size=store.n_steps), attrs={"by": "test"})
    return path


def test_states_carries_the_stores_without_images_and_the_same_data(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    (run / "data" / "clean.zarr").rename(tmp_path / "fake.zarr")  # make_run's stand-in, not a store
    make_store(run / "data" / "corrupt.zarr")
    assert main([str(run), str(tmp_path / "dest"), "--states"]) == 0
    assert "and corrupt.zarr without images" in capsys.readouterr().out
    original, copied = run / "data" / "corrupt.zarr", tmp_path / "dest" / "data" / "corrupt.zarr"
    assert store_digest(copied) == store_digest(original)  # what the runner checks against its ledger
    with EpisodeStore.open(original) as a, EpisodeStore.open(copied) as b:
        assert b.cameras == () and a.cameras == ("overhead",)
        assert b.step_keys == ("action", "agent_pos", "slider_pose")
        assert np.array_equal(a.episode_ends, b.episode_ends)
        for key in b.step_keys:
            assert np.array_equal(a.array(key), b.array(key))
        for name in META_COLUMNS:
            assert np.array_equal(a.meta_column(name), b.meta_column(name))
        assert (a.domain_config, a.run, a.action_dim) == (b.domain_config, b.run, b.action_dim)
        assert b.annotation_names == ("cls",)
        assert np.array_equal(a.annotation("cls").sigma_min, b.annotation("cls").sigma_min)
        assert b.annotation("cls").attrs["by"] == "test"
    assert sum(p.stat().st_size for p in copied.rglob("*")) < sum(p.stat().st_size for p in original.rglob("*"))

    assert main([str(run), str(tmp_path / "dest"), "--states"]) == 0  # carried stores are replaced like the record
    assert main([str(run), str(tmp_path / "dest")]) == 0  # without --states: the stores go
    assert not (tmp_path / "dest" / "data").exists()


def test_a_store_with_images_at_the_destination_is_never_replaced(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    dest = make_run(tmp_path / "dest")  # a run's data, not a carried copy
    for name in ("experiment.lock", "arms/clean/train/ckpt.pt", "arms/clean/eval_target/videos/trial_000.mp4"):
        (dest / name).unlink()
    for path in (dest / "data").iterdir():
        shutil.rmtree(path)
    make_store(dest / "data" / "corrupt.zarr")
    with pytest.raises(SystemExit):
        main([str(run), str(dest), "--states"])
    assert "not only a carried record" in capsys.readouterr().err and (dest / "data" / "corrupt.zarr" / "data" / "overhead").is_dir()


def test_states_from_a_damaged_store_is_one_line_and_keeps_the_old_record(tmp_path, capsys):
    run = make_run(tmp_path / "run")  # its data/clean.zarr is no store
    carry(run, tmp_path / "dest")
    before = snapshot(tmp_path / "dest")
    with pytest.raises(SystemExit):
        main([str(run), str(tmp_path / "dest"), "--states"])
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "clean.zarr" in err
    assert snapshot(tmp_path / "dest") == before and sorted(p.name for p in tmp_path.iterdir()) == ["dest", "run"]
