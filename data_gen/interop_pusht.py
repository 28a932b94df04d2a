"""From push-T's pixels to our metres: the similarity that lays push-T's T and goal onto ours.

Diffusion Policy's push-T (and gym-pusht, LeRobot's pusht) works in pymunk units, the pixels of a
512 x 512 window: the pusher's xy, its target (the action) and the block's pose (x, y, angle). The
block's (x, y) is its body origin, the middle of the bar's outer edge, with the stem along body +y;
the bar is 120 x 30 and the stem 30 x 90 (``add_tee`` with scale 30, length 4), and the goal is the
same origin at (256, 256) with angle pi/4. Our T (pushing_sim.geometry) is 0.1651 m wide and tall
with its pose at the centroid and the stem along body -y; the goal is ``TaskConfig().goal_pose``.

The map is one similarity (scale, rotation, translation; no reflection, so angles keep their sense):
push-T's T is as wide and as tall as ours at ``METRES_PER_PIXEL`` = 0.1651 / 120, and its goal lands
on our goal. A point p (pusher, action) goes to ``goal_xy + s R(alpha) (p - c_goal)``, where c_goal
is the centroid of push-T's goal T; a block pose (x, y, a) goes to the image of its centroid
``(x, y) + R(a) CENTROID`` with angle ``a + pi + alpha`` (the pi turns push-T's stem-up body frame
into ours), wrapped to [-pi, pi). alpha = goal_theta - pi/4 - pi.

What stays different (so an imported push-T dataset is another domain, not our task's clean data):
the bar and stem are 30 px = 41.3 mm thick against our 40.6 mm (each corner within 0.6 mm of ours), the
pusher's radius is 15 px = 20.6 mm against our 15 mm, pymunk's block turns about a point 4.3 px
(6 mm) off its centroid (its centre of gravity is the mean of the two boxes' centres, not area
weighted), the physics is pymunk's, and the images are push-T's 2-D drawings (with the goal drawn in),
not our cameras'. push-T's walls (5 to 506 px) become a 0.69 m square turned by alpha, so some
mapped actions lie outside our workspace, where the env clips them. An imported push-T episode
therefore records the domain ``push-t``: corrupt data for our task, never its clean data.
"""

from __future__ import annotations

import numpy as np

from pushing_sim import geometry
from pushing_sim.task import TaskConfig, wrap_angle

# push-T's T in its body frame (pixels): the bar and the stem as (x_low, y_low, x_high, y_high).
BAR = (-60.0, 0.0, 60.0, 30.0)
STEM = (-15.0, 30.0, 15.0, 120.0)
GOAL_POSE = (256.0, 256.0, np.pi / 4)
DOMAIN = "push-t"  # the domain an imported push-T episode records: not our target's, nor our sim's
METRES_PER_PIXEL = geometry.BAR_SIZE[0] / (BAR[2] - BAR[0])


def _centroid() -> np.ndarray:
    """The area centroid of push-T's T in its body frame (0, 40.71 px)."""
    boxes = np.array([BAR, STEM])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
    return (areas[:, None] * centres).sum(0) / areas.sum()


CENTROID = _centroid()


def _turn(angle: float | np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 2, 2) for angles (...)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def _frame(goal: tuple[float, float, float]) -> tuple[np.ndarray, float, np.ndarray]:
    """(c_goal, alpha, goal_xy): where push-T's goal centroid is, the turn, and where it goes."""
    goal_pixels = np.asarray(GOAL_POSE)
    c_goal = goal_pixels[:2] + _turn(goal_pixels[2]) @ CENTROID
    return c_goal, float(goal[2] - goal_pixels[2] - np.pi), np.asarray(goal[:2], dtype=np.float64)


def points_to_metres(points: np.ndarray, goal: tuple[float, float, float] | None = None) -> np.ndarray:
    """push-T points (..., 2) in pixels (pusher xy, actions, keypoints) as our xy in metres."""
    c_goal, alpha, goal_xy = _frame(goal or TaskConfig().goal_pose)
    points = np.asarray(points, dtype=np.float64)
    return goal_xy + METRES_PER_PIXEL * (points - c_goal) @ _turn(alpha).T


def pose_to_metres(poses: np.ndarray, goal: tuple[float, float, float] | None = None) -> np.ndarray:
    """push-T block poses (..., 3) (body origin in pixels, angle) as our slider poses (centroid in metres, theta)."""
    goal = goal or TaskConfig().goal_pose
    poses = np.asarray(poses, dtype=np.float64)
    centroids = poses[..., :2] + (_turn(poses[..., 2]) @ CENTROID)
    _, alpha, _ = _frame(goal)
    theta = wrap_angle(poses[..., 2] + np.pi + alpha)
    return np.concatenate([points_to_metres(centroids, goal), theta[..., None]], axis=-1)
