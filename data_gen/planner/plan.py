"""A planned pushing demonstration: slider and pusher trajectories with a phase label per sample."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

REPOSITION = -1  # phase label of samples where the pusher moves around the T without pushing


@dataclass(frozen=True)
class Plan:
    """Samples of the plan (time-ordered). `phase[i]` is the pushed face's index, or REPOSITION."""

    times: np.ndarray  # (K,) seconds from the start
    slider_poses: np.ndarray  # (K, 3) x, y, theta (theta unwrapped, continuous)
    pusher_xy: np.ndarray  # (K, 2) pusher centre in the world
    phase: np.ndarray  # (K,) int
    solve_time: float  # s spent planning
    cost: float  # the GCS path's cost (seconds of execution plus switch penalties)
    contact_points: list[tuple[int, float]] = field(default_factory=list)  # (face, s) per contact

    @property
    def duration(self) -> float:
        return float(self.times[-1])

    def resample(self, hz: float = 10.0) -> Plan:
        """The plan at a fixed rate (the env's control rate): linear interpolation, last sample kept."""
        n = int(np.floor(self.duration * hz + 1e-9)) + 1
        times = np.arange(n) / hz
        if times[-1] < self.duration - 1e-9:
            times = np.append(times, self.duration)
        poses = np.stack([np.interp(times, self.times, self.slider_poses[:, i]) for i in range(3)], axis=1)
        pusher = np.stack([np.interp(times, self.times, self.pusher_xy[:, i]) for i in range(2)], axis=1)
        index = np.clip(np.searchsorted(self.times, times, side="right") - 1, 0, len(self.times) - 1)
        return Plan(times, poses, pusher, self.phase[index], self.solve_time, self.cost, self.contact_points)

    def pusher_targets(self, hz: float = 10.0) -> np.ndarray:
        """Pusher xy targets at `hz`, shape (n, 2): what a position-controlled pusher is sent."""
        return self.resample(hz).pusher_xy
