"""`EnvBatch`: B independent copies of one env stepped together, with results stacked along a leading batch axis.

A plain list of envs stepped in turn (the envs are cheap or render-bound, so threads or processes would not pay
on two cores). `step(actions, mask)` steps only the envs where `mask` is True; the others keep their last
observation and info, so finished episodes can sit still while the rest continue.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

import envs  # the package (for `envs.make`); it imports this module, so `make` is looked up at call time
from envs.base import EnvConfig, EnvError


def _stack_info(infos: list[dict]) -> dict[str, np.ndarray]:
    return {key: np.stack([np.asarray(info[key]) for info in infos]) for key in infos[0]}


class EnvBatch:
    def __init__(self, cfg: EnvConfig | Mapping[str, Any] | str, n: int):
        if n < 1:
            raise EnvError(f"EnvBatch size n={n}: must be >= 1")
        self.envs = [envs.make(cfg) for _ in range(n)]
        self.cfg = self.envs[0].cfg
        self.action_space = self.envs[0].action_space
        self.observation_space = self.envs[0].observation_space
        self._obs: list[np.ndarray] = []
        self._infos: list[dict] = []

    def __len__(self) -> int:
        return len(self.envs)

    def reset(self, seeds: list[int], options_list: list[dict | None] | None = None):
        """obs (B, ...), info {state (B, S), goal_state (B, S), goal_obs (B, ...), success (B,), distance (B,)}."""
        options_list = [None] * len(self) if options_list is None else options_list
        if len(seeds) != len(self) or len(options_list) != len(self):
            raise EnvError(f"EnvBatch of {len(self)} envs got {len(seeds)} seeds and {len(options_list)} options")
        results = [env.reset(seed=int(s), options=o) for env, s, o in zip(self.envs, seeds, options_list)]
        self._obs, self._infos = [r[0] for r in results], [r[1] for r in results]
        return np.stack(self._obs), _stack_info(self._infos)

    def step(self, actions: np.ndarray, mask: np.ndarray | None = None):
        """actions (B, A) -> obs (B, ...), reward (B,), terminated (B,), truncated (B,), info (stacked).
        Envs where `mask` is False are not stepped; they return their last obs and info."""
        actions = np.asarray(actions)
        if actions.shape != (len(self), *self.action_space.shape):
            raise EnvError(f"EnvBatch actions shape {actions.shape} != expected "
                           f"{(len(self), *self.action_space.shape)}")
        mask = np.ones(len(self), bool) if mask is None else np.asarray(mask, bool)
        if mask.shape != (len(self),):
            raise EnvError(f"EnvBatch mask shape {mask.shape} != expected ({len(self)},)")
        if not self._obs:
            raise EnvError("EnvBatch.step called before reset")
        for i in np.flatnonzero(mask):
            self._obs[i], _, _, _, self._infos[i] = self.envs[i].step(actions[i])
        info = _stack_info(self._infos)
        reward = -info["distance"]  # what GoalEnv.step returns, also for the envs left still
        done = np.zeros(len(self), bool)
        return np.stack(self._obs), reward, done, done.copy(), info

    def hold_actions(self) -> np.ndarray:
        """(B, A) float32: each env's `hold_action()` from its current state (native block actions)."""
        return np.stack([env.hold_action() for env in self.envs])

    def get_states(self) -> np.ndarray:
        return np.stack([env.get_state() for env in self.envs])   # (B, S)

    def render(self) -> np.ndarray:
        return np.stack([env.render() for env in self.envs])      # (B, S, S, 3)

    def close(self) -> None:
        for env in self.envs:
            env.close()
