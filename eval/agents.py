"""What the evaluation harness can run: a trained checkpoint, the closed-loop GCS expert, or random actions.

Every agent has `reset(seed)` and `act(obs, info) -> action`; `info` is the env's info dict, which only
the privileged expert reads (it plans from the true slider pose).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pushing_sim.task import TaskConfig


class AgentError(ValueError):
    """An agent that cannot run in this env (bad checkpoint, other cameras or image sizes)."""


class RandomAgent:
    """Uniform random pusher targets over the workspace: the floor any policy must beat."""

    def __init__(self, action_space):
        self._space = action_space
        self.low, self.high = action_space.low, action_space.high
        self.rng = np.random.default_rng(0)

    def sibling(self) -> RandomAgent:
        """The same agent for another env."""
        return RandomAgent(self._space)

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, obs, info) -> np.ndarray:
        return self.rng.uniform(self.low, self.high).astype(np.float32)


class GCSExpert:
    """The GCS planner in closed loop: plan from the true state, re-plan every `replan_every` steps."""

    def __init__(self, task: TaskConfig, replan_every: int = 20, planner_config=None):
        from data_gen.planner import PlannerConfig

        self.task = task
        self.replan_every = replan_every
        self.planner_config = planner_config or PlannerConfig()
        self.queue: list[np.ndarray] = []
        self.steps = 0
        self.failures = 0

    def sibling(self) -> GCSExpert:
        """The same expert for another env."""
        return GCSExpert(self.task, self.replan_every, self.planner_config)

    def reset(self, seed: int) -> None:
        self.queue, self.steps, self.failures = [], 0, 0

    def _replan(self, slider_pose: np.ndarray, pusher_xy: np.ndarray) -> None:
        from data_gen.planner import PlanningError, plan_push

        try:
            plan = plan_push(slider_pose, self.task, self.planner_config, pusher_xy=pusher_xy)
            targets = plan.pusher_targets(self.task.control_hz)
        except PlanningError:
            self.failures += 1
            return
        self.queue = [np.asarray(t, dtype=np.float32) for t in targets[1:]]

    def act(self, obs, info) -> np.ndarray:
        if not self.queue or self.steps % self.replan_every == 0:
            self._replan(np.asarray(info["slider_pose"]), np.asarray(info["agent_pos"]))
        self.steps += 1
        if self.queue:
            return self.queue.pop(0)
        return np.asarray(info["agent_pos"], dtype=np.float32)  # no plan: hold still


class CheckpointAgent:
    """A trained diffusion policy loaded from a checkpoint (no code runs at load time)."""

    def __init__(self, path: Path | None, device: str = "cpu", precision: str = "float64", policy=None):
        from policies.policy import PolicyError, load_policy

        if policy is not None:  # a sibling: the same model, its own queues
            self.policy = policy
            return
        try:
            self.policy = load_policy(path, device=device, precision=precision)
        except PolicyError as error:
            raise AgentError(str(error)) from None

    def sibling(self) -> CheckpointAgent:
        """An agent for another env on the same model (one batched call serves them all)."""
        return CheckpointAgent(None, policy=self.policy.sibling())

    @property
    def obs_type(self) -> str:
        """The env observation layout the policy was trained on."""
        return "state" if self.policy.config.obs_mode == "state" else "pixels_agent_pos"

    def check(self, observation_space) -> None:
        from policies.policy import PolicyError

        try:
            self.policy.check_observation_space(observation_space)
        except PolicyError as error:
            raise AgentError(str(error)) from None

    def reset(self, seed: int) -> None:
        self.policy.reset(seed=seed)

    def act(self, obs, info) -> np.ndarray:
        return self.policy.act(obs)


def make_env_and_agent(kind: str, env_kwargs: dict, ckpt: Path | None = None, device: str = "cpu", precision: str = "float64"):
    """The agent named `kind` ('ckpt', 'gcs' or 'random') and an env built for it (``make_env``).

    precision: a checkpoint's sampling precision (``policies.policy.PRECISIONS``).
    """
    if kind not in ("ckpt", "gcs", "random"):
        raise AgentError(f"unknown policy {kind!r}: use ckpt, gcs or random")
    if kind == "ckpt":
        if ckpt is None:
            raise AgentError("--policy ckpt needs --ckpt PATH")
        agent = CheckpointAgent(ckpt, device, precision)
        return make_env(agent, env_kwargs), agent
    env = make_env(None, env_kwargs)
    agent = RandomAgent(env.action_space) if kind == "random" else GCSExpert(env.unwrapped.task)
    return env, agent


def make_env(agent, env_kwargs: dict):
    """An env for ``agent``: a checkpoint decides its observations (images or the state vector, checked);
    the others (None before they exist) take the default image observations (the expert reads the
    true state from ``info``)."""
    import gymnasium

    import pushing_sim

    if isinstance(agent, CheckpointAgent):
        if agent.obs_type != "state" and "cameras" not in env_kwargs:  # render the cameras it reads, no others
            env_kwargs = {**env_kwargs, "cameras": list(agent.policy.cameras)}
        env = gymnasium.make(pushing_sim.ENV_ID, obs_type=agent.obs_type, **env_kwargs)
        agent.check(env.observation_space)
        return env
    return gymnasium.make(pushing_sim.ENV_ID, **env_kwargs)
