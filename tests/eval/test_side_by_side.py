"""eval.side_by_side pairs each image arm with the state arm of the same name on the shared starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.side_by_side import SideBySideError, load_report, main, side_by_side

STATE_RUN = Path(__file__).resolve().parents[2] / "docs" / "results" / "cpu" / "run" / "results.json"


def row(arm, successes, starts, eval_seed, *, domain="target", role="cotrain", replicate=False, trials=200):
    return {"arm": arm, "domain": domain, "role": role, "successes": sum(successes), "trials": trials,
            "ci95": [0.0, 1.0], "success_by_trial": successes, "starts": starts, "eval_seed": eval_seed,
            "training_seed": 1 if replicate else 0, "replicate": replicate}  # fmt: skip


@pytest.fixture
def state():
    return load_report(STATE_RUN)  # the committed CPU run: old format, no starts column


def image_report(tmp_path, state, flips=10):
    """An image run whose cotrain_a0.25 succeeds on the state arm's trials plus ``flips`` of its failures."""
    by_arm = {r["arm"]: r for r in state["arms"] if r["domain"] == "target"}
    cotrain = list(by_arm["cotrain_a0.25"]["success_by_trial"])
    failures = [i for i, s in enumerate(cotrain) if not s]
    for i in failures[:flips]:
        cotrain[i] = True
    report = {
        "config": {"seed": 0, "evaluation": {"heldout_seed": 1}},
        "arms": [row("cotrain_a0.25", cotrain, "tuning", 0), row("cotrain_a0.25", [True] * 150 + [False] * 50, "heldout", 1),
                 row("cotrain_a0.25_seed1", [True] * 100 + [False] * 100, "heldout", 1, replicate=True),
                 row("sim_only", [False] * 200, "tuning", 0, domain="sim", role="sim_only"),
                 row("newarm", [True] * 200, "tuning", 0)],
        "seeds": [{"arm": "cotrain_a0.25", "training_seeds": [0, 1], "success_rates": [0.75, 0.5], "mean": 0.625, "sd": 0.18}],
    }  # fmt: skip
    path = tmp_path / "image" / "results.json"
    path.parent.mkdir()
    path.write_text(json.dumps(report))
    return path


def test_the_paired_difference_is_the_image_arms_extra_successes_on_the_same_starts(tmp_path, state):
    table = side_by_side(state, load_report(image_report(tmp_path, state, flips=10)))
    rows = {(r["arm"], r["domain"]): r for r in table["arms"]}
    assert list(rows) == [("cotrain_a0.25", "target"), ("sim_only", "sim"), ("newarm", "target")]  # replicates are not rows
    cotrain = rows[("cotrain_a0.25", "target")]
    assert cotrain["state"]["successes"] == 112  # the committed run's 56.0%
    assert cotrain["image"]["successes"] == 122
    paired = cotrain["image_minus_state"]
    assert paired["difference"] == pytest.approx(10 / 200)
    assert (paired["only_arm"], paired["only_reference"]) == (10, 0)
    assert paired["mcnemar_p"] == pytest.approx(2 * 0.5**10)  # 10 discordant trials, all one way
    assert cotrain["image_heldout"]["successes"] == 150
    assert cotrain["image_heldout_over_seeds"]["mean"] == 0.625
    sim = rows[("sim_only", "sim")]
    assert sim["state"]["successes"] == 119 and sim["image_minus_state"]["difference"] == pytest.approx(-119 / 200)
    assert rows[("newarm", "target")]["state"] is None and rows[("newarm", "target")]["image_minus_state"] is None
    assert "gcs_expert" in table["state_only"] and "cotrain_a0.25" not in table["state_only"]


def test_the_cli_writes_the_table_and_refuses_what_it_cannot_pair(tmp_path, state, capsys):
    image = image_report(tmp_path, state, flips=4)
    out = tmp_path / "sbs"
    assert main(["--state", str(STATE_RUN), "--image", str(image.parent), "--out", str(out)]) == 0
    text = (out / "side_by_side.md").read_text()
    line = next(x for x in text.splitlines() if x.startswith("| cotrain_a0.25 |"))
    assert "112/200 (56.0%)" in line and "116/200 (58.0%)" in line and "+2.0 [" in line and "62.5% (sd 18.0, 2 seeds)" in line
    assert json.loads((out / "side_by_side.json").read_text())["tuning_seed"] == 0
    assert (out / "side_by_side.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()

    report = json.loads(image.read_text())
    report["config"]["seed"] = 3  # other tuning starts: nothing is paired
    image.write_text(json.dumps(report))
    assert main(["--state", str(STATE_RUN), "--image", str(image), "--out", str(tmp_path / "x")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: the runs' tuning starts differ") and "\n" not in error
    assert not (tmp_path / "x").exists()

    report["config"]["seed"] = 0
    first = report["arms"][0]
    first["success_by_trial"] = first["success_by_trial"][:50]  # 50 image trials against 200 state trials
    first["trials"], first["successes"] = 50, sum(first["success_by_trial"])
    image.write_text(json.dumps(report))
    with pytest.raises(SideBySideError, match="cannot be paired"):
        side_by_side(state, load_report(image))

    first.update({key: report["arms"][1][key] for key in ("success_by_trial", "trials", "successes")})
    report["config"]["evaluation"]["max_steps"] = 300  # shorter episodes: the same starts, other trials
    image.write_text(json.dumps(report))
    with pytest.raises(SideBySideError, match=r"not alike \(max_steps None vs 300\)"):
        side_by_side(state, load_report(image))

    for bad in ('{"arms": 3}', '{"arms": [{"arm": "a", "domain": "target", "successes": 0, "trials": 0, "success_by_trial": []}]}',
                '{"config": [], "arms": []}', '{"arms": [], "seeds": [{"arm": "a"}]}'):
        (tmp_path / "bad.json").write_text(bad)
        assert main(["--state", str(tmp_path / "bad.json"), "--image", str(image)]) == 2
        error = capsys.readouterr().err.strip()
        assert "not an experiment's results.json" in error and "\n" not in error
    assert main(["--state", str(tmp_path / "missing.json"), "--image", str(image)]) == 2
    assert "no such results file" in capsys.readouterr().err
