"""Builds the Drake Diagram of the pushing scene for one domain and returns it with named handles.

Table (top at z = 0), the T slider (a free body, two compliant hydroelastic boxes, body frame at the
geometric centre of mass), and a cylinder pusher on two prismatic joints whose actuators carry Drake's
implicit PD gains (stable at large time steps). Cameras are RgbdSensors evaluated on demand, never
published periodically, so a physics step costs no rendering.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydrake.geometry import (
    AddCompliantHydroelasticProperties,
    AddCompliantHydroelasticPropertiesForHalfSpace,
    AddContactMaterial,
    AddRigidHydroelasticProperties,
    Box,
    ClippingRange,
    CollisionFilterDeclaration,
    ColorRenderCamera,
    Cylinder,
    DepthRange,
    DepthRenderCamera,
    GeometryInstance,
    GeometrySet,
    HalfSpace,
    IllustrationProperties,
    LightParameter,
    MakeRenderEngineVtk,
    PerceptionProperties,
    ProximityProperties,
    RenderCameraCore,
    RenderEngineVtkParams,
    Rgba,
    SceneGraph,
)
from pydrake.math import RigidTransform, RotationMatrix
from pydrake.multibody.plant import (
    AddMultibodyPlant,
    CoulombFriction,
    MultibodyPlant,
    MultibodyPlantConfig,
)
from pydrake.multibody.parsing import Parser
from pydrake.multibody.tree import (
    PdControllerGains,
    PrismaticJoint,
    RotationalInertia,
    SpatialInertia,
    UnitInertia,
)
from pydrake.systems.framework import Diagram, DiagramBuilder
from pydrake.systems.sensors import CameraInfo, RgbdSensor

from pushing_sim import geometry
from pushing_sim.domains import CameraConfig, DomainConfig, LightConfig
from pushing_sim.task import TaskConfig

class _DropHalfSpaceDeformableWarning(logging.Filter):
    """Drake warns that rigid half spaces take no part in deformable contact; this scene has no deformables."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "half spaces are not currently supported for deformable contact" not in record.getMessage()


logging.getLogger("drake").addFilter(_DropHalfSpaceDeformableWarning())

POLICY_RENDERER = "policy"
VIEWER_RENDERER = "viewer"
TABLE_SIZE = (1.0, 0.8, 0.05)  # m; finite so that directional-light shadow maps stay sharp


@dataclass
class Scene:
    """The built Diagram and the handles the simulation needs."""

    diagram: Diagram
    plant: MultibodyPlant
    scene_graph: SceneGraph
    slider: object  # RigidBody
    pusher_joints: tuple[PrismaticJoint, PrismaticJoint]
    pusher_instance: object  # ModelInstanceIndex
    cameras: dict[str, RgbdSensor]  # empty when built without policy cameras
    viewer: RgbdSensor | None  # the larger view for people; None when not asked for


def _rgba(rgb) -> Rgba:
    return Rgba(*rgb, 1.0)


def _perception(rgb) -> PerceptionProperties:
    props = PerceptionProperties()
    props.AddProperty("phong", "diffuse", _rgba(rgb))
    return props


def _add_visual(plant, body, X, shape, name: str, rgb) -> None:
    """One visual geometry with an illustration role (Meshcat) and a perception role (cameras)."""
    instance = GeometryInstance(X, shape, name)
    illustration = IllustrationProperties()
    illustration.AddProperty("phong", "diffuse", _rgba(rgb))
    instance.set_illustration_properties(illustration)
    instance.set_perception_properties(_perception(rgb))
    plant.RegisterVisualGeometry(body, instance)


def _pair_friction(pair_value: float) -> CoulombFriction:
    """Per-geometry friction that Drake's combination rule 2ab/(a+b) maps, with the slider's 1.0, to `pair_value`."""
    mu = pair_value / (2.0 - pair_value)
    return CoulombFriction(mu, mu)


