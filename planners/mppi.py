"""MPPI in the iterated form used by TD-MPC2-style latent planners.

Each iteration samples around a Gaussian (sample 0 = mean; ONE rollout call on B*N rows), takes the `elites`
lowest-cost samples, weights them by softmax(-temperature * (cost - min elite cost)) and refits the mean and the
per-step std (clamped to [min_std, max_std]) to the weighted elites. Note the temperature MULTIPLIES the cost gap
(TD-MPC2 convention). The returned plan is the best sample seen by true rollout cost.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from planners.base import Diagnostics, Incumbent, Planner, PlannerConfig, PlannerError, clip, rollout_cost
from planners.cem import elites, sample_around


@dataclass(frozen=True)
class MPPIConfig(PlannerConfig):
    name: str = "mppi"
    iters: int = 30
    iters_warm: int = 30
    samples: int = 300
    elites: int = 30
    temperature: float = 0.5
    init_std: float = 1.0
    min_std: float = 0.05
    max_std: float = 2.0

    def __post_init__(self):
        super().__post_init__()
        if not 1 <= self.elites <= self.samples:
            raise PlannerError(f"planner.elites={self.elites}: must be in 1..samples ({self.samples})")


class MPPI(Planner):
    Config = MPPIConfig

    def _solve(self, model, start, goal, horizon, warm_start, iters, generator, callback):
        c = self.cfg
        B = start.shape[0]
        mean = (torch.zeros(B, horizon, model.action_dim, device=start.device, dtype=start.dtype)
                if warm_start is None else warm_start.actions.to(start).clone())
        clip(model, mean, c.clip_actions)
        std = torch.full_like(mean, c.init_std)
        best = Incumbent(model, start, goal, mean)
        diag = Diagnostics(("elite_cost", "std", "best_cost"), iters, start, callback)
        for it in range(iters):
            samples = clip(model, sample_around(mean, std, c.samples, generator), c.clip_actions)
            cost, _ = rollout_cost(model, start, goal, samples)  # (B, N)
            best.offer_samples(cost, samples)
            elite_cost, top = elites(cost, samples, c.elites)  # ascending (B, k), (B, k, H, A)
            excess = (elite_cost - elite_cost[:, :1]).nan_to_num(nan=0.0)  # inf - inf: all-bad elites weigh equally
            weight = torch.softmax(-c.temperature * excess, dim=1)[:, :, None, None]  # (B, k, 1, 1)
            mean = (weight * top).sum(1)
            std = (weight * (top - mean[:, None]).square()).sum(1).sqrt().clamp(c.min_std, c.max_std)
            diag.record(it, elite_cost=elite_cost.mean(1), std=std.mean((1, 2)), best_cost=best.cost)
        return best.plan(diag.rows, iters)
