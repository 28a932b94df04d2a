"""Drake simulation of planar T pushing: scene, domains, task and the Gymnasium env.

    from pushing_sim import ENV_ID, PlanarPushingEnv, load_domain, TaskConfig

Importing this package registers `pushing_sim/PlanarPushing-v0` with Gymnasium and imports no Drake;
the env module (and Drake) load only when the env is made, or its class first named (PEP 562).
"""

from __future__ import annotations

from data_gen.public_names import lazy_exports

import gymnasium

ENV_ID = "pushing_sim/PlanarPushing-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(
        id=ENV_ID,
        entry_point="pushing_sim.env:PlanarPushingEnv",
        max_episode_steps=750,  # 75 s at 10 Hz, the task's timeout
    )

# public name -> (module, its name there)
_EXPORTS = {
    "PlanarPushingEnv": ("pushing_sim.env", "PlanarPushingEnv"),
    "DomainConfig": ("pushing_sim.domains", "DomainConfig"),
    "DomainError": ("pushing_sim.domains", "DomainError"),
    "load_domain": ("pushing_sim.domains", "load_domain"),
    "target_domain": ("pushing_sim.domains", "target_domain"),
    "sim_domain": ("pushing_sim.domains", "sim_domain"),
    "TaskConfig": ("pushing_sim.task", "TaskConfig"),
}
__all__ = ["ENV_ID", *sorted(_EXPORTS)]

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
