import functools

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from pushing_sim import ENV_ID, geometry
from pushing_sim.demo import straight_push_targets
from pushing_sim.domains import TARGET_COM_OFFSET_Y

@pytest.mark.parametrize("obs_type", ["pixels_agent_pos", "pixels", "environment_state_agent_pos", "state"])
def test_check_env_passes(obs_type):
    env = gymnasium.make(ENV_ID, obs_type=obs_type, image_size=32, render_mode="rgb_array", render_size=64)
    check_env(env.unwrapped, skip_render_check=False)
    env.close()


def test_observation_contract():
    env = gymnasium.make(ENV_ID)
    assert env.metadata["render_fps"] == 10
    obs, info = env.reset(seed=0)
    assert set(obs) == {"pixels", "agent_pos"} and set(obs["pixels"]) == {"overhead", "wrist"}
    for image in obs["pixels"].values():
        assert image.shape == (96, 96, 3) and image.dtype == np.uint8
    assert obs["agent_pos"].shape == (2,) and obs["agent_pos"].dtype == np.float32
    np.testing.assert_allclose(obs["agent_pos"], [0.587, 0.15], atol=1e-6)
    assert set(info) >= {"is_success", "slider_pose", "goal_pos_error", "goal_angle_error", "coverage"}
    assert obs in env.observation_space
    obs, *_ = env.step(np.array([0.6, 0.1]))
    assert obs in env.observation_space



def test_every_obs_type_is_a_view_of_the_same_state(goal):
    start = {"slider_pose": goal + [0.05, 0.02, 1.0], "pusher_xy": [0.45, 0.18]}
    obs = {}
    for obs_type in ("pixels_agent_pos", "pixels", "environment_state_agent_pos", "state"):
        env = gymnasium.make(ENV_ID, obs_type=obs_type, image_size=32)
        obs[obs_type], info = env.reset(seed=0, options=start)
        assert obs[obs_type] in env.observation_space
        obs[obs_type], _, _, _, info = env.step(np.array([0.46, 0.17]))
        assert obs[obs_type] in env.observation_space
        env.close()
    assert set(obs["pixels"]) == {"pixels"} and set(obs["pixels"]["pixels"]) == {"overhead", "wrist"}
    for name, image in obs["pixels"]["pixels"].items():
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(image, obs["pixels_agent_pos"]["pixels"][name])  # deterministic physics and render
    assert set(obs["environment_state_agent_pos"]) == {"environment_state", "agent_pos"}
    environment_state = obs["environment_state_agent_pos"]["environment_state"]
    assert environment_state.shape == (3,) and environment_state.dtype == np.float32
    np.testing.assert_allclose(environment_state, info["slider_pose"], atol=1e-6)
    np.testing.assert_allclose(environment_state[:2], start["slider_pose"][:2], atol=0.01)  # the pusher never reached it
    agent_pos = obs["environment_state_agent_pos"]["agent_pos"]
    np.testing.assert_array_equal(agent_pos, obs["pixels_agent_pos"]["agent_pos"])
    state = obs["state"]
    assert state.shape == (5,) and state.dtype == np.float32
    np.testing.assert_array_equal(state, np.concatenate([agent_pos, environment_state]))


def lerobot_preprocess(observation: dict) -> dict:
    """LeRobot's `preprocess_observation` in small: what a LeRobot policy would be fed from this env."""
    import torch

    batch = {}
    for camera, image in observation.get("pixels", {}).items():
        image = torch.from_numpy(image)
        if image.ndim == 3:
            image = image.unsqueeze(0)
        _, h, w, c = image.shape
        assert c < h and c < w and image.dtype == torch.uint8  # channel-last uint8, as LeRobot asserts
        batch[f"observation.images.{camera}"] = image.permute(0, 3, 1, 2).contiguous().float() / 255
    for key, name in (("environment_state", "observation.environment_state"), ("agent_pos", "observation.state")):
        if key in observation:
            value = torch.from_numpy(observation[key]).float()
            batch[name] = value.unsqueeze(0) if value.ndim == 1 else value
    return batch


