"""The policy API evaluation uses: ``load_policy(path)``, ``policy.reset(seed=...)``, ``policy.act(obs)``.

``act`` takes one env observation at a time and returns one absolute pusher xy target. An image
policy takes the ``pixels_agent_pos`` dict, ``{"pixels": {camera: uint8 (H, W, 3)}, "agent_pos": (2,)}``;
a state policy the (5,) ``state`` vector or the ``environment_state_agent_pos`` dict,
``{"environment_state": (3,), "agent_pos": (2,)}``. Inside, observations are flat, as in a training
batch: one key per camera, plus ``agent_pos`` or ``state``. Inside, the last ``n_obs_steps`` observations are queued (the first one repeated at the
start of an episode); when the action queue is empty, the model samples a horizon-long chunk by DDIM
with the EMA weights and the ``n_action_steps`` actions from the current step on are queued.

Several envs stepped in lockstep share one model: ``act_batch(policies, observations)`` (policies made
with ``policy.sibling()``) samples the chunks of all policies whose queues ran out in one batch. The
chunks are sampled in float64 by default (``precision``): float32 kernels round a row differently with
the batch size and position (measured: up to 4e-5 in a U-Net activation between batch 1 and 4), which a
closed loop amplifies. float64 kernels differ between batch sizes too, but some nine digits further
down, so the float32 chunk they round to is in practice the same whatever the batch (the tests check
it). So a trial's actions depend on its own observations and seed alone, as evaluation promises;
float32 is faster.
"""

from __future__ import annotations

import copy
import os
from collections import deque
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from policies.checkpoint import CheckpointError, checkpoint_path, load_checkpoint, model_from_checkpoint
from policies.config import RunConfig
from policies.dataset import center_crop
from policies.export import check_declared_sizes, is_export, load_export
from policies.model import STATE_DIM, DiffusionModel, resolve_device

PRECISIONS = {"float64": torch.float64, "float32": torch.float32}


class PolicyError(Exception):
    """A checkpoint that cannot be loaded or an observation the policy was not trained on; one line."""


