"""The operator's session without a window: input ticks, the episode loop over the env, the store.

`TeleopSession` takes its input from any `InputDevice` (the pygame window's mouse and gamepad, or a
`ScriptedDevice` in tests and figures), so the logic runs and is tested on machines with no display;
the window (`teleop_window`) and the CLI (`teleop`) both build on this module, which imports neither.
An episode reaches the store only when saved, through the store's atomic commit.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from data_gen.episode_store import EpisodeMeta, EpisodeRecorder, EpisodeStore

COMMANDS = ("record", "save", "discard", "reset", "quit")


@dataclass
class TeleopInput:
    """One tick of operator input: where the pusher should go (None: stay) or how far to move it
    (`delta`, from a gamepad stick), and any commands."""

    target: np.ndarray | None = None
    delta: np.ndarray | None = None
    commands: set[str] = field(default_factory=set)


class InputDevice(Protocol):
    def poll(self) -> TeleopInput: ...


class ScriptedDevice:
    """Replays a fixed list of inputs, then asks to quit: a person stand-in for tests and demos."""

    def __init__(self, inputs: Iterable[TeleopInput]):
        self._inputs = list(inputs)

    def poll(self) -> TeleopInput:
        return self._inputs.pop(0) if self._inputs else TeleopInput(commands={"quit"})


@dataclass
class Status:
    """What the status line shows."""

    state: str  # "idle", "recording" or "done" (success reached, waiting for save or discard)
    recorded_s: float
    position_error: float
    angle_error: float
    saved: int
    message: str


class TeleopSession:
    """The operator's episode loop over the env and the store; one call to `tick` per control step."""

    def __init__(self, env, store: EpisodeStore, seed: int = 0):
        self.env = env
        self.store = store
        self.seed = seed
        self.saved = 0
        self.state = "idle"
        self.message = "move the mouse over the scene to drive the pusher"
        self._seeded = False
        self.reset()

    def reset(self, slider_pose: np.ndarray | None = None) -> None:
        """A new start: the given slider pose, or the task sampler's next draw (seeded once per session)."""
        options = {"slider_pose": slider_pose} if slider_pose is not None else None
        self.obs, self.info = self.env.reset(seed=None if self._seeded else self.seed, options=options)
        self._seeded = True
        self.initial_pose = np.asarray(self.info["slider_pose"], dtype=float).copy()
        self.target = np.asarray(self.info["agent_pos"], dtype=float).copy()
        self._clear()
        self.state = "idle"

    def _clear(self) -> None:
        self.recorder = EpisodeRecorder(self.env.unwrapped.sim.camera_names)

    def tick(self, user: TeleopInput) -> bool:
        """Apply one tick of input; return False when the operator quits."""
        commands = user.commands
        if "quit" in commands:
            if self.state != "idle" and len(self.recorder):
                self.message = "quit: the unsaved episode was dropped"
            return False
        if "reset" in commands:
            self.reset()
            self.message = "new start pose"
            return True
        if "discard" in commands and self.state != "idle":
            self.reset()
            self.message = "episode discarded"
            return True
        if "save" in commands and self.state != "idle":
            self._save()
            return True
        if "record" in commands and self.state == "idle":
            self._clear()
            self.state = "recording"
            self.message = "recording"
        if user.target is not None or user.delta is not None:
            target = np.asarray(user.target, dtype=float) if user.target is not None else self.target + user.delta
            self.target = np.clip(target, self.env.action_space.low, self.env.action_space.high)
        if self.state == "done":
            return True  # the scene holds still until the operator saves or discards
        action = self.target.astype(np.float32)
        if self.state == "recording":
            self.recorder.add(self.obs["pixels"], self.info["agent_pos"], self.info["slider_pose"], action)
        self.obs, _, terminated, _, self.info = self.env.step(action)
        if self.state == "recording" and terminated:
            self.state = "done"
            self.message = "success! S: save   D: discard"
        return True

    def _save(self) -> None:
        if not len(self.recorder):
            self.message = "nothing recorded yet"
            return
        episode = self.recorder.episode()
        meta = EpisodeMeta(
            source="teleop",
            domain=self.env.unwrapped.domain.name,
            seed=self.seed,
            initial_pose=tuple(float(v) for v in self.initial_pose),
            success=bool(self.info["is_success"]),
            extra={"duration_s": len(episode["action"]) / self.env.unwrapped.task.control_hz},
        )
        self.store.append_episode(episode, meta)
        self.saved += 1
        steps = len(episode["action"])
        self.reset()
        self.message = f"saved episode {self.store.n_episodes - 1} ({steps} steps)"

    def status(self) -> Status:
        hz = self.env.unwrapped.task.control_hz
        return Status(self.state, len(self.recorder) / hz, float(self.info["goal_pos_error"]),
                      float(self.info["goal_angle_error"]), self.saved, self.message)


def open_store(path: Path, env) -> EpisodeStore:
    """The teleop store at `path`: created on first use, then appended to (same domain and cameras)."""
    domain = env.unwrapped.domain
    size = domain.render.image_size
    return EpisodeStore.open_for_writing(
        path, cameras={name: (size, size) for name in env.unwrapped.sim.camera_names},
        domain_config=domain.model_dump(mode="json"), run={"generator": "teleop", "domain": domain.name},
    )


def run(session: TeleopSession, device: InputDevice, view=None, real_time: bool = True) -> None:
    """The operator loop: poll, tick, draw, at the control rate."""
    period = 1.0 / session.env.unwrapped.task.control_hz
    next_tick = time.perf_counter()
    while True:
        keep_going = session.tick(device.poll())
        if view is not None:
            view.draw(session)
        if not keep_going:
            break
        if real_time:
            next_tick += period
            time.sleep(max(0.0, next_tick - time.perf_counter()))
