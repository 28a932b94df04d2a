"""Tests for data_gen.interop_video: a LeRobot export's videos in standard H.264 (lossy) beside the lossless default."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
from pathlib import Path

import imageio.v2 as iio
import imageio_ffmpeg
import numpy as np
import pytest

from data_gen.episode_store import EpisodeMeta, EpisodeStore
from data_gen.interop import export_store, import_dataset

pytest.importorskip("pyarrow")
export_cli = importlib.import_module("data_gen.export")
VIDEO = "videos/observation.images.{camera}/chunk-000/file-000.mp4"


def smooth_store(path: Path, size: tuple[int, int] = (32, 48), lengths=(6, 9)) -> Path:
    """Moving colour gradients: what a camera sees (noise would be the worst case for a lossy codec)."""
    height, width = size
    rows, cols = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(9)
    with EpisodeStore.create(path, cameras={"top": size}, domain_config={}, run={}) as store:
        for index, length in enumerate(lengths):
            frames = np.stack([np.stack([(rows * 4 + t * 3) % 256, (cols * 4 + t * 5) % 256,
                                         np.full_like(rows, 60 * index + 40)], axis=-1) for t in range(length)])
            store.append_episode({"action": rng.normal(size=(length, 2)), "agent_pos": rng.normal(size=(length, 2)),
                                  "slider_pose": rng.normal(size=(length, 3)), "top": frames.astype(np.uint8)},
                                 EpisodeMeta(source="gcs", domain="sim", seed=index, initial_pose=(0, 0, 0), success=True))
    return path


def key_frames(video: Path) -> list[bool]:
    """Whether each frame of the video is a keyframe, from ffmpeg's showinfo filter."""
    done = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(video), "-vf", "showinfo", "-f", "null", "-"],
                          capture_output=True, text=True, timeout=60)
    return [flag == "1" for flag in re.findall(r"iskey:(\d)", done.stderr)]


def test_h264_videos_are_standard_smaller_and_close(tmp_path):
    source = smooth_store(tmp_path / "smooth.zarr")
    export_store(source, tmp_path / "lossless", "lerobot")
    export_store(source, tmp_path / "h264", "lerobot", video_codec="h264")
    video = tmp_path / "h264" / VIDEO.format(camera="top")

    reader = iio.get_reader(video, format="FFMPEG")
    meta = reader.get_meta_data()
    reader.close()
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")
    for codec in ("h264", "lossless"):  # a keyframe at least every 2 frames, as LeRobot encodes: a random read decodes 1 or 2
        flags = key_frames(tmp_path / codec / VIDEO.format(camera="top"))
        assert len(flags) == 15 and all(flags[::2]), (codec, flags)
    assert not all(key_frames(video))  # h264 codes the frames between as P-frames
    info = json.loads((tmp_path / "h264/meta/info.json").read_text())
    assert info["features"]["observation.images.top"]["info"]["video.pix_fmt"] == "yuv420p"
    sidecar = json.loads((tmp_path / "h264/meta/ambient_push.json").read_text())
    assert sidecar["video"]["codec"] == "libx264" and sidecar["video"]["lossless"] is False
    assert video.stat().st_size < (tmp_path / "lossless" / VIDEO.format(camera="top")).stat().st_size

    import_dataset(tmp_path / "h264", tmp_path / "back.zarr", "lerobot")
    store, back = EpisodeStore.open(source), EpisodeStore.open(tmp_path / "back.zarr")
    error = np.abs(back.array("top").astype(int) - store.array("top").astype(int))
    assert 0 < error.mean() < 4, error.mean()  # lossy, by a few levels
    for key in ("action", "agent_pos", "slider_pose"):
        assert back.array(key).tobytes() == store.array(key).tobytes(), key


def test_h264_refuses_odd_sizes_in_one_line(tmp_path, capsys):
    source = smooth_store(tmp_path / "odd.zarr", size=(15, 16), lengths=(3,))
    with pytest.raises(SystemExit) as exit_info:
        export_cli.main([str(source), "--format", "lerobot", "--out", str(tmp_path / "out"), "--video-codec", "h264"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "15x16" in err and "even" in err, err
    assert not (tmp_path / "out").exists()