class DiffusionPolicy:
    """A trained DiffusionModel with observation and action queues."""

    def __init__(self, model: DiffusionModel, device: torch.device | str = "cpu", run_config: RunConfig | None = None,
                 precision: str = "float64"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.device = torch.device(device)
        self.precision = precision
        if model.dtype != PRECISIONS[precision]:
            model = copy.deepcopy(model)  # the caller's model (a training run's EMA, say) stays as it is
        self.model = model.to(device=self.device, dtype=PRECISIONS[precision]).eval()
        self.run_config = run_config
        self.config = model.config
        self._observations: deque[dict[str, np.ndarray]] = deque(maxlen=self.config.n_obs_steps)
        self._actions: deque[np.ndarray] = deque()
        self._generator = torch.Generator()
        self.reset()

    @property
    def cameras(self) -> dict[str, tuple[int, int]]:
        return dict(self.model.cameras)

    def reset(self, seed: int | None = None) -> None:
        """Empty the queues; ``seed`` fixes the sampling noise of the episode that follows."""
        self._observations.clear()
        self._actions.clear()
        self._generator = torch.Generator()
        if seed is None:
            self._generator.seed()
        else:
            self._generator.manual_seed(int(seed))

    def sibling(self) -> DiffusionPolicy:
        """Another policy on the same model (no copy), with its own queues and generator: one per env."""
        return DiffusionPolicy(self.model, self.device, self.run_config, self.precision)

    def act(self, obs: Mapping[str, np.ndarray] | np.ndarray, generator: torch.Generator | None = None) -> np.ndarray:
        """The next action, float32 (action_dim,); ``generator`` overrides the one reset() seeded."""
        if self.observe(obs):
            self.queue_chunk(self.predict_chunk(list(self._observations), generator or self._generator))
        return self._actions.popleft()

    def observe(self, obs: Mapping[str, np.ndarray] | np.ndarray) -> bool:
        """Queue a checked observation; True if the action queue is empty (a new chunk is due)."""
        observation = self._checked(obs)
        if not self._observations:
            self._observations.extend([observation] * self.config.n_obs_steps)
        else:
            self._observations.append(observation)
        return not self._actions

    def queue_chunk(self, chunk: np.ndarray) -> None:
        """Queue the ``n_action_steps`` actions of a (horizon, action_dim) chunk from the current step on."""
        start = self.config.n_obs_steps - 1  # the chunk starts with the oldest observation
        self._actions.extend(chunk[start : start + self.config.n_action_steps])

    def predict_chunk(self, observations: list[dict[str, np.ndarray]], generator: torch.Generator | None = None) -> np.ndarray:
        """(horizon, action_dim) float32 actions for n_obs_steps consecutive checked observations."""
        return self.predict_chunks([observations], [generator])[0]

    def predict_chunks(self, windows: Sequence[list[dict[str, np.ndarray]]],
                       generators: Sequence[torch.Generator | None]) -> np.ndarray:
        """(B, horizon, action_dim) float32 chunks for B observation windows, each row's noise from its generator."""
        batch = {}
        for key in windows[0][0]:
            stacked = np.stack([np.stack([o[key] for o in window]) for window in windows])
            if key in self.model.crops:
                stacked = center_crop(stacked, self.model.crops[key])
            batch[key] = torch.from_numpy(np.ascontiguousarray(stacked)).to(self.device)
        actions = self.model.sample_actions(batch, list(generators))
        return actions.float().cpu().numpy().astype(np.float32)

    def check_observation_space(self, space) -> None:
        """PolicyError unless an env with this (gymnasium) observation space gives what the policy was trained on.

        Duck-typed: a Dict space has ``spaces``, a Box has ``shape`` and ``dtype``.
        """
        spaces = getattr(space, "spaces", None)
        if self.config.obs_mode == "state":
            if spaces is None and tuple(getattr(space, "shape", ())) == (STATE_DIM,):
                return
            if isinstance(spaces, Mapping) and set(spaces) == {"environment_state", "agent_pos"}:
                if tuple(spaces["environment_state"].shape) == (STATE_DIM - 2,) and tuple(spaces["agent_pos"].shape) == (2,):
                    return
            raise PolicyError(
                f"this policy takes the ({STATE_DIM},) state vector or environment_state (3,) + agent_pos (2,); "
                f"the env gives {space}"
            )
        pixels = spaces.get("pixels") if isinstance(spaces, Mapping) else None
        pixels = getattr(pixels, "spaces", None)
        if not isinstance(pixels, Mapping) or set(spaces) != {"pixels", "agent_pos"} or not set(self.cameras) <= set(pixels):
            keys = _keys(spaces) if isinstance(spaces, Mapping) else type(space).__name__
            raise PolicyError(f"env observations {keys} differ from training: {self._expected_keys()}")
        for name, (height, width) in self.cameras.items():
            box = pixels[name]
            if tuple(box.shape) != (height, width, 3) or np.dtype(box.dtype) != np.uint8:
                raise PolicyError(f"env camera {name!r} is {box.dtype} {tuple(box.shape)}, trained on uint8 {(height, width, 3)}")
        if tuple(spaces["agent_pos"].shape) != (2,):
            raise PolicyError(f"env observation 'agent_pos' has shape {tuple(spaces['agent_pos'].shape)}, trained on (2,)")

    def _checked(self, obs: Mapping[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        """The observation as the flat {key: array} of a training batch, or PolicyError naming what differs."""
        if self.config.obs_mode == "state":
            if isinstance(obs, Mapping):
                if set(obs) != {"environment_state", "agent_pos"}:
                    raise PolicyError(
                        f"this policy takes the ({STATE_DIM},) state vector or a dict of environment_state and "
                        f"agent_pos, got a dict with keys {sorted(obs)}"
                    )
                parts = [np.asarray(obs["agent_pos"], dtype=np.float32), np.asarray(obs["environment_state"], dtype=np.float32)]
                if parts[0].shape != (2,) or parts[1].shape != (STATE_DIM - 2,):
                    raise PolicyError(
                        f"agent_pos (2,) and environment_state ({STATE_DIM - 2},) expected, got {parts[0].shape} and {parts[1].shape}"
                    )
                obs = np.concatenate(parts)
            state = np.asarray(obs, dtype=np.float32)
            if state.shape != (STATE_DIM,) or not np.all(np.isfinite(state)):
                raise PolicyError(f"state observation must be a finite ({STATE_DIM},) vector, got shape {state.shape}")
            return {"state": state}
        if not isinstance(obs, Mapping):
            raise PolicyError(f"this policy takes {self._expected_keys()}, got {type(obs).__name__}")
        pixels = obs.get("pixels")
        if not isinstance(pixels, Mapping) or set(obs) != {"pixels", "agent_pos"} or not set(self.cameras) <= set(pixels):
            raise PolicyError(f"observation keys {_keys(obs)} differ from training: {self._expected_keys()}")
        checked = {}
        for name, (height, width) in self.cameras.items():
            image = np.asarray(pixels[name])
            if image.shape != (height, width, 3) or image.dtype != np.uint8:
                raise PolicyError(
                    f"camera {name!r}: got {image.dtype} {image.shape}, trained on uint8 {(height, width, 3)}"
                )
            checked[name] = image
        agent_pos = np.asarray(obs["agent_pos"], dtype=np.float32)
        if agent_pos.shape != (2,) or not np.all(np.isfinite(agent_pos)):
            raise PolicyError(f"agent_pos must be a finite (2,) vector, got shape {agent_pos.shape}")
        checked["agent_pos"] = agent_pos
        return checked

    def _expected_keys(self) -> str:
        return f"{{'pixels': {{{', '.join(repr(c) for c in sorted(self.cameras))}}}, 'agent_pos'}}"


def act_batch(policies: Sequence[DiffusionPolicy], observations: Sequence[Mapping[str, np.ndarray] | np.ndarray]) -> list[np.ndarray]:
    """The next action of each policy for its observation (one env each, stepped in lockstep).

    The policies whose action queues ran out get their chunks from one batched model call; they must
    share one model (``policy.sibling()``). Each chunk's noise comes from its own policy's generator.
    """
    if len(policies) != len(observations):
        raise ValueError(f"{len(policies)} policies for {len(observations)} observations")
    if any(policy.model is not policies[0].model for policy in policies):
        raise ValueError("act_batch needs policies that share one model: make them with policy.sibling()")
    due = [index for index, (policy, obs) in enumerate(zip(policies, observations)) if policy.observe(obs)]
    if due:
        first = policies[due[0]]
        chunks = first.predict_chunks([list(policies[i]._observations) for i in due], [policies[i]._generator for i in due])
        for index, chunk in zip(due, chunks):
            policies[index].queue_chunk(chunk)
    return [policy._actions.popleft() for policy in policies]


def _keys(observation: Mapping) -> str:
    """The keys of an observation (or a Dict space's spaces), one level of nesting shown."""
    parts = []
    for key in sorted(observation, key=str):
        value = observation[key]
        inner = getattr(value, "spaces", value)  # a nested Dict space, or a nested dict
        parts.append(f"{key!r}: {sorted(inner, key=str)}" if isinstance(inner, Mapping) else repr(key))
    return "{" + ", ".join(parts) + "}"


def load_policy(path: str | os.PathLike, device: str = "auto", weights: str = "ema", precision: str = "float64") -> DiffusionPolicy:
    """The policy saved in a run directory, a checkpoint file or an export directory
    (``python -m policies.export``); weights "ema" (default) or "raw" (not in an export); sampling
    in ``precision`` ("float64", batch-independent, or "float32", faster)."""
    if weights not in ("ema", "raw"):
        raise ValueError(f"weights must be 'ema' or 'raw', got {weights!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    try:
        torch_device = resolve_device(device)
        if is_export(path):  # python -m policies.export: the EMA weights alone
            if weights != "ema":
                raise ValueError(f"{path}: an exported policy holds only the EMA weights")
            payload = load_export(path)
            model = model_from_checkpoint(payload, "ema_model", str(path))
        else:
            payload = load_checkpoint(path, device="cpu")
            key = "ema_model" if weights == "ema" else "model"
            shapes = {name: tuple(tensor.shape) for name, tensor in payload[key].items()}
            check_declared_sizes(checkpoint_path(path), payload, shapes)  # load_export checks its own
            model = model_from_checkpoint(payload, key, str(checkpoint_path(path)))
    except (CheckpointError, ValueError) as error:
        raise PolicyError(str(error)) from None
    return DiffusionPolicy(model, torch_device, payload["run_config"], precision)
