"""The demo's camera_views.png: every panel titled with its domain and view."""

from __future__ import annotations

import numpy as np

from pushing_sim.demo import camera_views_figure


def test_each_view_is_titled_with_its_domain_and_view(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    views = {domain: {"overhead camera": image, "wrist camera": image + 50, "human view (goal in green)": image + 100}
             for domain in ("target", "sim")}  # fmt: skip
    figure = camera_views_figure(views)
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == [f"{d}: {v}" for d in ("target", "sim") for v in ("overhead camera", "wrist camera", "human view (goal in green)")]
    assert [int(ax.images[0].get_array().max()) for ax in figure.axes[:3]] == [0, 50, 100]  # each panel shows its own view
    figure.savefig(tmp_path / "camera_views.png")
    assert (tmp_path / "camera_views.png").read_bytes()[:4] == b"\x89PNG"