def test_lerobot_preprocessing_gives_images_per_camera_and_the_state():
    env = gymnasium.make(ENV_ID, image_size=48)
    obs, _ = env.reset(seed=3)
    batch = lerobot_preprocess(obs)
    assert set(batch) == {"observation.images.overhead", "observation.images.wrist", "observation.state"}
    for camera in ("overhead", "wrist"):
        image = batch[f"observation.images.{camera}"]
        assert image.shape == (1, 3, 48, 48) and str(image.dtype) == "torch.float32"
        assert 0.0 <= image.min() and image.max() <= 1.0 and image.max() > 0.5
        np.testing.assert_allclose(image[0].permute(1, 2, 0).numpy() * 255, obs["pixels"][camera], atol=1e-3)
    np.testing.assert_allclose(batch["observation.state"].numpy(), obs["agent_pos"][None])

    env = gymnasium.make(ENV_ID, obs_type="environment_state_agent_pos")
    obs, info = env.reset(seed=3)
    batch = lerobot_preprocess(obs)
    assert set(batch) == {"observation.environment_state", "observation.state"}
    np.testing.assert_allclose(batch["observation.environment_state"].numpy()[0], info["slider_pose"], atol=1e-6)

    # A vector env batches the nested dict the same way, which is what LeRobot's evaluation steps.
    envs = gymnasium.vector.SyncVectorEnv([lambda: gymnasium.make(ENV_ID, image_size=32) for _ in range(2)])
    obs, _ = envs.reset(seed=[0, 1])
    assert lerobot_preprocess(obs)["observation.images.wrist"].shape == (2, 3, 32, 32)
    envs.close()


def test_registration_truncates_at_the_task_length(goal):
    from gymnasium.wrappers import TimeLimit

    from pushing_sim.task import TaskConfig

    env = gymnasium.make(ENV_ID, obs_type="state")
    assert env.spec.max_episode_steps == TaskConfig().max_episode_steps == 750
    wrapper, wrappers = env, []
    while wrapper is not env.unwrapped:
        wrappers.append(type(wrapper))
        wrapper = wrapper.env
    assert TimeLimit in wrappers
    _, info = env.reset(seed=0, options={"slider_pose": goal + [0.1, 0.05, 0.5]})
    hold = np.array(env.unwrapped.task.pusher_start)  # the pusher stays home: the T never moves
    for step in range(1, 751):
        _, _, terminated, truncated, info = env.step(hold)
        assert not terminated and not info["is_success"]
        assert truncated == (step == 750), step


@pytest.mark.parametrize(
    "offset, success",
    [
        ([0.0, 0.0, 0.0], True),
        ([0.01, 0.0, 0.03], True),  # inside 0.015 m and 3.5 degrees (0.061 rad)
        ([0.02, 0.0, 0.0], False),  # too far
        ([0.0, 0.0, 0.07], False),  # turned too much
    ],
)
def test_is_success_reports_the_task_check(goal, task, offset, success):
    from pushing_sim.task import is_success

    env = gymnasium.make(ENV_ID, obs_type="state")
    _, info = env.reset(seed=0, options={"slider_pose": goal + offset})
    assert info["is_success"] is success
    for _ in range(3):  # the pusher stays home, so the T stays where it was put
        _, _, terminated, truncated, info = env.step(np.array(task.pusher_start))
        assert info["is_success"] is success is is_success(task, info["slider_pose"])
        assert terminated is success and not truncated


def test_same_seed_same_episode():
    def run(seed):
        env = gymnasium.make(ENV_ID, obs_type="pixels_agent_pos", image_size=48)
        env.action_space.seed(seed)
        obs, _ = env.reset(seed=seed)
        frames, poses = [obs["pixels"]["overhead"]], []
        for _ in range(15):
            obs, _, _, _, info = env.step(env.action_space.sample())
            frames.append(obs["pixels"]["overhead"])
            poses.append(info["slider_pose"])
        return np.array(frames), np.array(poses)

    frames_a, poses_a = run(7)
    frames_b, poses_b = run(7)
    frames_c, _ = run(8)
    np.testing.assert_array_equal(frames_a, frames_b)
    np.testing.assert_array_equal(poses_a, poses_b)
    assert not np.array_equal(frames_a[0], frames_c[0])


@pytest.mark.parametrize("domain", ["target", "sim"])
def test_scripted_push_moves_the_t_to_the_goal(domain, goal):
    env = gymnasium.make(ENV_ID, obs_type="state", domain=domain)
    start = goal + [0, 0.05, 0]
    env.reset(seed=0, options={"slider_pose": start})
    for action in straight_push_targets(goal, 0.05):
        _, reward, terminated, truncated, info = env.step(action)
        if terminated:
            break
        assert env.unwrapped.sim.slider_tilt() < 0.02  # the T slides flat on the table
    assert terminated and info["is_success"]
    moved = info["slider_pose"] - start
    # It went the way it was pushed: down in y, hardly sideways, hardly turned.
    assert moved[1] < -0.035 and abs(moved[0]) < 0.005 and abs(moved[2]) < 0.05
    assert reward == pytest.approx(info["coverage"]) and reward > 0.75


