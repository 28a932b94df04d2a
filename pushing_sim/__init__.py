"""Drake simulation of planar T pushing: scene, domains, task and the Gymnasium env.

Importing this package registers `pushing_sim/PlanarPushing-v0` with Gymnasium and imports no Drake;
the env module (and Drake) load only when the env is made.
"""

import gymnasium

ENV_ID = "pushing_sim/PlanarPushing-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(
        id=ENV_ID,
        entry_point="pushing_sim.env:PlanarPushingEnv",
        max_episode_steps=750,  # 75 s at 10 Hz, the task's timeout
    )
