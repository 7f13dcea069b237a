"""Tiny analytic world models with the duck-typed interface planners use (latent_dim, action_dim, predict,
rollout, action_low/high, device). `state_input_grad` records, per `predict` call, whether F's state input
required grad, so tests can see that GRASP never differentiates through it."""
from __future__ import annotations

import torch
from torch import Tensor


class ToyModel:
    def __init__(self, latent_dim: int, action_dim: int, bound: float):
        self.latent_dim, self.action_dim = latent_dim, action_dim
        self.action_low, self.action_high = torch.full((action_dim,), -bound), torch.full((action_dim,), bound)
        self.device = torch.device("cpu")
        self.state_input_grad: list[bool] = []

    def step(self, s: Tensor, a: Tensor) -> Tensor:
        raise NotImplementedError

    def predict(self, s: Tensor, a: Tensor) -> Tensor:
        self.state_input_grad.append(s.requires_grad)
        return self.step(s, a)

    def rollout(self, s0: Tensor, actions: Tensor) -> Tensor:
        states, s = [], s0
        for t in range(actions.shape[1]):
            s = self.step(s, actions[:, t])
            states.append(s)
        return torch.stack(states, 1)  # (B, T, D)


class Linear(ToyModel):
    """s' = M s + N a with D = 4, A = 2; M = `scale` times a rotation (scale > 1: expansive, BPTT ill-conditioned)."""

    def __init__(self, scale: float = 1.0, bound: float = 3.0):
        super().__init__(4, 2, bound)
        gen = torch.Generator().manual_seed(0)
        rotation = torch.linalg.qr(torch.randn(4, 4, generator=gen))[0]
        self.M = scale * rotation
        self.N = torch.randn(4, 2, generator=gen) * 0.5

    def step(self, s, a):
        return s @ self.M.T + a @ self.N.T


class Disk(ToyModel):
    """2-D point moving by 0.6 a per step that cannot enter the unit disk at the origin (projected onto its rim),
    so the straight line from (-2, 0) to (2, 0) is blocked and a plan must go around."""

    def __init__(self):
        super().__init__(2, 2, 1.0)

    def step(self, s, a):
        moved = s + 0.6 * a
        norm = moved.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        return moved * (1 + torch.relu(1 - norm) / norm)


class Broken(Linear):
    """Linear, except that predictions for problems whose first latent is negative are NaN."""

    def step(self, s, a):
        out = super().step(s, a)
        return torch.where(s[:, :1] < 0, torch.full_like(out, float("nan")), out)


def reachable(model, horizon: int, batch: int, seed: int = 1) -> tuple[Tensor, Tensor]:
    """Start latents and goals reached by random in-bound actions (|a| <= 2/3 of the bound): solvable problems."""
    gen = torch.Generator().manual_seed(seed)
    start = torch.randn(batch, model.latent_dim, generator=gen)
    actions = (torch.rand(batch, horizon, model.action_dim, generator=gen) * 2 - 1) * model.action_high * 2 / 3
    return start, model.rollout(start, actions)[:, -1]
