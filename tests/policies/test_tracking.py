"""--wandb: a real offline wandb run receives exactly metrics.jsonl's records, and resuming continues it."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest

from policies.train import main

pytest.importorskip("wandb", reason="the wandb extra is not installed")
from wandb.proto import wandb_internal_pb2  # noqa: E402

TRAIN = ["--method", "clean", "--obs", "state", "--preset", "tiny", "--device", "cpu", "--batch-size", "8"]
BLOCK, HEADER = 32768, 7  # the leveldb log layout of a .wandb file: 32 KiB blocks, 7-byte record headers


def wandb_records(path: Path) -> list:
    """The protobuf records of an offline .wandb file (what ``wandb sync`` uploads)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a wandb datastore"
    records, pending, offset = [], b"", 7
    while offset + HEADER <= len(data):
        if BLOCK - offset % BLOCK < HEADER:  # a block's tail too short for a header is padding
            offset += BLOCK - offset % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[offset:offset + HEADER])
        if kind == 0 and length == 0:
            break
        pending += data[offset + HEADER:offset + HEADER + length]
        offset += HEADER + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def history(run_dir: Path) -> list[dict]:
    rows = []
    for path in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        for record in wandb_records(path):
            if record.WhichOneof("record_type") == "history":
                rows.append({(item.key or "/".join(item.nested_key)): json.loads(item.value_json) for item in record.history.item})
    return rows


def test_wandb_offline_receives_the_metrics_records_and_a_resume_continues_the_same_run(tmp_path, clean_store, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    out = tmp_path / "run"
    assert main(["--clean", str(clean_store), *TRAIN, "--steps", "20", "--out", str(out), "--wandb"]) == 0
    assert main(["--clean", str(clean_store), *TRAIN, "--steps", "40", "--out", str(out), "--wandb"]) == 0

    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logged = sorted(history(out), key=lambda row: row["_step"])
    assert [row["_step"] for row in logged] == [m["step"] for m in metrics] == [10, 20, 30, 40]
    for row, record in zip(logged, metrics):
        for key in ("train/loss", "train/lr", "train/grad_norm", "loss", "samples_per_s", "clean_fraction"):
            assert row[key] == pytest.approx(record[key], rel=1e-12), key
    runs = {path.name.rsplit("-", 1)[1] for path in (out / "wandb").glob("offline-run-*")}
    assert len(runs) == 1, f"the resumed training started another wandb run: {runs}"


def test_wandb_missing_is_one_line_before_anything_is_created(tmp_path, clean_store, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb now raises ImportError
    out = tmp_path / "run"
    assert main(["--clean", str(clean_store), *TRAIN, "--steps", "2", "--out", str(out), "--wandb"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "pip install -e '.[wandb]'" in error
    assert not out.exists()
