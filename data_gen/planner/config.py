"""The planner's settings (a pydantic model that round-trips to YAML/JSON) and its error type."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class PlanningError(RuntimeError):
    """The planner found no plan; the message says why."""


class PlannerConfig(BaseModel):
    """Contact-mode discretisation, costs, speeds and solver of the GCS pushing planner."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Contact modes: (face, orientation interval). Rotation is linearised at each interval's centre.
    interval_deg: float = Field(20.0, gt=0, le=90)
    # Modes (contact switches + 1) allowed per orientation interval, and in the goal's interval.
    layers: int = Field(2, ge=1)
    goal_layers: int = Field(4, ge=1)
    corner_margin: float = Field(0.004, ge=0, description="m kept free of contact at convex corners")
    # Contact stays this far from a concave corner; must exceed pusher radius + clearance.
    concave_margin: float = Field(0.023, gt=0)
    max_push_per_mode: float = Field(0.4, gt=0, description="m of pusher travel in one mode")
    workspace_margin: float = Field(0.1, ge=0, description="m the slider may leave the init box by")

    # Costs are in seconds of execution: travel / speed, plus a penalty per contact switch.
    push_speed: float = Field(0.1, gt=0, description="m/s of the pusher while pushing")
    reposition_speed: float = Field(0.15, gt=0, description="m/s of the pusher while repositioning")
    switch_cost: float = Field(1.0, ge=0, description="s added per contact switch")

    # Repositioning geometry.
    clearance: float = Field(0.003, gt=0, description="m kept between pusher and T while repositioning")
    standoff: float = Field(0.005, gt=0, description="m the pusher backs off a face along its normal")

    # Solving.
    solver: Literal["clarabel", "scs", "mosek", "auto"] = "clarabel"
    solver_tolerance: float = Field(1e-6, gt=0)
    max_rounded_paths: int = Field(10, ge=1)
    rounding_seed: int = 0
    # When no rounded path is feasible: flow added to every edge, and how many paths to sample then.
    exploration_flow: float = Field(0.05, gt=0)
    exploration_paths: int = Field(40, ge=1)
    position_tolerance: float = Field(0.002, gt=0, description="m, planner-model goal accuracy")
    angle_tolerance_deg: float = Field(0.5, gt=0, description="planner-model goal accuracy")

    sample_dt: float = Field(0.01, gt=0, description="s between stored plan samples")
