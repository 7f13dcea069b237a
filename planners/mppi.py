"""MPPI in the iterated form used by TD-MPC2-style latent planners.

CEM's loop (planners/cem.py: sample 0 = mean, ONE rollout call on B*N rows per iteration, best sample kept) with
another refit: the `elites` lowest-cost samples are weighted by softmax(-temperature * (cost - min elite cost)) and
the mean and per-step std (clamped to [min_std, max_std]) are refitted to the weighted elites. Note the
temperature MULTIPLIES the cost gap (TD-MPC2 convention).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from planners.cem import CEM, CEMConfig


@dataclass(frozen=True)
class MPPIConfig(CEMConfig):
    name: str = "mppi"
    temperature: float = 0.5
    min_std: float = 0.05
    max_std: float = 2.0


class MPPI(CEM):
    Config = MPPIConfig

    def _refit(self, elite_cost: Tensor, top: Tensor) -> tuple[Tensor, Tensor]:
        c = self.cfg
        excess = (elite_cost - elite_cost[:, :1]).nan_to_num(nan=0.0)  # inf - inf: all-bad elites weigh equally
        weight = torch.softmax(-c.temperature * excess, dim=1)[:, :, None, None]  # (B, k, 1, 1)
        mean = (weight * top).sum(1)
        std = (weight * (top - mean[:, None]).square()).sum(1).sqrt().clamp(c.min_std, c.max_std)
        return mean, std
