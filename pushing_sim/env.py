"""The Gymnasium environment `pushing_sim/PlanarPushing-v0`: push a T to its goal pose in Drake."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from pushing_sim.domains import DomainConfig, checked_overrides, load_domain
from pushing_sim.simulation import PushingSim
from pushing_sim.task import TaskConfig, wrap_angle, coverage, is_success, is_valid_initial_condition, pose_errors, sample_initial_pose

OBS_TYPES = ("pixels_agent_pos", "pixels", "environment_state_agent_pos", "state")


class PlanarPushingEnv(gym.Env):
    """Planar pushing of a T-shaped block with a cylindrical pusher, simulated by Drake.

    ## Action Space
    `Box(low=workspace_lo, high=workspace_hi, shape=(2,), float32)`: the absolute xy target of the
    pusher in metres, applied at 10 Hz. Within each 0.1 s period the pusher's PD set-point ramps to the
    target (at most `max_speed`). Out-of-range actions are clipped to the workspace; NaN raises ValueError.

    ## Observation Space
    The multi-camera layout of gym-aloha and LeRobot (whose `preprocess_observation` turns `pixels`
    into `observation.images.<camera>`, `agent_pos` into `observation.state` and `environment_state`
    into `observation.environment_state`):
    - `obs_type="pixels_agent_pos"` (default): `{"pixels": {camera: uint8 (H, W, 3)}, "agent_pos":
      float32 (2,)}`, one image per camera (`overhead`, `wrist` in the built-in domains) and the
      pusher's xy.
    - `obs_type="pixels"`: `{"pixels": {camera: uint8 (H, W, 3)}}`, the images alone.
    - `obs_type="environment_state_agent_pos"`: `{"environment_state": float32 (3,), "agent_pos":
      float32 (2,)}`, the slider's pose (x, y, theta) and the pusher's xy.
    - `obs_type="state"`: float32 (5,) = pusher x, y, slider x, y, theta, as in gym-pusht.
    Theta is in [-pi, pi). The two state layouts build no policy cameras and never render (only
    `render()` does, with `render_mode="rgb_array"`), so they step at the physics' speed.

    ## Rewards
    The fraction of the T's area that overlaps the goal T (`coverage`, 0 to 1), as in gym-pusht.

    ## Starting State
    The slider is drawn uniformly by the task's sampler (xy in a 0.4 x 0.3 m box around the goal, theta
    in [-pi, pi), the whole T inside the box and clear of the pusher); the pusher starts at
    (0.587, 0.15). `reset(options={"slider_pose": (x, y, theta), "pusher_xy": (x, y)})` sets them.

    ## Episode End
    `terminated` when the T is within 0.015 m and 3.5 degrees of the goal (`info["is_success"]`);
    `truncated` by the registered time limit: 750 steps (75 s).

    ## Info
    `is_success`, `slider_pose` (x, y, theta), `goal_pos_error` (m), `goal_angle_error` (rad),
    `coverage`, `agent_pos`.

    ## Arguments
    `obs_type`, `domain` ("target", "sim", a YAML path, or a DomainConfig), `domain_overrides` (dotted
    `key=value` strings, e.g. "physics.com_offset_y=-0.03"), `image_size` (square camera images,
    default 96), `render_mode="rgb_array"` (a larger overhead view with the goal drawn; `render_size`),
    `task` (a TaskConfig), `cameras` (the domain's cameras to render into `pixels`, default all of
    them: a policy that reads one camera need not pay for rendering the others).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        obs_type: str = "pixels_agent_pos",
        domain: str | DomainConfig = "target",
        domain_overrides: list[str] | tuple[str, ...] = (),
        image_size: int | None = None,
        render_mode: str | None = None,
        render_size: int = 384,
        task: TaskConfig | None = None,
        cameras: Sequence[str] | None = None,
    ):
        if obs_type not in OBS_TYPES:
            raise ValueError(f"unknown obs_type {obs_type!r}: use one of {OBS_TYPES}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"unknown render_mode {render_mode!r}: use one of {self.metadata['render_modes']} or None")
        if isinstance(render_size, bool) or not isinstance(render_size, (int, np.integer)) or not 16 <= render_size <= 2048:
            raise ValueError(f"render_size must be a whole number of pixels in [16, 2048], got {render_size!r}")
        overrides = checked_overrides(domain_overrides, "domain_overrides")
        overrides += [f"render.image_size={int(image_size)}"] if image_size is not None else []
        self.domain = load_domain(domain, overrides)
        self.task = task or TaskConfig()
        self.obs_type = obs_type
        self.render_mode = render_mode
        images = obs_type in ("pixels_agent_pos", "pixels")
        if cameras is not None:
            if not images:
                raise ValueError(f"cameras apply to image observations; obs_type {obs_type!r} has none")
            if isinstance(cameras, str) or not cameras or len(set(cameras)) != len(cameras):
                raise ValueError(f"cameras must be a non-empty list of distinct camera names, got {cameras!r}")
        # State observations build no policy cameras and no renderer for them: they never render.
        self.sim = PushingSim(self.domain, self.task, viewer_size=render_size if render_mode == "rgb_array" else None,
                              policy_cameras=images if cameras is None else list(cameras))
        self.metadata = {**self.metadata, "render_fps": int(self.task.control_hz)}

        lo, hi = self.task.workspace()
        self.action_space = spaces.Box(lo.astype(np.float32), hi.astype(np.float32), shape=(2,), dtype=np.float32)
        size = self.domain.render.image_size
        pixels = spaces.Dict({name: spaces.Box(0, 255, (size, size, 3), np.uint8) for name in self.sim.camera_names})
        # The PD-tracked pusher can overshoot its clipped target by a little; physics may push the T a
        # little past the workspace. So both bounds are loose.
        agent_lo, agent_hi = (lo - 0.05).astype(np.float32), (hi + 0.05).astype(np.float32)
        slider_lo = np.array([*(lo - 0.5), -np.pi], dtype=np.float32)
        slider_hi = np.array([*(hi + 0.5), np.pi], dtype=np.float32)
        agent_pos = spaces.Box(agent_lo, agent_hi, shape=(2,), dtype=np.float32)
        environment_state = spaces.Box(slider_lo, slider_hi, shape=(3,), dtype=np.float32)
        if obs_type == "pixels_agent_pos":
            self.observation_space = spaces.Dict({"pixels": pixels, "agent_pos": agent_pos})
        elif obs_type == "pixels":
            self.observation_space = spaces.Dict({"pixels": pixels})
        elif obs_type == "environment_state_agent_pos":
            self.observation_space = spaces.Dict({"environment_state": environment_state, "agent_pos": agent_pos})
        else:
            low, high = np.concatenate([agent_lo, slider_lo]), np.concatenate([agent_hi, slider_hi])
            self.observation_space = spaces.Box(low, high, shape=(5,), dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options is not None and not isinstance(options, dict):
            raise TypeError(f"options must be a dict (keys 'slider_pose', 'pusher_xy') or None, got {type(options).__name__}")
        options = dict(options or {})
        unknown = set(options) - {"slider_pose", "pusher_xy"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}: use 'slider_pose' and/or 'pusher_xy'")
        pusher_xy = _vector(options.get("pusher_xy", self.task.pusher_start), 2, "pusher_xy")
        if "slider_pose" in options:
            slider_pose = _vector(options["slider_pose"], 3, "slider_pose")
            if not is_valid_initial_condition(self.task, slider_pose, pusher_xy):
                raise ValueError(
                    f"slider_pose {slider_pose.tolist()} is not a valid start: the T must lie inside the "
                    f"{self.task.init_box_size} m box around the goal and clear of the pusher at {pusher_xy.tolist()}"
                )
        else:
            slider_pose = sample_initial_pose(self.task, self.np_random, pusher_xy)
        lo, hi = self.task.workspace()
        if np.any(pusher_xy < lo) or np.any(pusher_xy > hi):
            raise ValueError(f"pusher_xy {pusher_xy.tolist()} is outside the workspace {lo.tolist()}..{hi.tolist()}")
        self.sim.reset(slider_pose, pusher_xy)
        info = self._info()
        return self._observation(info), info

    def step(self, action):
        raw = np.asarray(action)
        if raw.dtype.kind not in "iuf":  # bool, complex, strings, objects: not a position
            raise ValueError(f"action must be real numbers (a pusher xy target), got dtype {raw.dtype}")
        action = raw.astype(np.float64)
        if action.shape != (2,):
            raise ValueError(f"action must have shape (2,), got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action must be finite, got {action.tolist()}")
        self.sim.step(np.clip(action, self.action_space.low, self.action_space.high))
        info = self._info()
        return self._observation(info), float(info["coverage"]), bool(info["is_success"]), False, info

    def render(self):
        if self.render_mode == "rgb_array":
            return self.sim.render_view()
        gym.logger.warn(  # the wording of gymnasium's own envs
            "You are calling render method without specifying any render mode. You can specify the render_mode at "
            'initialization, e.g. gymnasium.make("pushing_sim/PlanarPushing-v0", render_mode="rgb_array")'
        )
        return None

    def _observation(self, info: dict[str, Any]):
        agent_pos = info["agent_pos"].astype(np.float32)
        environment_state = info["slider_pose"].astype(np.float32)
        if self.obs_type == "state":
            return np.concatenate([agent_pos, environment_state])
        if self.obs_type == "environment_state_agent_pos":
            return {"environment_state": environment_state, "agent_pos": agent_pos}
        observation = {"pixels": self.sim.render()}
        if self.obs_type == "pixels_agent_pos":
            observation["agent_pos"] = agent_pos
        return observation

    def _info(self) -> dict[str, Any]:
        pose = self.sim.slider_pose()
        pose[2] = wrap_angle(pose[2])
        agent_pos = self.sim.pusher_xy()
        position_error, angle_error = pose_errors(self.task, pose)
        return {
            "is_success": is_success(self.task, pose, agent_pos),
            "slider_pose": pose,
            "goal_pos_error": position_error,
            "goal_angle_error": angle_error,
            "coverage": coverage(self.task, pose),
            "agent_pos": agent_pos,
        }


def _vector(value, size: int, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (size,) or not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be {size} finite numbers, got {value!r}")
    return array