def test_the_sim_domain_physics_differs_from_the_target(goal):
    """The same side push, between the two centres of mass (sim's at the T's centroid, target's 0.06 m
    below it), turns the sim T one way and the true T the other."""
    turns = {}
    for domain in ("target", "sim"):
        env = gymnasium.make(ENV_ID, obs_type="state", domain=domain)
        start = goal + [-0.08, 0, 0]
        env.reset(options={"slider_pose": start})
        y, x0 = start[1] - 0.03, 0.38
        path = list(np.linspace([goal[0], 0.15], [x0, 0.15], 6)) + list(np.linspace([x0, 0.15], [x0, y], 6))
        path += list(np.linspace([x0, y], [x0 + 0.15, y], 20)) + [[x0 + 0.15, y]] * 5
        for action in path:
            _, _, _, _, info = env.step(action)
        moved = info["slider_pose"] - start
        assert moved[0] > 0.02  # pushed along +x
        turns[domain] = moved[2]
    assert turns["sim"] > 0.05  # counter-clockwise: the push line is below sim's centre of mass
    assert turns["target"] < -0.05  # clockwise: it is above target's


def test_domain_physics_reaches_the_plant():
    from pushing_sim.simulation import PushingSim

    for domain, com_y in (("target", TARGET_COM_OFFSET_Y), ("sim", 0.0)):
        sim = PushingSim(domain)
        plant = sim.scene.plant
        inertia = sim.scene.slider.default_spatial_inertia()
        np.testing.assert_allclose(inertia.get_com(), [0.0, com_y, 0.0], atol=1e-12)
        assert inertia.get_mass() == pytest.approx(0.1)
        # Drake combines per-geometry friction as 2ab/(a+b); the pairs must come out as configured.
        inspector = sim.scene.scene_graph.model_inspector()
        mu = {}
        for geometry_id in inspector.GetAllGeometryIds():
            props = inspector.GetProximityProperties(geometry_id)
            if props is not None:
                mu[inspector.GetName(geometry_id).split("::")[-1]] = props.GetProperty("material", "coulomb_friction").static_friction()
        combine = lambda a, b: 2 * a * b / (a + b)  # noqa: E731
        physics = sim.domain.physics
        assert combine(mu["slider_0"], mu["table"]) == pytest.approx(physics.table_friction)
        assert combine(mu["slider_1"], mu["pusher"]) == pytest.approx(physics.pusher_friction)
        assert plant.time_step() == physics.time_step


def test_out_of_range_actions_are_clipped_and_bad_ones_raise():
    env = gymnasium.make(ENV_ID, obs_type="state")
    env.reset(seed=0)
    for _ in range(10):
        obs, *_ = env.step(np.array([5.0, 5.0]))
    hi = env.action_space.high
    assert np.all(obs[:2] <= hi + 0.01) and np.all(obs[:2] > hi - 0.02)
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan, 0.1]))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3))
    for bad in (np.array([True, False]), np.array([0.5 + 1j, 0.1]), np.array(["0.5", "0.1"])):
        with pytest.raises(ValueError, match=f"real numbers.*{bad.dtype}"):
            env.step(bad)
    env.step(np.array([1, 0]))  # integers are numbers: clipped into the workspace like any target


def test_reset_options_set_the_start_and_bad_ones_raise(goal):
    env = gymnasium.make(ENV_ID, obs_type="state")
    pose = goal + [0.05, 0.02, 1.0]
    obs, info = env.reset(options={"slider_pose": pose, "pusher_xy": [0.4, 0.2]})
    np.testing.assert_allclose(info["slider_pose"], pose, atol=1e-5)
    np.testing.assert_allclose(obs[:2], [0.4, 0.2], atol=1e-6)
    with pytest.raises(ValueError, match="not a valid start"):
        env.reset(options={"slider_pose": goal + [0.5, 0, 0]})
    with pytest.raises(ValueError, match="not a valid start"):  # the pusher would sit inside the T
        env.reset(options={"slider_pose": goal, "pusher_xy": goal[:2]})
    with pytest.raises(ValueError, match="3 finite numbers"):
        env.reset(options={"slider_pose": [0.5, 0.1]})
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"slider": goal})
    with pytest.raises(ValueError, match="unknown obs_type"):
        gymnasium.make(ENV_ID, obs_type="depth")
    for options in ([("slider_pose", goal)], "slider_pose"):
        with pytest.raises(TypeError, match="options must be a dict"):
            env.reset(options=options)
    for size in (0, -5, 12.5, True):
        with pytest.raises(ValueError, match="render_size must be a whole number of pixels"):
            gymnasium.make(ENV_ID, obs_type="state", render_mode="rgb_array", render_size=size)


