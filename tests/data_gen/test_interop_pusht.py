"""Tests for data_gen.interop_pusht and the import of Diffusion Policy's push-T: pixels to our metres.

push-T's T is written here as gym-pusht writes it (``add_tee``: two boxes, vertices rotated by the
body angle and added to the body position, as its ``get_keypoints`` does), independently of the module.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from data_gen.episode_store import EpisodeStore
from data_gen.interop_pusht import METRES_PER_PIXEL, points_to_metres, pose_to_metres
from pushing_sim import geometry
from pushing_sim.task import TaskConfig

REPO_ROOT = Path(__file__).resolve().parents[2]

SCALE, LENGTH = 30, 4  # gym-pusht's add_tee defaults
PUSH_T_BOXES = [
    [(-LENGTH * SCALE / 2, SCALE), (LENGTH * SCALE / 2, SCALE), (LENGTH * SCALE / 2, 0), (-LENGTH * SCALE / 2, 0)],
    [(-SCALE / 2, SCALE), (-SCALE / 2, LENGTH * SCALE), (SCALE / 2, LENGTH * SCALE), (SCALE / 2, SCALE)],
]
PUSH_T_GOAL = (256, 256, np.pi / 4)


def push_t_corners(pose) -> np.ndarray:
    """gym-pusht's keypoints: each box's vertices rotated by the angle, plus the body position (pixels)."""
    x, y, angle = pose
    c, s = np.cos(angle), np.sin(angle)
    return np.array([(c * vx - s * vy + x, s * vx + c * vy + y) for box in PUSH_T_BOXES for vx, vy in box])


def test_push_t_goal_lands_on_our_goal():
    np.testing.assert_allclose(pose_to_metres(np.array(PUSH_T_GOAL)), TaskConfig().goal_pose, atol=1e-12)


def test_push_t_t_lands_on_our_t_at_every_pose():
    """Each corner of push-T's T, mapped as a point, is within 0.6 mm of a corner of our T at the mapped pose."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        pose = np.array([*rng.uniform(0, 512, 2), rng.uniform(0, 2 * np.pi)])
        mapped = points_to_metres(push_t_corners(pose))
        ours = np.concatenate([geometry.to_world(box.corners(), pose_to_metres(pose)) for box in geometry.T_BOXES])
        distances = np.linalg.norm(mapped[:, None] - ours[None], axis=-1).min(axis=1)
        assert distances.max() < 0.6e-3, (pose, distances.max())
    # A similarity: lengths scale by one factor, the one that makes the T 0.1651 m wide.
    a, b = np.array([10.0, 20.0]), np.array([400.0, 90.0])
    assert np.linalg.norm(points_to_metres(a) - points_to_metres(b)) == pytest.approx(np.linalg.norm(a - b) * 0.1651 / 120)
    assert METRES_PER_PIXEL == pytest.approx(0.1651 / 120)


def push_t_zarr(path, rng) -> dict[str, np.ndarray]:
    """A small DP push-T replay buffer: float images, 5-wide state in pixels, keypoint and n_contacts."""
    n, ends = 9, np.array([4, 9])
    arrays = {
        "img": rng.integers(0, 256, (n, 8, 8, 3)).astype(np.float32),
        "state": np.concatenate([rng.uniform(50, 450, (n, 4)), rng.uniform(0, 2 * np.pi, (n, 1))], axis=1).astype(np.float32),
        "action": rng.uniform(0, 512, (n, 2)).astype(np.float32),
        "keypoint": rng.uniform(0, 512, (n, 9, 2)).astype(np.float32),
        "n_contacts": rng.integers(0, 3, (n, 1)).astype(np.float32),
    }
    root = zarr.open_group(path, mode="w", zarr_format=2)
    for key, values in arrays.items():
        root.create_array(f"data/{key}", data=values)
    root.create_array("meta/episode_ends", data=ends)
    return arrays


def run_import(args: list[str], cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "data_gen.import", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_push_t_imports_beside_our_stores_in_metres(tmp_path):
    """--camera img=overhead and --push-t-pixels: our camera name, our frame and units; warnings for what is left
    out (once) and for the domain, which is not ours."""
    arrays = push_t_zarr(tmp_path / "pusht.zarr", np.random.default_rng(4))
    done = run_import([str(tmp_path / "pusht.zarr"), "--format", "diffusion-policy", "--out", str(tmp_path / "pusht_m.zarr"),
                       "--camera", "img=overhead", "--push-t-pixels"], tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 2 and all(": warning: " in line for line in lines), done.stderr
    assert "data/keypoint" in lines[0] and "data/n_contacts" in lines[0] and done.stderr.count("data/keypoint") == 1
    assert "another domain" in lines[1] and "corrupt data" in lines[1]
    store = EpisodeStore.open(tmp_path / "pusht_m.zarr")
    assert store.cameras == ("overhead",)
    np.testing.assert_array_equal(store.array("overhead"), arrays["img"].astype(np.uint8))
    state = arrays["state"].astype(np.float64)
    np.testing.assert_allclose(store.array("agent_pos"), points_to_metres(state[:, :2]), atol=1e-6)
    np.testing.assert_allclose(store.array("action"), points_to_metres(arrays["action"].astype(np.float64)), atol=1e-6)
    np.testing.assert_allclose(store.array("slider_pose"), pose_to_metres(state[:, 2:5]), atol=1e-6)
    assert np.abs(store.array("agent_pos")).max() < 1.5  # metres around our goal, not pixels
    assert store.episode_meta(1).initial_pose == pytest.approx(tuple(pose_to_metres(state[4, 2:5])))
    assert "push-T pixels" in store.run["units"]
    assert {store.episode_meta(i).domain for i in range(2)} == {"push-t"}


def test_push_t_pixels_left_as_they_are_are_named(tmp_path):
    push_t_zarr(tmp_path / "pusht.zarr", np.random.default_rng(5))
    done = run_import([str(tmp_path / "pusht.zarr"), "--format", "diffusion-policy", "--out", str(tmp_path / "px.zarr")],
                      tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 2 and "not imported" in lines[0] and "--push-t-pixels" in lines[1], done.stderr
    assert EpisodeStore.open(tmp_path / "px.zarr").cameras == ("img",)
