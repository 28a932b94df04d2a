"""The small default job: drive the env with a scripted pusher in both domains, save views and a video.

    python -m pushing_sim.demo [--out out/demo] [--domains target sim]

It shows that the simulator works end to end on a fresh machine: physics, both domains' cameras,
the success check, the human view with the goal drawn, and the video writer.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import gymnasium
import imageio.v3 as iio
import numpy as np
from tqdm import tqdm

from pushing_sim import ENV_ID, geometry


def straight_push_targets(goal: np.ndarray, start_offset_y: float) -> list[np.ndarray]:
    """Pusher targets for a T placed `start_offset_y` above its goal: come down on the bar, push to the goal."""
    top = geometry.BAR.center[1] + geometry.BAR.half[1] + geometry.PUSHER_RADIUS
    above = np.array([goal[0], goal[1] + start_offset_y + top + 0.01])
    finish = np.array([goal[0], goal[1] + top - 0.002])
    return list(np.linspace([goal[0], 0.15], above, 5)) + list(np.linspace(above, finish, 40)) + [finish] * 20


def run_domain(domain: str, out: Path, offset_y: float = 0.06) -> dict:
    """One scripted episode in `domain`; writes its video and returns a summary."""
    env = gymnasium.make(ENV_ID, domain=domain, render_mode="rgb_array")
    goal = np.array(env.unwrapped.task.goal_pose)
    obs, info = env.reset(seed=0, options={"slider_pose": goal + [0.0, offset_y, 0.0]})
    frames, cameras = [env.render()], obs["pixels"]
    start = time.perf_counter()
    steps = 0
    for action in tqdm(straight_push_targets(goal, offset_y), desc=f"push ({domain})", unit="step", leave=False):
        obs, reward, terminated, truncated, info = env.step(action)
        frames.append(env.render())
        steps += 1
        if terminated or truncated:
            break
    elapsed = time.perf_counter() - start
    iio.imwrite(out / f"push_{domain}.mp4", np.stack(frames), fps=env.metadata["render_fps"])
    env.close()
    return {
        "domain": domain,
        "success": bool(info["is_success"]),
        "steps": steps,
        "position_error_mm": 1e3 * info["goal_pos_error"],
        "angle_error_deg": float(np.degrees(info["goal_angle_error"])),
        "coverage": info["coverage"],
        "steps_per_s_with_video": steps / elapsed,
        "first_views": cameras,
        "first_render": frames[0],
    }


def camera_views_figure(views: dict[str, dict[str, np.ndarray]]):
    """One row per domain, one panel per view, each titled with its domain and view (as docs/domains.png's caption reads).

    views: domain -> view name -> RGB image; the views of each domain in the same order.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, columns = len(views), max(len(v) for v in views.values())
    figure, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.8 * rows), squeeze=False)
    for row, (domain, images) in zip(axes, views.items()):
        for ax, (name, image) in zip(row, images.items()):
            ax.imshow(image, interpolation="nearest")
            ax.set_title(f"{domain}: {name}", fontsize=10)
        for ax in row:
            ax.axis("off")
    figure.tight_layout()
    return figure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Scripted pushes in each domain; writes views and videos.")
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    parser.add_argument("--domains", nargs="+", default=["target", "sim"])
    args = parser.parse_args(argv)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"error: cannot create {args.out}: {error.strerror}", file=sys.stderr)
        return 2
    results = [run_domain(domain, args.out) for domain in args.domains]
    views = {r["domain"]: {f"{name} camera": image for name, image in r["first_views"].items()}
             | {"human view (goal in green)": r["first_render"]} for r in results}  # fmt: skip
    figure = camera_views_figure(views)
    figure.savefig(args.out / "camera_views.png", dpi=100)
    figure.clear()

    print(f"{'domain':8} {'success':>7} {'steps':>5} {'pos err mm':>10} {'angle deg':>9} {'coverage':>8}")
    for r in results:
        print(f"{r['domain']:8} {str(r['success']):>7} {r['steps']:5d} {r['position_error_mm']:10.1f} "
              f"{r['angle_error_deg']:9.2f} {r['coverage']:8.3f}")
    print(f"wrote {args.out}/camera_views.png and push_<domain>.mp4")
    return 0 if all(r["success"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
