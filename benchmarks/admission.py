"""The admission sampler at the published data size: P(clean | t) per order, and its speed.

    python benchmarks/admission.py [--clean-episodes 50] [--corrupt-episodes 2000] [--windows 150]
                                   [--alpha 0.5] [--mean-t-min 19] [--spread 8]

Per-sample sigma_min is drawn so that each window's first admissible step t_min is normal around
``--mean-t-min`` (the published classifiers averaged 18-20 of 100 DDPM steps). Prints P(clean | t)
of the sample-first and step-first orders next to what the step-first sampler gave before the fix
(alpha wherever any corrupt window was admissible), then the time to build the sampler and to draw
a batch of 256.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from policies.ambient import AdmissionSampler
from policies.noise import ddpm_sigmas, first_admissible_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clean-episodes", type=int, default=50)
    parser.add_argument("--corrupt-episodes", type=int, default=2000)
    parser.add_argument("--windows", type=int, default=150, help="windows per episode")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--mean-t-min", type=float, default=19.0)
    parser.add_argument("--spread", type=float, default=8.0)
    args = parser.parse_args()

    sigmas = ddpm_sigmas()
    n_clean, n_corrupt = args.clean_episodes * args.windows, args.corrupt_episodes * args.windows
    t_min = np.clip(np.round(np.random.default_rng(0).normal(args.mean_t_min, args.spread, n_corrupt)), 0, 99).astype(int)
    sigma_min = np.where(t_min > 0, sigmas[np.maximum(t_min - 1, 0)], 0.0)  # so that t_min is its first admissible step
    assert np.array_equal(first_admissible_step(sigma_min, sigmas), t_min)

    built, build_seconds = {}, {}
    for order in ("sample_first", "step_first"):
        start = time.perf_counter()
        built[order] = AdmissionSampler(sigmas, n_clean, n_corrupt, alpha=args.alpha, corrupt_sigma_min=sigma_min, order=order)
        build_seconds[order] = time.perf_counter() - start
    sampler = built["sample_first"]
    before = np.where(sampler.num_admissible_corrupt > 0, args.alpha, 1.0)
    print(f"{n_clean} clean + {n_corrupt} corrupt windows, alpha {args.alpha}, mean t_min {t_min.mean():.1f}")
    print(f"{'t':>3} {'sigma_t':>8} {'admissible':>10} {'before':>7} {'sample-first':>12} {'step-first':>10}")
    for t in (0, 2, 5, 10, 15, 19, 25, 30, 40, 60, 99):
        print(f"{t:3d} {sigmas[t]:8.3f} {sampler.num_admissible_corrupt[t] / n_corrupt:10.3f} {before[t]:7.3f} "
              f"{built['sample_first'].clean_probability()[t]:12.3f} {built['step_first'].clean_probability()[t]:10.3f}")
    rng = np.random.default_rng(0)
    for order, s in built.items():
        start = time.perf_counter()
        for _ in range(200):
            s.sample(256, rng)
        print(f"{order}: built in {build_seconds[order]:.3f} s, {1e3 * (time.perf_counter() - start) / 200:.3f} ms per batch of 256")


if __name__ == "__main__":
    main()
