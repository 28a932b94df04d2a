"""eval.compare names each evaluation for what was evaluated: the run, or the experiment's arm and domain."""

from __future__ import annotations

import json
from pathlib import Path

from eval.compare import bar_figure, load_results, main


def write_results(directory, rate: float) -> None:
    directory.mkdir(parents=True)
    (directory / "results.json").write_text(json.dumps({"success_rate": rate, "ci95": [rate / 2, (1 + rate) / 2], "trials": 10}))


def test_bars_and_rows_carry_the_run_names_not_the_folder_eval(tmp_path, capsys, monkeypatch):
    write_results(tmp_path / "runs" / "clean_seed0" / "eval", 0.4)  # eval.rollout's default beside a checkpoint
    write_results(tmp_path / "runs" / "ambient" / "eval", 0.6)
    write_results(tmp_path / "exp" / "arms" / "cotrain" / "eval_target", 0.5)  # an experiment's arm
    write_results(tmp_path / "eval_runs" / "gcs", 0.9)  # eval.rollout --policy gcs
    given = [tmp_path / "runs" / "clean_seed0" / "eval", tmp_path / "runs" / "ambient" / "eval" / "results.json",
             tmp_path / "exp" / "arms" / "cotrain" / "eval_target", tmp_path / "eval_runs" / "gcs"]
    names = ["clean_seed0", "ambient", "cotrain (target)", "gcs"]
    rows = [load_results(path) for path in given]
    assert [r["name"] for r in rows] == names
    figure = bar_figure(rows)
    assert [label.get_text() for label in figure.axes[0].get_xticklabels()] == names

    monkeypatch.chdir(tmp_path / "runs" / "clean_seed0")  # "eval" given from inside its run
    assert load_results(Path("eval"))["name"] == "clean_seed0"
    assert main(["eval", str(given[1]), "--out", str(tmp_path / "c.png")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in table[1:3]] == ["clean_seed0", "ambient"]
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
