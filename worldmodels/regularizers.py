"""Anti-collapse regularisers on a batch of latents (N, D), and latent health metrics.

SIGReg (sketched isotropic Gaussian regulariser, as in LeJEPA / LeWM): project the latents on random unit
directions and test each 1-D projection against N(0, 1) with the Epps-Pulley statistic, i.e. the weighted squared
distance between the empirical characteristic function and exp(-t^2/2):
    EP = N * integral_0^t_max |mean_n exp(i t x_n) - exp(-t^2/2)|^2 exp(-t^2/2) dt      (trapezoid rule)
averaged over the directions. If every 1-D projection is standard normal the latent is isotropic Gaussian
(Cramer-Wold), which rules out collapse to a point or to a few directions. The N factor makes it the usual test
statistic, O(1) for Gaussian samples; N is the GLOBAL batch under DDP (the caller gathers).

VICReg (variance / covariance terms only; the invariance term is the prediction loss): hinge on each
dimension's std below 1 plus the squared off-diagonal covariances.
"""
from __future__ import annotations

import torch

REGULARIZERS = ("sigreg", "vicreg")
SIGREG_KNOTS, SIGREG_T_MAX = 17, 3.0


def sigreg(z: torch.Tensor, projections: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Epps-Pulley normality statistic of z (N, D) along `projections` random unit directions (scalar)."""
    N, D = z.shape
    directions = torch.randn(D, projections, generator=generator, device=z.device, dtype=z.dtype)
    directions = directions / directions.norm(dim=0, keepdim=True)
    x = z @ directions                                                            # (N, P)
    t = torch.linspace(0.0, SIGREG_T_MAX, SIGREG_KNOTS, device=z.device, dtype=z.dtype)   # (K,)
    gaussian_cf = torch.exp(-0.5 * t ** 2)                                        # CF of N(0,1), also the window
    tx = x.unsqueeze(-1) * t                                                      # (N, P, K)
    gap = (tx.cos().mean(0) - gaussian_cf) ** 2 + tx.sin().mean(0) ** 2           # (P, K)
    step = SIGREG_T_MAX / (SIGREG_KNOTS - 1)
    trapezoid = torch.full_like(t, step)
    trapezoid[[0, -1]] = step / 2
    return N * (gap @ (trapezoid * gaussian_cf)).mean()


def vicreg(z: torch.Tensor) -> torch.Tensor:
    """Variance hinge (std >= 1 per dimension) + mean squared off-diagonal covariance of z (N, D)."""
    N, D = z.shape
    z = z - z.mean(0)
    std = torch.sqrt(z.var(0) + 1e-4)
    cov = z.T @ z / (N - 1)                                                       # (D, D)
    off_diagonal = cov - torch.diag(torch.diagonal(cov))
    return torch.relu(1.0 - std).mean() + off_diagonal.pow(2).sum() / D


def regularizer(name: str, z: torch.Tensor, projections: int, generator: torch.Generator | None) -> torch.Tensor:
    return sigreg(z, projections, generator) if name == "sigreg" else vicreg(z)


@torch.no_grad()
def latent_health(z: torch.Tensor) -> dict[str, float]:
    """Per-dimension std (mean, min) and effective rank (exp of the entropy of the normalised singular values)
    of z (N, D): a collapsed latent has tiny std or a rank far below D."""
    std = z.float().std(0)
    sv = torch.linalg.svdvals(z.float() - z.float().mean(0))
    p = sv / sv.sum().clamp_min(1e-12)
    rank = torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())
    return {"latent_std_mean": std.mean().item(), "latent_std_min": std.min().item(), "effective_rank": rank.item()}
