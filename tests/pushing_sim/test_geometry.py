import numpy as np

from pushing_sim import geometry


def _polygon_area_and_centroid(poly):
    x, y = poly[:, 0], poly[:, 1]
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    area = cross.sum() / 2
    cx = ((x + np.roll(x, -1)) * cross).sum() / (6 * area)
    cy = ((y + np.roll(y, -1)) * cross).sum() / (6 * area)
    return area, np.array([cx, cy])


def test_outline_matches_published_dimensions_and_body_frame_is_at_centre_of_mass():
    area, centroid = _polygon_area_and_centroid(geometry.t_polygon())
    assert np.isclose(area, geometry.t_area(), rtol=1e-12)
    # The published sizes overlap bar and stem by 5 micrometres, which the disjoint boxes leave out.
    assert np.isclose(area, 0.1651 * 0.04064 + 0.04064 * 0.12447, rtol=1e-4)
    np.testing.assert_allclose(centroid, 0.0, atol=1e-12)
    stem_bottom = geometry.STEM.center[1] - geometry.STEM.half[1]
    assert np.isclose(geometry.BAR.center[1] - stem_bottom, 0.08255 + 0.12447 / 2)
    assert np.isclose(geometry.STEM.center[1] + geometry.STEM.half[1], geometry.BAR.center[1] - geometry.BAR.half[1])


def test_signed_distance_is_negative_inside_zero_on_the_boundary_and_metric_outside():
    pose = np.array([0.5, -0.1, 0.7])
    inside = geometry.to_world(np.array([0.0, 0.0]), pose)
    assert geometry.distance_to_t(inside, pose) < 0
    corners = geometry.to_world(geometry.t_polygon(), pose)
    np.testing.assert_allclose(geometry.distance_to_t(corners, pose), 0.0, atol=1e-12)
    top_centre = np.array([0.0, geometry.BAR.center[1] + geometry.BAR.half[1] + 0.03])
    assert np.isclose(geometry.distance_to_t(geometry.to_world(top_centre, pose), pose), 0.03)


def test_overlap_area_is_exact():
    pose = np.array([0.5, -0.1, 0.7])
    assert np.isclose(geometry.t_overlap_area(pose, pose), geometry.t_area(), rtol=1e-12)
    # Shift along the bar by 1 cm: the bar loses 1 cm x its height, the stem 1 cm x its length.
    shifted = pose + [0.01 * np.cos(0.7), 0.01 * np.sin(0.7), 0.0]
    lost = 0.01 * (geometry.BAR.size[1] + geometry.STEM.size[1])
    assert np.isclose(geometry.t_overlap_area(pose, shifted), geometry.t_area() - lost, rtol=1e-9)
    assert geometry.t_overlap_area(pose, pose + [1.0, 0, 0]) == 0.0


def test_body_and_world_maps_are_inverse():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(10, 2))
    pose = np.array([0.3, 0.2, -2.0])
    np.testing.assert_allclose(geometry.to_body(geometry.to_world(points, pose), pose), points, atol=1e-12)