def slider_inertia(mass: float, com_offset: tuple[float, float]) -> SpatialInertia:
    """The uniform T's inertia about its centre of mass, with the centre of mass moved by `com_offset`."""
    total_area = geometry.t_area()
    inertia_about_com = np.zeros((3, 3))
    for box in geometry.T_BOXES:
        box_mass = mass * box.size[0] * box.size[1] / total_area
        unit = UnitInertia.SolidBox(box.size[0], box.size[1], geometry.SLIDER_HEIGHT)
        offset = np.array([*box.center, 0.0])
        # Parallel-axis theorem: the boxes' centres sit off the T's centre of mass.
        inertia_about_com += box_mass * unit.CopyToFullMatrix3() + box_mass * (offset @ offset * np.eye(3) - np.outer(offset, offset))
    I = RotationalInertia(inertia_about_com[0, 0], inertia_about_com[1, 1], inertia_about_com[2, 2],
                          inertia_about_com[0, 1], inertia_about_com[0, 2], inertia_about_com[1, 2])
    return SpatialInertia.MakeFromCentralInertia(mass, np.array([*com_offset, 0.0]), I)


def look_at(position, target, up) -> RigidTransform:
    """Pose of a Drake camera (z forward, y down in the image) at `position` looking at `target`."""
    position, target, up = (np.asarray(v, dtype=float) for v in (position, target, up))
    forward = target - position
    forward /= np.linalg.norm(forward)
    down = -(up - up @ forward * forward)
    if np.linalg.norm(down) < 1e-9:
        raise ValueError("camera 'up' is parallel to its viewing direction")
    down /= np.linalg.norm(down)
    right = np.cross(down, forward)
    return RigidTransform(RotationMatrix(np.column_stack([right, down, forward])), position)


def _light(light: LightConfig) -> LightParameter:
    return LightParameter(
        type=light.type,
        color=_rgba(light.color),
        intensity=light.intensity,
        direction=np.asarray(light.direction, dtype=float),
        position=np.asarray(light.position, dtype=float),
        frame="world",
        cone_angle=light.cone_angle_deg,
    )


def _renderer_params(domain: DomainConfig, for_viewer: bool) -> RenderEngineVtkParams:
    render = domain.render
    params = RenderEngineVtkParams()
    params.lights = [_light(light) for light in render.lights]
    params.cast_shadows = render.shadows
    params.shadow_map_size = render.shadow_map_size if not for_viewer else max(render.shadow_map_size, 1024)
    params.default_clear_color = np.asarray(render.background, dtype=float)
    return params


def _camera_model(size: int, fov_deg: float, renderer: str) -> tuple[ColorRenderCamera, DepthRenderCamera]:
    core = RenderCameraCore(renderer, CameraInfo(size, size, np.radians(fov_deg)), ClippingRange(0.01, 5.0), RigidTransform())
    return ColorRenderCamera(core, False), DepthRenderCamera(core, DepthRange(0.02, 4.0))


def _add_camera(builder, scene_graph, plant, pusher_body, camera: CameraConfig, size: int, renderer: str) -> RgbdSensor:
    parent = scene_graph.world_frame_id() if camera.mount == "world" else plant.GetBodyFrameIdOrThrow(pusher_body.index())
    color, depth = _camera_model(size, camera.fov_deg, renderer)
    sensor = builder.AddSystem(RgbdSensor(parent, look_at(camera.position, camera.target, camera.up), color, depth))
    builder.Connect(scene_graph.get_query_output_port(), sensor.query_object_input_port())
    return sensor


def _add_table(plant: MultibodyPlant, domain: DomainConfig, task: TaskConfig):
    physics = domain.physics
    # For contact the table is a compliant half space (z <= 0): Drake treats it analytically, so the
    # pressure field under the rigid T (which shapes its friction, the limit surface) costs little.
    props = ProximityProperties()
    AddCompliantHydroelasticPropertiesForHalfSpace(0.01, physics.hydroelastic_modulus, props)
    AddContactMaterial(dissipation=physics.hunt_crossley_dissipation,
                       friction=_pair_friction(physics.table_friction), properties=props)
    table = plant.RegisterCollisionGeometry(plant.world_body(), RigidTransform(), HalfSpace(), "table", props)
    centre = RigidTransform([task.goal_pose[0], task.goal_pose[1], -TABLE_SIZE[2] / 2])
    _add_visual(plant, plant.world_body(), centre, Box(*TABLE_SIZE), "table_visual", domain.render.table_color)
    return table


