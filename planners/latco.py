"""Latent collocation (LatCo, Rybkin et al. 2021) as a baseline: states and actions optimised jointly with FULL
gradients through F (state input included), the dynamics as a penalty whose weight grows every iteration.

Free variables: actions a_0..a_{H-1} and states s_1..s_H (the last one free too, pulled to the goal by the cost):
    L = ||s_H - g||^2 + w_k * sum_t ||F(s_t, a_t) - s_{t+1}||^2,   w_k = min(penalty * growth^k, penalty_max)
All H predictions are one `model.predict` call. Adam with two learning rates on one flat buffer (as GRASP). The true
rollout cost is measured every `eval_every` iterations and at the end; the best plan by it is returned.
Plan.states = s_1..s_{H-1}.

Diagnostics (iters, B): dyn_loss, goal_loss (every iteration), rollout_cost (at evaluation points, carried
forward), best_cost.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from planners.base import Diagnostics, Incumbent, Planner, PlannerConfig, PlannerError, clip, initial_actions, \
    initial_states, lifted_variables


@dataclass(frozen=True)
class LatCoConfig(PlannerConfig):
    name: str = "latco"
    iters: int = 300
    iters_warm: int = 100
    lr_states: float = 0.1
    lr_actions: float = 0.03
    penalty: float = 1.0
    growth: float = 1.02
    penalty_max: float = 1.0e4
    eval_every: int = 25

    def __post_init__(self):
        super().__post_init__()
        if self.eval_every < 1:
            raise PlannerError(f"planner.eval_every={self.eval_every}: must be >= 1")


class LatCo(Planner):
    Config = LatCoConfig

    def _solve(self, model, start, goal, horizon, warm_start, iters, generator, callback):
        c, H = self.cfg, horizon
        B, D = start.shape
        A = model.action_dim
        n = B * H * D
        flat, adam = lifted_variables(n, B * H * A, c.lr_states, c.lr_actions, start)
        states, actions = flat[:n].view(B, H, D), flat[n:].view(B, H, A)  # s_1..s_H, a_0..a_{H-1}
        states[:, :-1] = initial_states(start, goal, H, warm_start)
        states[:, -1] = goal
        actions.copy_(initial_actions(model, start, H, warm_start, c.clip_actions))
        best = Incumbent(model, start, goal, actions, states[:, :-1])
        rollout_now = best.last_cost
        diag = Diagnostics(("dyn_loss", "goal_loss", "rollout_cost", "best_cost"), iters, start, callback)
        for it in range(iters):
            weight = min(c.penalty * c.growth ** it, c.penalty_max)
            leaf = flat.detach().requires_grad_()
            with torch.enable_grad():
                s, a = leaf[:n].view(B, H, D), leaf[n:].view(B * H, A)
                inputs = torch.cat((start[:, None], s[:, :-1]), 1)  # s_0..s_{H-1}  (B, H, D)
                pred = model.predict(inputs.view(B * H, D), a).view(B, H, D)
                dyn_loss = (pred - s).square().sum((1, 2))
                goal_loss = (s[:, -1] - goal).square().sum(-1)
                grad, = torch.autograd.grad((goal_loss + weight * dyn_loss).sum(), leaf)
            adam.step(grad)
            clip(model, actions, c.clip_actions)
            if (it + 1) % c.eval_every == 0 or it == iters - 1:
                best.evaluate(actions, states[:, :-1])
                rollout_now = best.last_cost
            diag.record(it, dyn_loss=dyn_loss.detach(), goal_loss=goal_loss.detach(), rollout_cost=rollout_now,
                        best_cost=best.cost)
        best.nonfinite |= ~torch.isfinite(diag.rows["dyn_loss"]).all(0)
        return best.plan(diag.rows, iters)
