"""Planners for latent world models: GRASP and the baselines it is compared with (CEM, iCEM, GD, MPPI, LatCo).

`make("grasp")`, `make(cfg.planner)` or `make("cem", samples=100)` -> a planner whose
`plan(model, start, goal, horizon, warm_start=None, iters=None, generator=None, callback=None) -> Plan`.
See planners/base.py for the shared contract and the cost convention.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from planners.base import Plan, Planner, PlannerConfig, PlannerError
from planners.cem import CEM
from planners.gd import GD
from planners.icem import ICEM
from planners.grasp import Grasp
from planners.latco import LatCo
from planners.mppi import MPPI

PLANNERS: dict[str, type[Planner]] = {"grasp": Grasp, "cem": CEM, "gd": GD, "mppi": MPPI, "latco": LatCo,
                                     "icem": ICEM}


def make(cfg_or_name: str | Mapping[str, Any], **overrides) -> Planner:
    """A planner from its name or its config section (`{name: ..., key: value}`), with keyword overrides."""
    values = ({"name": cfg_or_name} if isinstance(cfg_or_name, str)
              else {key: cfg_or_name[key] for key in cfg_or_name})
    values.update(overrides)
    name = values.get("name")
    if name not in PLANNERS:
        raise PlannerError(f"unknown planner {name!r}; choose one of: {', '.join(PLANNERS)}")
    config_type = PLANNERS[name].Config
    known = [f.name for f in dataclasses.fields(config_type)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise PlannerError(f"unknown {name} planner key {unknown[0]!r}; valid keys: {', '.join(known)}")
    return PLANNERS[name](config_type(**values))


__all__ = ["PLANNERS", "Plan", "Planner", "PlannerConfig", "PlannerError", "make"]