def test_render_without_a_render_mode_warns_and_returns_none():
    env = gymnasium.make(ENV_ID, obs_type="state", disable_env_checker=True)
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="without specifying any render mode"):
        assert env.render() is None


@pytest.mark.parametrize("obs_type", ["state", "environment_state_agent_pos", "pixels_agent_pos"])
def test_state_observations_never_render_and_pixels_render_each_camera_once_per_step(obs_type, monkeypatch):
    from pushing_sim.simulation import PushingSim

    renders = []
    render = PushingSim._render
    monkeypatch.setattr(PushingSim, "_render", staticmethod(lambda sensor, context: renders.append(sensor.get_name()) or render(sensor, context)))
    env = gymnasium.make(ENV_ID, obs_type=obs_type, image_size=32)
    sim = env.unwrapped.sim
    pixels = obs_type.startswith("pixels")
    # Drake itself: a state env holds no camera and no renderer, so nothing in it can render.
    assert sim.scene.scene_graph.RendererCount() == (1 if pixels else 0)
    assert list(sim.scene.cameras) == (["overhead", "wrist"] if pixels else [])
    env.reset(seed=0)
    for target in ([0.6, 0.1], [0.55, 0.12], [0.5, 0.1]):
        env.step(np.array(target))
    assert renders == (4 * ["camera_overhead", "camera_wrist"] if pixels else [])
    env.close()

    # With render_mode the viewer exists, yet a state env's steps leave its image uncomputed (Drake's cache).
    env = gymnasium.make(ENV_ID, obs_type=obs_type, image_size=32, render_mode="rgb_array", render_size=64)
    sim = env.unwrapped.sim
    viewer_image = sim.scene.viewer.color_image_output_port().cache_entry()
    renders.clear()
    env.reset(seed=0)
    env.step(np.array([0.6, 0.1]))
    assert viewer_image.is_out_of_date(sim._viewer_context)
    assert renders == (2 * ["camera_overhead", "camera_wrist"] if pixels else [])
    env.render()
    assert not viewer_image.is_out_of_date(sim._viewer_context) and renders[-1] == "camera_viewer"
    env.close()


def test_domains_render_visibly_different_images(goal):
    images = {}
    for domain in ("target", "sim"):
        env = gymnasium.make(ENV_ID, domain=domain)
        obs, _ = env.reset(options={"slider_pose": goal + [0.03, 0.02, 0.5]})
        images[domain] = obs["pixels"]
    for camera in ("overhead", "wrist"):
        difference = np.abs(images["target"][camera].astype(int) - images["sim"][camera].astype(int)).mean()
        assert difference > 20, camera
        # Each image shows something: not a flat colour.
        assert images["target"][camera].std() > 5 and images["sim"][camera].std() > 5


def _pixel(camera, size, world_xy):
    from pushing_sim.scene import table_to_pixel

    column, row = table_to_pixel(camera, size, world_xy)
    return int(row), int(column)


def test_render_shows_the_goal_that_policy_cameras_do_not_see(goal):
    from pushing_sim.scene import VIEWER_CAMERA

    env = gymnasium.make(ENV_ID, render_mode="rgb_array", render_size=128)
    obs, _ = env.reset(options={"slider_pose": goal + [-0.11, 0.0, 0.0]})  # the goal's right arm is bare table
    view = env.render().astype(int)
    assert view.shape == (128, 128, 3)
    arm = goal[:2] + [0.065, geometry.BAR.center[1]]
    row, col = _pixel(VIEWER_CAMERA, 128, arm)
    r, g, b = view[row - 1 : row + 2, col - 1 : col + 2].reshape(-1, 3).mean(0)
    assert g > r + 30 and g > b + 30  # the green goal T in the viewer
    row, col = _pixel(env.unwrapped.domain.render.cameras["overhead"], 96, arm)
    r, g, b = obs["pixels"]["overhead"][row - 1 : row + 2, col - 1 : col + 2].reshape(-1, 3).astype(int).mean(0)
    assert not g > r  # bare (warm) table in the policy's image


