"""iCEM (Pinneri et al. 2020, "Sample-efficient cross-entropy method for real-time planning"): CEM with
  - colored-noise samples: along time each action dimension's noise has power spectrum ~ 1/f^beta (beta = 0 is
    CEM's white noise; 2-2.5 in the paper), so samples are smooth, low-frequency action sequences,
  - elite reuse: the best `keep_elites` fraction of each iteration's elites joins the next iteration's population
    (their true cost is known, so they cost no rollout),
  - shifted elites under MPC: the returned `Plan.elites` (B, K, H, A), best first, are shifted by the agent like the
    actions (agent/mpc.py `shift_plan`) and join the first population of the next solve,
  - momentum on the refit: mean/std <- momentum * old + (1 - momentum) * elite statistics.
Kept from our CEM (planners/cem.py): sample 0 = the mean, ONE rollout call on B*N rows per iteration, the best plan
by true rollout cost over all iterations, clipping to the action box. The population size is fixed (the paper's
decay is left out). Diagnostics (iters, B): elite_cost, std, best_cost (as CEM).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from planners.base import Diagnostics, Incumbent, Planner, PlannerConfig, PlannerError, clip, initial_actions, \
    normal, rollout_cost
from planners.cem import elites


@dataclass(frozen=True)
class ICEMConfig(PlannerConfig):
    name: str = "icem"
    iters: int = 30
    iters_warm: int = 10
    samples: int = 300
    elites: int = 30
    init_std: float = 1.0
    beta: float = 2.0  # noise spectrum exponent along time: 0 white (CEM), 2 Brownian-like
    keep_elites: float = 0.3  # fraction of the elites carried to the next iteration and the next solve
    momentum: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        if not 1 <= self.elites <= self.samples:
            raise PlannerError(f"planner.elites={self.elites}: must be in 1..samples ({self.samples})")
        if self.keep_elites > 1:
            raise PlannerError(f"planner.keep_elites={self.keep_elites}: must be a fraction in [0, 1]")
        if self.momentum >= 1:
            raise PlannerError(f"planner.momentum={self.momentum}: must be in [0, 1)")

    @property
    def kept(self) -> int:
        """Elites carried forward per problem."""
        return round(self.keep_elites * self.elites)


def colored_noise(generator: torch.Generator, shape, beta: float, like: Tensor) -> Tensor:
    """Gaussian noise of `shape` (..., T) whose power spectrum along the last axis is ~ 1/f^beta, unit variance per
    element. Drawn in the frequency domain: each rfft bin k gets a complex Gaussian of std f_k^(-beta/2)
    (f_0 is taken as 1/T, the lowest nonzero frequency), the real-valued bins (DC, Nyquist) a real one of the same
    power, then irfft and division by the exact std of the result."""
    *lead, T = shape
    freq = torch.fft.rfftfreq(T, device=like.device, dtype=like.dtype)
    freq[0] = 1.0 / T
    scale = freq.pow(-beta / 2)  # (T//2 + 1,)
    real = normal(generator, (*lead, len(freq)), like) * scale
    imag = normal(generator, (*lead, len(freq)), like) * scale
    real_bins = [0] + ([len(freq) - 1] if T % 2 == 0 and T > 1 else [])
    imag[..., real_bins] = 0
    real[..., real_bins] *= math.sqrt(2)
    # Var(irfft(X)_t) = (2 * sum_{all bins} scale^2 + 2 * sum_{complex bins} scale^2) / T^2 for any t
    power = scale.square()
    var = 2 * power.sum() + 2 * (power.sum() - power[real_bins].sum())
    return torch.fft.irfft(torch.complex(real, imag), n=T) * (T / var.sqrt())


class ICEM(Planner):
    Config = ICEMConfig

    def _solve(self, model, start, goal, horizon, warm_start, iters, generator, callback):
        c = self.cfg
        mean = initial_actions(model, start, horizon, warm_start, c.clip_actions)
        B, H, A = mean.shape
        std = torch.full_like(mean, c.init_std)
        best = Incumbent(model, start, goal, mean)
        carried, carried_cost = None, None  # (B, K, H, A), (B, K): elites kept from the last iteration
        unscored = None  # the warm start's shifted elites: rolled out with the first population
        if warm_start is not None and warm_start.elites is not None and c.kept > 0:
            unscored = clip(model, warm_start.elites[:, :c.kept].to(mean).clone(), c.clip_actions)
        diag = Diagnostics(("elite_cost", "std", "best_cost"), iters, start, callback)
        for it in range(iters):
            noise = colored_noise(generator, (B, c.samples, A, H), c.beta, mean).transpose(2, 3)
            samples = mean[:, None] + std[:, None] * noise  # (B, N, H, A)
            samples[:, 0] = mean
            clip(model, samples, c.clip_actions)
            if unscored is not None:
                samples, unscored = torch.cat((samples, unscored), 1), None
            cost, _ = rollout_cost(model, start, goal, samples)  # (B, N)
            best.offer_samples(cost, samples)
            if carried is not None:
                cost, samples = torch.cat((cost, carried_cost), 1), torch.cat((samples, carried), 1)
            elite_cost, top = elites(cost, samples, c.elites)  # ascending (B, k), (B, k, H, A)
            mean = torch.lerp(top.mean(1), mean, c.momentum)
            std = torch.lerp(top.std(1, correction=0), std, c.momentum)
            if c.kept > 0:
                carried, carried_cost = top[:, :c.kept], elite_cost[:, :c.kept]
            diag.record(it, elite_cost=elite_cost.mean(1), std=std.mean((1, 2)), best_cost=best.cost)
        plan = best.plan(diag.rows, iters)
        if carried is not None:
            plan.elites = carried.clone()
        elif unscored is not None:  # iters = 0: hand the warm elites on
            plan.elites = unscored
        return plan
