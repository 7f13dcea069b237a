"""Gradient descent by shooting: backprop the true rollout cost through the full serial rollout, Adam on actions.

Multi-start: `starts` action sequences per problem are optimised together (one rollout call on B*starts rows);
start 0 is the warm start (or zeros), the others add N(0, init_std) noise to it. Every iterate's cost is a
by-product of its gradient step, so the best plan over all starts and iterations is kept at no extra cost.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from planners.base import Adam, Diagnostics, Incumbent, Planner, PlannerConfig, PlannerError, clip, initial_actions, \
    normal, rollout_cost


@dataclass(frozen=True)
class GDConfig(PlannerConfig):
    name: str = "gd"
    iters: int = 100
    iters_warm: int = 30
    lr: float = 0.1
    starts: int = 4
    init_std: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        if self.starts < 1:
            raise PlannerError(f"planner.starts={self.starts}: must be >= 1")


class GD(Planner):
    Config = GDConfig

    def _solve(self, model, start, goal, horizon, warm_start, iters, generator, callback):
        c = self.cfg
        first = initial_actions(model, start, horizon, warm_start, c.clip_actions)
        best = Incumbent(model, start, goal, first)
        actions = first[:, None].repeat(1, c.starts, 1, 1)  # (B, R, H, A)
        actions[:, 1:] += c.init_std * normal(generator, actions[:, 1:].shape, actions)
        clip(model, actions, c.clip_actions).requires_grad_(True)
        adam = Adam(actions, c.lr)
        diag = Diagnostics(("cost", "best_cost"), iters, start, callback)
        for it in range(iters):
            with torch.enable_grad():
                cost, _ = rollout_cost(model, start, goal, actions)  # (B, R)
                grad, = torch.autograd.grad(cost.sum(), actions)
            best.offer_samples(cost.detach(), actions)
            adam.step(grad)
            clip(model, actions, c.clip_actions)
            diag.record(it, cost=cost.detach().min(1).values, best_cost=best.cost)
        best.offer_samples(rollout_cost(model, start, goal, actions)[0], actions)
        return best.plan(diag.rows, iters)
