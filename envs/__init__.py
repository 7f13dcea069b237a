"""Goal-conditioned environments: one interface (`GoalEnv`), four tasks, batched stepping and data collection.

Stands alone: nothing here imports the world models, planners or agent. `MUJOCO_GL=egl` is set (if unset)
before any MuJoCo import, so headless rendering works without a display.
"""
import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import importlib
from typing import Any, Mapping

from envs.base import EnvConfig, EnvError, GoalEnv, StateVariable
from envs.batch import EnvBatch

ENVS = {
    "wall": "envs.wall:WallEnv",
    "pointmaze": "envs.pointmaze:PointMazeEnv",
    "reacher": "envs.reacher:ReacherEnv",
    "pusht": "envs.pusht:PushTEnv",
}


def env_config(cfg: EnvConfig | Mapping[str, Any] | str, **overrides) -> EnvConfig:
    """An EnvConfig from a name, a mapping (e.g. the `env` section of a config) or an EnvConfig."""
    if isinstance(cfg, EnvConfig):
        fields = dict(cfg.__dict__)
    elif isinstance(cfg, str):
        fields = {"name": cfg}
    else:
        fields = dict(cfg)
    fields.update(overrides)
    if fields.get("name") not in ENVS:
        raise EnvError(f"unknown env {fields.get('name')!r}; choose one of: {', '.join(ENVS)}")
    known = set(EnvConfig.__dataclass_fields__)
    unknown = sorted(set(fields) - known)
    if unknown:
        raise EnvError(f"unknown env option(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    return EnvConfig(**{k: (dict(v) if k == "options" else v) for k, v in fields.items()})


def env_class(name: str) -> type[GoalEnv]:
    module, cls = ENVS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make(cfg: EnvConfig | Mapping[str, Any] | str, **overrides) -> GoalEnv:
    cfg = env_config(cfg, **overrides)
    return env_class(cfg.name)(cfg)


__all__ = ["ENVS", "EnvBatch", "EnvConfig", "EnvError", "GoalEnv", "StateVariable", "env_class", "env_config", "make"]
