"""One pushing simulation: built once, reset through its Context, stepped one control period at a time.

The env, physics replay and teleop all drive this class, so they share one stepping rule: within a
control period the pusher's PD set-point ramps from the previous target to the new one. The kinematic
path (`set_state`) places the slider and pusher and renders with no physics step, for replaying plans.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydrake.math import RigidTransform, RollPitchYaw
from pydrake.systems.analysis import Simulator

from pushing_sim import geometry
from pushing_sim.domains import DomainConfig, load_domain
from pushing_sim.scene import build_scene
from pushing_sim.task import TaskConfig


class PushingSim:
    """Drake simulation of the T and the pusher in one domain."""

    def __init__(self, domain: DomainConfig | str = "target", task: TaskConfig | None = None,
                 viewer_size: int | None = 384, policy_cameras: bool | Sequence[str] = True):
        self.domain = load_domain(domain)
        self.task = task or TaskConfig()
        self.scene = build_scene(self.domain, self.task, viewer_size=viewer_size, policy_cameras=policy_cameras)
        self.control_period = 1.0 / self.task.control_hz
        self.substeps = max(1, int(round(self.control_period / self.domain.physics.time_step)))
        diagram = self.scene.diagram
        self._context = diagram.CreateDefaultContext()
        self._simulator = Simulator(diagram, self._context)
        plant = self.scene.plant
        self._plant_context = plant.GetMyMutableContextFromRoot(self._context)
        self._desired_state_port = plant.get_desired_state_input_port(self.scene.pusher_instance)
        self._camera_contexts = {
            name: sensor.GetMyContextFromRoot(self._context) for name, sensor in self.scene.cameras.items()
        }
        viewer = self.scene.viewer
        self._viewer_context = viewer.GetMyContextFromRoot(self._context) if viewer is not None else None
        self._command = np.zeros(2)
        self.reset(np.array(self.task.goal_pose), np.array(self.task.pusher_start))

    @property
    def camera_names(self) -> list[str]:
        return list(self.scene.cameras)

    @property
    def time(self) -> float:
        return self._context.get_time()

    def reset(self, slider_pose: np.ndarray, pusher_xy: np.ndarray) -> None:
        """Place the T and the pusher at rest and restart time at zero."""
        self._context.SetTime(0.0)
        self._set_positions(slider_pose, pusher_xy)
        self.scene.plant.SetVelocities(self._plant_context, np.zeros(self.scene.plant.num_velocities()))
        self._command = np.asarray(pusher_xy, dtype=float).copy()
        desired = np.concatenate([self._command, np.zeros(2)])
        self._desired_state = self._desired_state_port.FixValue(self._plant_context, desired)
        self._simulator.Initialize()

    def set_state(self, slider_pose: np.ndarray, pusher_xy: np.ndarray) -> None:
        """Kinematic path: put the T and the pusher where given, with no physics step (for rendering)."""
        self._set_positions(slider_pose, pusher_xy)

    def _set_positions(self, slider_pose, pusher_xy) -> None:
        x, y, theta = (float(v) for v in slider_pose)
        # Start a hair into the table: a face exactly on the half space's boundary is degenerate for Drake.
        z = geometry.SLIDER_HEIGHT / 2.0 - 1e-6
        plant = self.scene.plant
        plant.SetFreeBodyPose(self._plant_context, self.scene.slider, RigidTransform(RollPitchYaw(0, 0, theta), [x, y, z]))
        joint_x, joint_y = self.scene.pusher_joints
        joint_x.set_translation(self._plant_context, float(pusher_xy[0]))
        joint_y.set_translation(self._plant_context, float(pusher_xy[1]))

    def step(self, target_xy: np.ndarray) -> None:
        """Advance one control period while the pusher's set-point ramps towards `target_xy`."""
        target = np.asarray(target_xy, dtype=float)
        max_move = self.domain.physics.controller.max_speed * self.control_period
        delta = target - self._command
        distance = float(np.linalg.norm(delta))
        if distance > max_move:
            delta *= max_move / distance
        start = self._command
        velocity = delta / self.control_period
        t0 = self._context.get_time()
        dt = self.control_period / self.substeps
        desired = np.concatenate([start, velocity])
        for k in range(1, self.substeps + 1):
            desired[:2] = start + delta * (k / self.substeps)
            # Overwrite the fixed value in place (re-fixing the port allocates a new value each substep,
            # about 5-10% of the physics time). GetMutableData() tells the plant it changed: call it each time.
            self._desired_state.GetMutableData().get_mutable_value().SetFromVector(desired)
            self._simulator.AdvanceTo(t0 + k * dt)
        self._command = start + delta

    def slider_pose(self) -> np.ndarray:
        """(x, y, theta) of the T's body frame."""
        X = self.scene.plant.GetFreeBodyPose(self._plant_context, self.scene.slider)
        yaw = RollPitchYaw(X.rotation()).yaw_angle()
        return np.array([X.translation()[0], X.translation()[1], yaw])

    def slider_tilt(self) -> float:
        """The T's tilt from flat (rad): large values mean it flipped or climbed the pusher."""
        X = self.scene.plant.GetFreeBodyPose(self._plant_context, self.scene.slider)
        return float(math.acos(np.clip(X.rotation().matrix()[2, 2], -1.0, 1.0)))

    def pusher_xy(self) -> np.ndarray:
        joint_x, joint_y = self.scene.pusher_joints
        return np.array([joint_x.get_translation(self._plant_context), joint_y.get_translation(self._plant_context)])

    def render(self) -> dict[str, np.ndarray]:
        """RGB uint8 (H, W, 3) images from every policy camera."""
        if not self.scene.cameras:
            raise RuntimeError("this simulation was built without policy cameras (policy_cameras=False)")
        return {name: self._render(sensor, self._camera_contexts[name]) for name, sensor in self.scene.cameras.items()}

    def render_view(self) -> np.ndarray:
        """A larger overhead view for people, with the goal drawn."""
        if self.scene.viewer is None:
            raise RuntimeError("this simulation was built without a viewer (viewer_size=None)")
        return self._render(self.scene.viewer, self._viewer_context)

    @staticmethod
    def _render(sensor, context) -> np.ndarray:
        image = sensor.color_image_output_port().Eval(context)
        return np.array(image.data[:, :, :3], copy=True)
