import numpy as np

from pushing_sim.simulation import PushingSim


def _step_refixing_the_input(sim: PushingSim, target: np.ndarray) -> None:
    """The stepping rule written the plain way: fix the PD set-point input anew every substep."""
    max_move = sim.domain.physics.controller.max_speed * sim.control_period
    delta = target - sim._command
    if np.linalg.norm(delta) > max_move:
        delta *= max_move / np.linalg.norm(delta)
    t0, dt = sim.time, sim.control_period / sim.substeps
    for k in range(1, sim.substeps + 1):
        setpoint = sim._command + delta * (k / sim.substeps)
        sim._desired_state_port.FixValue(sim._plant_context, np.concatenate([setpoint, delta / sim.control_period]))
        sim._simulator.AdvanceTo(t0 + k * dt)
    sim._command = sim._command + delta


def test_in_place_set_point_steps_exactly_like_refixing_the_input(goal):
    # If the in-place update stopped notifying the plant, the pusher would not follow and this would differ.
    sims = [PushingSim("target", viewer_size=None) for _ in range(2)]
    start = goal + [0.02, 0.05, 0.3]
    for sim in sims:
        sim.reset(start, np.array([0.587, 0.15]))
    for k in range(1, 16):
        target = np.array([0.6, 0.15 - 0.015 * k])  # straight down onto the T's bar
        sims[0].step(target)
        _step_refixing_the_input(sims[1], target)
        np.testing.assert_array_equal(sims[0].slider_pose(), sims[1].slider_pose())
        np.testing.assert_array_equal(sims[0].pusher_xy(), sims[1].pusher_xy())
    assert np.linalg.norm(sims[0].slider_pose()[:2] - start[:2]) > 0.01  # the push moved the T
    images = [sim.render() for sim in sims]
    for camera in images[0]:
        np.testing.assert_array_equal(images[0][camera], images[1][camera])