def _add_slider(plant: MultibodyPlant, domain: DomainConfig):
    physics = domain.physics
    instance = plant.AddModelInstance("slider")
    inertia = slider_inertia(physics.slider_mass, (physics.com_offset_x, physics.com_offset_y))
    body = plant.AddRigidBody("slider", instance, inertia)
    for i, box in enumerate(geometry.T_BOXES):
        X = RigidTransform([*box.center, 0.0])
        shape = Box(box.size[0], box.size[1], geometry.SLIDER_HEIGHT)
        props = ProximityProperties()
        AddRigidHydroelasticProperties(props)
        AddContactMaterial(friction=CoulombFriction(1.0, 1.0), properties=props)
        plant.RegisterCollisionGeometry(body, X, shape, f"slider_{i}", props)
        _add_visual(plant, body, X, shape, f"slider_{i}_visual", domain.render.slider_color)
    return body


def _add_pusher(plant: MultibodyPlant, domain: DomainConfig):
    controller = domain.physics.controller
    instance = plant.AddModelInstance("pusher")
    carriage = plant.AddRigidBody("pusher_carriage", instance, SpatialInertia.SolidSphereWithMass(0.1, 0.01))
    pusher = plant.AddRigidBody(
        "pusher", instance,
        SpatialInertia.SolidCylinderWithMass(controller.pusher_mass, geometry.PUSHER_RADIUS, geometry.PUSHER_HEIGHT, [0, 0, 1]),
    )
    joint_x = plant.AddJoint(PrismaticJoint("pusher_x", plant.world_frame(), carriage.body_frame(), [1, 0, 0]))
    joint_y = plant.AddJoint(PrismaticJoint("pusher_y", carriage.body_frame(), pusher.body_frame(), [0, 1, 0]))
    for joint in (joint_x, joint_y):
        actuator = plant.AddJointActuator(joint.name(), joint)
        actuator.set_controller_gains(PdControllerGains(p=controller.kp, d=controller.kd))
    X = RigidTransform([0, 0, geometry.PUSHER_CLEARANCE + geometry.PUSHER_HEIGHT / 2])
    shape = Cylinder(geometry.PUSHER_RADIUS, geometry.PUSHER_HEIGHT)
    props = ProximityProperties()
    # A compliant cylinder against the rigid T; ~3 mm edges give a good circle against its sides.
    AddRigidHydroelasticProperties(0.003, props)
    AddContactMaterial(dissipation=domain.physics.hunt_crossley_dissipation,
                       friction=_pair_friction(domain.physics.pusher_friction), properties=props)
    collision = plant.RegisterCollisionGeometry(pusher, X, shape, "pusher", props)
    _add_visual(plant, pusher, X, shape, "pusher_visual", domain.render.pusher_color)
    return pusher, (joint_x, joint_y), instance, collision


def _goal_marker_sdf() -> str:
    """SDF of a flat green T; SDF because only its parser can restrict a visual to one renderer."""
    visuals = []
    for i, box in enumerate(geometry.T_BOXES):
        visuals.append(f"""
      <visual name="goal_{i}">
        <pose>{box.center[0]} {box.center[1]} 0.0005 0 0 0</pose>
        <geometry><box><size>{box.size[0]} {box.size[1]} 0.001</size></box></geometry>
        <material><diffuse>0.3 0.8 0.35 0.6</diffuse></material>
        <drake:accepting_renderer>{VIEWER_RENDERER}</drake:accepting_renderer>
      </visual>""")
    return f"""<?xml version="1.0"?>
<sdf version="1.9" xmlns:drake="http://drake.mit.edu">
  <model name="goal_marker">
    <link name="goal">{"".join(visuals)}
    </link>
  </model>
</sdf>"""


def _add_goal_marker(plant: MultibodyPlant, task: TaskConfig) -> None:
    """A flat green T at the goal, seen by people (viewer camera, Meshcat), never by the policy's cameras."""
    instance = Parser(plant).AddModelsFromString(_goal_marker_sdf(), "sdf")[0]
    X_goal = RigidTransform(RotationMatrix.MakeZRotation(task.goal_pose[2]), [task.goal_pose[0], task.goal_pose[1], 0.0])
    plant.WeldFrames(plant.world_frame(), plant.GetFrameByName("goal", instance), X_goal)


