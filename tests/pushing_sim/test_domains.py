import pytest

from pushing_sim.domains import DomainConfig, DomainError, PhysicsConfig, load_domain, sim_domain, target_domain


@pytest.mark.parametrize("make", [target_domain, sim_domain])
def test_builtin_domains_round_trip_through_yaml(make):
    domain = make()
    assert DomainConfig.from_yaml(domain.to_yaml()) == domain


def test_domains_differ_where_the_science_says(tmp_path):
    target, sim = target_domain(), sim_domain()
    assert target.render.shadows and not sim.render.shadows
    # sim keeps the GCS planner's nominal model; target's true physics differ from it (shifted mass)
    assert sim.physics == PhysicsConfig() and target.physics.com_offset_y < -0.01
    assert target.physics.model_copy(update={"com_offset_y": 0.0}) == sim.physics
    assert target.render.cameras["overhead"].position != sim.render.cameras["overhead"].position
    assert target.render.lights[0].color != sim.render.lights[0].color


def test_yaml_file_and_overrides(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(sim_domain().model_copy(update={"name": "mine"}).to_yaml())
    domain = load_domain(path, ["physics.com_offset_y=-0.05", "render.shadows=true", "render.image_size=64"])
    assert domain.name == "mine"
    assert domain.physics.com_offset_y == -0.05
    assert domain.render.shadows is True
    assert domain.render.image_size == 64
    # Overrides leave the rest alone.
    assert domain.physics.table_friction == sim_domain().physics.table_friction


@pytest.mark.parametrize(
    "spec, overrides, message",
    [
        ("moon", [], "unknown domain 'moon'"),
        ("target", ["physics.gravity=3"], "unknown field 'physics.gravity'"),
        ("target", ["physics.com_offset_y"], "not of the form"),
        ("target", ["render.image_size=-3"], "image_size"),
        ("target", ["physics.time_step=abc"], "time_step"),
        ("missing.yaml", [], "does not exist"),
    ],
)
def test_bad_domains_are_clear_one_line_errors(spec, overrides, message):
    with pytest.raises(DomainError, match=message) as error:
        load_domain(spec, overrides)
    assert "\n" not in str(error.value)


def test_a_damaged_yaml_file_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nphysics: [1, 2\n")
    with pytest.raises(DomainError, match="not a valid domain config"):
        load_domain(path)
    path.write_text("name: x\nphysics:\n  friction_of_the_moon: 1\n")
    with pytest.raises(DomainError, match="friction_of_the_moon"):
        load_domain(path)
