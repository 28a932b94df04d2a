"""Teleop without a person: a scripted input stream, real Drake, a real store; the window headless."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import gymnasium
import numpy as np
import pytest

from data_gen.episode_store import EpisodeMeta, EpisodeStore
from data_gen.teleop_session import ScriptedDevice, TeleopInput, TeleopSession, open_store, run
from pushing_sim import ENV_ID
from pushing_sim.demo import straight_push_targets

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env():
    return gymnasium.make(ENV_ID, render_mode="rgb_array", render_size=160, image_size=48)


def _push_script(goal):
    inputs = [TeleopInput(commands={"record"})]
    inputs += [TeleopInput(target=t) for t in straight_push_targets(goal, 0.05)]
    return inputs


def test_a_scripted_operator_records_a_successful_episode(env, tmp_path):
    store = open_store(tmp_path / "target.zarr", env)
    session = TeleopSession(env, store, seed=3)
    goal = np.array(env.unwrapped.task.goal_pose)
    session.reset(slider_pose=goal + [0, 0.05, 0])
    script = _push_script(goal)
    for user in script:
        session.tick(user)
        if session.state == "done":
            break
    assert session.state == "done" and "success" in session.status().message
    recorded = len(session.recorder)
    session.tick(TeleopInput(commands={"save"}))
    assert session.saved == 1 and session.state == "idle"
    store.close()

    with EpisodeStore.open(tmp_path / "target.zarr") as store:
        assert store.n_episodes == 1
        episode, meta = store.episode(0), store.episode_meta(0)
        assert meta.source == "teleop" and meta.domain == "target" and meta.success and meta.seed == 3
        np.testing.assert_allclose(meta.initial_pose, goal + [0, 0.05, 0], atol=1e-6)
        assert set(episode) == {"action", "agent_pos", "slider_pose", "overhead", "wrist"}
        assert len(episode["action"]) == recorded and episode["overhead"].shape[1:] == (48, 48, 3)
        # Recorded actions are the operator's targets, in order; the "record" tick holds the pusher still.
        expected = [env.unwrapped.task.pusher_start] + [u.target for u in script[1:recorded]]
        np.testing.assert_allclose(episode["action"], np.array(expected), atol=1e-6)
        assert episode["slider_pose"][-1][1] < episode["slider_pose"][0][1] - 0.03  # the T moved down


def test_discard_and_quit_write_nothing(env, tmp_path):
    store = open_store(tmp_path / "t.zarr", env)
    session = TeleopSession(env, store)
    goal = np.array(env.unwrapped.task.goal_pose)
    run(session, ScriptedDevice(_push_script(goal)[:10] + [TeleopInput(commands={"discard"})]
                                + _push_script(goal)[:5] + [TeleopInput(commands={"quit"})]), real_time=False)
    assert store.n_episodes == 0
    store.close()


def test_a_crash_mid_episode_keeps_the_saved_ones(env, tmp_path, monkeypatch):
    path = tmp_path / "t.zarr"
    store = open_store(path, env)
    session = TeleopSession(env, store)
    for user in _push_script(np.array(env.unwrapped.task.goal_pose))[:6]:
        session.tick(user)
    session.tick(TeleopInput(commands={"save"}))
    session.tick(TeleopInput(commands={"record"}))

    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(env, "step", boom)
    with pytest.raises(RuntimeError):
        session.tick(TeleopInput(target=np.array([0.5, 0.1])))
    store.close()
    with EpisodeStore.open(path) as reopened:
        assert reopened.n_episodes == 1 and len(reopened.episode(0)["action"]) == 6  # record tick + 5 moves


def test_a_second_session_appends_and_another_domain_is_refused(env, tmp_path):
    path = tmp_path / "t.zarr"
    with open_store(path, env) as store:  # a first session that recorded one demo
        episode = {"action": np.zeros((3, 2)), "agent_pos": np.zeros((3, 2)), "slider_pose": np.zeros((3, 3))}
        episode |= {name: np.zeros((3, *store.image_shape(name)), np.uint8) for name in store.cameras}
        store.append_episode(episode, EpisodeMeta(source="teleop", domain="target", seed=0, initial_pose=(0.5, 0.0, 0.0), success=True))
    open_store(path, env).close()
    sim_env = gymnasium.make(ENV_ID, domain="sim", image_size=48)
    with pytest.raises(Exception, match="different run"):
        open_store(path, sim_env)
    assert EpisodeStore.open(path).n_episodes == 1


def test_the_window_renders_headless_and_maps_the_mouse(env, tmp_path, monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    import pygame

    from data_gen.teleop_window import MARGIN, PygameDevice, PygameView

    store = open_store(tmp_path / "t.zarr", env)
    session = TeleopSession(env, store)
    view = PygameView(env, scale=2)
    device = PygameDevice(view)
    goal = np.array(env.unwrapped.task.goal_pose)
    from pushing_sim.scene import VIEWER_CAMERA, table_to_pixel

    column, row = table_to_pixel(VIEWER_CAMERA, view.view_size, goal[:2] + [0.1, 0.05])
    pygame.event.post(pygame.event.Event(pygame.MOUSEMOTION, pos=(MARGIN + column, MARGIN + row), rel=(0, 0), buttons=(0, 0, 0)))
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_SPACE, mod=0, unicode=" ", scancode=44))
    user = device.poll()
    np.testing.assert_allclose(user.target, goal[:2] + [0.1, 0.05], atol=0.004)
    assert user.commands == {"record"}
    session.tick(user)
    view.draw(session)
    shot = tmp_path / "teleop.png"
    view.screenshot(shot)
    image = pygame.surfarray.array3d(pygame.image.load(str(shot))).swapaxes(0, 1)
    # The scene view is drawn (not the background), with the green goal T at the goal.
    gc, gr = table_to_pixel(VIEWER_CAMERA, view.view_size, goal[:2] + [0.06, 0.035])
    r, g, b = image[int(MARGIN + gr), int(MARGIN + gc)].astype(int)
    assert g > r + 20 and g > b + 20
    # The camera panel shows the policy's overhead image.
    panel = image[MARGIN : MARGIN + view.camera_size, view.view_size + 2 * MARGIN :][:, : view.camera_size]
    assert panel.std() > 10
    pygame.quit()
    store.close()


def test_cli_refuses_a_file_as_store(tmp_path):
    path = tmp_path / "file"
    path.write_text("keep")
    result = subprocess.run([sys.executable, "-m", "data_gen.teleop", "--out", str(path)], capture_output=True,
                            text=True, env={**os.environ, "SDL_VIDEODRIVER": "dummy"})
    assert result.returncode == 2 and "not a directory" in result.stderr and path.read_text() == "keep"


@pytest.mark.parametrize("scale", ["0", "-2"])
def test_cli_refuses_a_scale_below_one_before_creating_anything(tmp_path, scale):
    result = subprocess.run([sys.executable, "-m", "data_gen.teleop", "--scale", scale, "--out", "t.zarr"],
                            capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "SDL_VIDEODRIVER": "dummy"})
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"error: --scale must be a positive whole zoom factor, got {scale}\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not (shutil.which("xvfb-run") and shutil.which("xdotool")),
                    reason="needs xvfb-run and xdotool (Debian: apt-get install xvfb xdotool)")
def test_the_real_window_under_xvfb_records_the_mouse_and_saves(tmp_path):
    """The real X11 window (not SDL's dummy driver), after Drake has rendered on the same display, driven by
    synthetic input: record, sweep the mouse right along the view's middle row, save, quit."""
    from pushing_sim.scene import VIEWER_CAMERA, pixel_to_table

    out = tmp_path / "teleop.zarr"
    row, columns = 248, list(range(168, 329, 20))  # window pixels; the 480 px view starts at (8, 8)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDL_") and k != "DISPLAY"}
    env |= {"PYTHONPATH": str(REPO_ROOT), "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}"}
    script = Path(__file__).with_name("teleop_xvfb_drive.sh")
    # Its own process group, so that an overrun takes Xvfb, the driver and teleop down with xvfb-run.
    driver = subprocess.Popen(["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24", "bash", str(script), str(out),
                               str(row), *map(str, columns)], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = driver.communicate(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    assert driver.returncode == 0, stderr[-3000:]
    assert "X Error" not in stderr and "1 episodes saved this session" in stdout, stderr[-3000:]

    with EpisodeStore.open(out) as store:
        assert store.n_episodes == 1 and store.episode_meta(0).source == "teleop"
        actions = store.episode(0)["action"]
    first, last = (pixel_to_table(VIEWER_CAMERA, 480, c - 8, row - 8) for c in (columns[0], columns[-1]))
    assert len(actions) > 5
    np.testing.assert_allclose(actions[0], first, atol=1e-5)  # recording started with the mouse at the left
    np.testing.assert_allclose(actions[-1], last, atol=1e-5)  # and the sweep ended at the right
    assert np.all(np.diff(actions[:, 0]) >= 0) and np.ptp(actions[:, 1]) < 1e-6  # rightward along one row