VIEWER_CAMERA = CameraConfig(position=(0.587, -0.0355, 0.9), target=(0.587, -0.0355, 0.0), up=(0.0, 1.0, 0.0), fov_deg=40.0)


def overhead_pixel_scale(camera: CameraConfig, size: int) -> float:
    """Pixels per metre on the table for a straight-down camera (world +x right, +y up in the image)."""
    return size / (2 * camera.position[2] * np.tan(np.radians(camera.fov_deg) / 2))


def table_to_pixel(camera: CameraConfig, size: int, xy) -> tuple[float, float]:
    """(column, row) of a table point in a straight-down camera's image, in pixel units."""
    scale = overhead_pixel_scale(camera, size)
    return size / 2 + (xy[0] - camera.position[0]) * scale, size / 2 - (xy[1] - camera.position[1]) * scale


def pixel_to_table(camera: CameraConfig, size: int, column: float, row: float) -> np.ndarray:
    """The table point (x, y) seen at a pixel of a straight-down camera: the inverse of table_to_pixel."""
    scale = overhead_pixel_scale(camera, size)
    return np.array([camera.position[0] + (column - size / 2) / scale, camera.position[1] - (row - size / 2) / scale])


def build_scene(domain: DomainConfig, task: TaskConfig | None = None, viewer_size: int | None = 384,
                policy_cameras: bool | Sequence[str] = True) -> Scene:
    """Build the Diagram for `domain` (once per env).

    `viewer_size=None` leaves out the viewer camera and its renderer: every renderer pays for each
    pose update, so envs that never call render() skip it. `policy_cameras=False` leaves out the
    policy's cameras and their renderer the same way (state observations need no images); a list of
    names builds those of the domain's cameras alone (a policy that reads one camera need not pay
    for the others). An unknown name is a ValueError.
    """
    names = list(domain.render.cameras) if policy_cameras is True else list(policy_cameras or ())
    unknown = [name for name in names if name not in domain.render.cameras]
    if unknown:
        raise ValueError(f"domain {domain.name!r} has no camera {', '.join(map(repr, unknown))} (its cameras: {', '.join(domain.render.cameras)})")
    task = task or TaskConfig()
    physics = domain.physics
    builder = DiagramBuilder()
    plant, scene_graph = AddMultibodyPlant(
        MultibodyPlantConfig(
            time_step=physics.time_step,
            contact_model=physics.contact_model,
            discrete_contact_approximation=physics.discrete_contact_approximation,
        ),
        builder,
    )
    table = _add_table(plant, domain, task)
    slider = _add_slider(plant, domain)
    pusher, joints, pusher_instance, pusher_geometry = _add_pusher(plant, domain)
    _add_goal_marker(plant, task)
    plant.Finalize()
    scene_graph.collision_filter_manager().Apply(
        CollisionFilterDeclaration().ExcludeBetween(GeometrySet(table), GeometrySet(pusher_geometry))
    )

    cameras = {}
    if names:
        scene_graph.AddRenderer(POLICY_RENDERER, MakeRenderEngineVtk(_renderer_params(domain, for_viewer=False)))
        size = domain.render.image_size
        cameras = {
            name: _add_camera(builder, scene_graph, plant, pusher, domain.render.cameras[name], size, POLICY_RENDERER)
            for name in names
        }
        for name, sensor in cameras.items():
            sensor.set_name(f"camera_{name}")
    viewer = None
    if viewer_size is not None:
        scene_graph.AddRenderer(VIEWER_RENDERER, MakeRenderEngineVtk(_renderer_params(domain, for_viewer=True)))
        viewer = _add_camera(builder, scene_graph, plant, pusher, VIEWER_CAMERA, viewer_size, VIEWER_RENDERER)
        viewer.set_name("camera_viewer")
    diagram = builder.Build()
    diagram.set_name(f"pushing_{domain.name}")
    return Scene(diagram, plant, scene_graph, slider, joints, pusher_instance, cameras, viewer)
