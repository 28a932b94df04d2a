"""GCS contact planner for pushing the T: plan_push(start_pose) -> Plan."""

from data_gen.planner.config import PlannerConfig, PlanningError
from data_gen.planner.plan import REPOSITION, Plan
from data_gen.planner.planner import plan_push

__all__ = ["Plan", "PlannerConfig", "PlanningError", "REPOSITION", "plan_push"]