def test_pixel_and_table_maps_are_inverse_and_match_the_rendered_pusher():
    from pushing_sim.scene import VIEWER_CAMERA, pixel_to_table, table_to_pixel

    np.testing.assert_allclose(pixel_to_table(VIEWER_CAMERA, 200, *table_to_pixel(VIEWER_CAMERA, 200, (0.5, 0.1))), [0.5, 0.1])
    env = gymnasium.make(ENV_ID, render_mode="rgb_array", render_size=200)
    env.reset(seed=0, options={"pusher_xy": [0.45, 0.15]})
    view = env.render().astype(int)
    red = (view[..., 0] > 150) & (view[..., 1] < 100) & (view[..., 2] < 100)  # the target domain's red pusher
    rows, columns = np.nonzero(red)
    seen = pixel_to_table(VIEWER_CAMERA, 200, columns.mean() + 0.5, rows.mean() + 0.5)
    # The red is mostly the pusher's top face, which parallax pushes outwards from the image centre.
    height = VIEWER_CAMERA.position[2]
    top = geometry.PUSHER_CLEARANCE + geometry.PUSHER_HEIGHT
    centre = np.array(VIEWER_CAMERA.position[:2])
    expected = centre + (np.array([0.45, 0.15]) - centre) * height / (height - top)
    np.testing.assert_allclose(seen, expected, atol=0.003)


def test_kinematic_path_renders_without_physics(goal):
    env = gymnasium.make(ENV_ID)
    env.reset(seed=0)
    sim = env.unwrapped.sim
    before = sim.render()["overhead"]
    sim.set_state(goal + [0.1, 0.05, 1.2], np.array([0.4, 0.1]))
    after = sim.render()["overhead"]
    assert sim.time == 0.0
    np.testing.assert_allclose(sim.slider_pose(), goal + [0.1, 0.05, 1.2], atol=1e-5)
    np.testing.assert_allclose(sim.pusher_xy(), [0.4, 0.1])
    assert np.abs(before.astype(int) - after.astype(int)).max() > 50


@pytest.mark.parametrize(
    "make_vector",
    [
        gymnasium.vector.SyncVectorEnv,
        # Spawned workers: a fork of a process that already rendered would inherit its EGL state.
        lambda fns: gymnasium.vector.AsyncVectorEnv(fns, context="spawn"),
    ],
)
def test_vector_envs(make_vector):
    # "module:id" makes a spawned worker import pushing_sim, which registers the env there.
    make_env = functools.partial(gymnasium.make, f"pushing_sim:{ENV_ID}", image_size=32)
    envs = make_vector([make_env for _ in range(2)])
    obs, info = envs.reset(seed=[1, 2])
    assert obs["pixels"]["overhead"].shape == (2, 32, 32, 3) and obs["agent_pos"].shape == (2, 2)
    obs, reward, terminated, truncated, info = envs.step(np.array([[0.6, 0.1], [0.5, 0.1]], dtype=np.float32))
    assert reward.shape == (2,)
    assert not np.allclose(info["slider_pose"][0], info["slider_pose"][1])
    envs.close()


def test_an_env_renders_the_cameras_it_is_given_and_the_same_pixels_as_with_all():
    full = gymnasium.make(ENV_ID, image_size=32)
    overhead = gymnasium.make(ENV_ID, image_size=32, cameras=["overhead"])
    wrist = gymnasium.make(ENV_ID, image_size=32, cameras=("wrist",))
    try:
        assert list(overhead.observation_space["pixels"].spaces) == ["overhead"]
        observations = [env.reset(seed=5)[0] for env in (full, overhead, wrist)]
        for _ in range(3):
            action = observations[0]["agent_pos"] + np.float32(0.01)
            observations = [env.step(action)[0] for env in (full, overhead, wrist)]
        all_of_them, one, other = observations
        assert set(one["pixels"]) == {"overhead"} and set(other["pixels"]) == {"wrist"}
        np.testing.assert_array_equal(one["pixels"]["overhead"], all_of_them["pixels"]["overhead"])
        np.testing.assert_array_equal(other["pixels"]["wrist"], all_of_them["pixels"]["wrist"])
    finally:
        for env in (full, overhead, wrist):
            env.close()
    for kwargs, match in [
        ({"cameras": ["front"]}, r"domain 'target' has no camera 'front' \(its cameras: overhead, wrist\)"),
        ({"cameras": []}, "non-empty list"),
        ({"cameras": "overhead"}, "non-empty list"),
        ({"cameras": ["wrist", "wrist"]}, "distinct"),
        ({"cameras": ["overhead"], "obs_type": "state"}, "apply to image observations"),
    ]:
        with pytest.raises(ValueError, match=match):
            gymnasium.make(ENV_ID, image_size=32, **kwargs)
