"""Cross-entropy method: sample action sequences around a Gaussian, refit it to the lowest-cost elites.

Batched over problems and samples: each iteration rolls out all B*N sequences in ONE `model.rollout` call.
Sample 0 of every iteration is the current mean, so the mean is always scored; the returned plan is the best
sample seen (by true rollout cost), not the final mean.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from planners.base import Diagnostics, Incumbent, Planner, PlannerConfig, PlannerError, clip, initial_actions, \
    normal, rollout_cost


@dataclass(frozen=True)
class CEMConfig(PlannerConfig):
    name: str = "cem"
    iters: int = 30
    iters_warm: int = 30
    samples: int = 300
    elites: int = 30
    init_std: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        if not 1 <= self.elites <= self.samples:
            raise PlannerError(f"planner.elites={self.elites}: must be in 1..samples ({self.samples})")


def sample_around(mean: Tensor, std: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """n Gaussian action sequences per problem around mean (B, H, A) with std (B, H, A); sample 0 = mean."""
    B, H, A = mean.shape
    samples = mean[:, None] + std[:, None] * normal(generator, (B, n, H, A), mean)  # (B, n, H, A)
    samples[:, 0] = mean
    return samples


def elites(cost: Tensor, samples: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k lowest-cost samples: cost (B, N), samples (B, N, H, A) -> (elite cost (B, k), elites (B, k, H, A)).

    NaN costs rank last."""
    elite_cost, idx = torch.nan_to_num(cost, nan=float("inf")).topk(k, dim=1, largest=False)
    B, N, H, A = samples.shape
    return elite_cost, samples.gather(1, idx[:, :, None, None].expand(B, k, H, A))


class CEM(Planner):
    Config = CEMConfig

    def _solve(self, model, start, goal, horizon, warm_start, iters, generator, callback):
        c = self.cfg
        mean = initial_actions(model, start, horizon, warm_start, c.clip_actions)
        std = torch.full_like(mean, c.init_std)
        best = Incumbent(model, start, goal, mean)
        diag = Diagnostics(("elite_cost", "std", "best_cost"), iters, start, callback)
        for it in range(iters):
            samples = clip(model, sample_around(mean, std, c.samples, generator), c.clip_actions)
            cost, _ = rollout_cost(model, start, goal, samples)  # (B, N)
            best.offer_samples(cost, samples)
            elite_cost, top = elites(cost, samples, c.elites)  # ascending (B, k), (B, k, H, A)
            mean, std = self._refit(elite_cost, top)
            diag.record(it, elite_cost=elite_cost.mean(1), std=std.mean((1, 2)), best_cost=best.cost)
        return best.plan(diag.rows, iters)

    def _refit(self, elite_cost: Tensor, top: Tensor) -> tuple[Tensor, Tensor]:
        """The next sampling Gaussian from the elites: mean and std (B, H, A)."""
        return top.mean(1), top.std(1, correction=0)
