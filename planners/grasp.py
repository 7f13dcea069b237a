"""GRASP: Gradient RelAxed Stochastic Planner (arXiv 2602.00475).

Lifted problem: virtual states s_1..s_{H-1} are free, s_0 = start and s_H = goal are fixed. With s̄ = stop-grad(s):
    L = sum_t ||F(s̄_t, a_t) - s_{t+1}||^2 + gamma * sum_t ||F(s̄_t, a_t) - g||^2        (t = 0..H-1, sums over D)
All H one-step predictions are ONE `model.predict` call on (B*H, D) rows. Because F's state input is detached, the
gradients of L are written out in closed form:
    dL/dF_t = 2 (F_t - s_{t+1}) + 2 gamma (F_t - g),   dL/ds_{t+1} = -2 (F_t - s_{t+1})
and only the action path goes through autograd (`autograd.grad(F, actions, dL/dF)`): F's state-input Jacobian is
never formed. `stopgrad=False` (an ablation only) adds the state-input path J_s(F)^T dL/dF_t to each s_t.
One Adam with two learning rates (states lr_states, actions lr_actions; the author's two parameter groups) steps
both, kept in one flat buffer; then Gaussian noise sigma * xi is added to the states only.

Every `sync_every` iterations the plan is checked against the true serial rollout:
  - the current actions are rolled out (true cost, virtual-vs-rollout gap),
  - sync=grad: `sync_steps` Adam steps at lr_sync on ||rollout(a)_H - g||^2 w.r.t. the actions only;
    sync=cem: a short CEM around the actions with per-step variance = gap of the step it leads to + a floor;
    sync=none: evaluation only,
  - the main Adam is rebuilt (moments reset); virtual states are kept.
Every rolled-out candidate (the iterate, each sync step) is offered to the incumbent, so the returned plan is the
best by TRUE rollout cost and a sync can never make it worse. The final iterate is always evaluated too.
`sigma` and `gamma` decay linearly towards `sigma_end` / `gamma_end` inside each sync period when those are set.

Scale-free (`relative: true`, the default): each problem's latent scale k is the model's mean one-step displacement
||F(s_0, a) - s_0|| from its start, over the 2A probe actions that put one action axis at either bound of the box
(one predict call on B*2A rows per solve). GRASP then runs in the coordinates u = s / k with the loss L / k^2: the
state lr and sigma are in units of k, Adam sees the gradients of L / k^2 (so its eps acts the same at any scale),
and the sync's variance uses gap / k^2. A model whose latent is multiplied by a constant c therefore gets the same
actions and c times the states. `relative: false` uses absolute latent units (k = 1), the behaviour before.

Early stop (`patience` > 0): after every sync the incumbent's true cost is compared with its value at the previous
sync; the solve stops once, for every problem, `patience` syncs in a row improved it by less than IMPROVEMENT
(relative). `Plan.iters` and the diagnostics rows are then the iterations run.

Diagnostics (iters, B): dyn_loss and goal_loss (every iteration, of the iterate before its update); rollout_cost and
gap (true cost of the iterate and mean over t of ||s_t - rollout_t||^2, measured at the evaluation points and
carried forward between them, because a serial rollout every iteration would cost more than the GRASP step);
best_cost (the incumbent's true cost).

On CUDA (`cuda_graphs: true`, the default) the lifted iteration and the gradient sync are replayed as CUDA graphs
kept per model and shape (planners/cuda_graphs.py): the same plans up to float rounding, without the kernel launches.

Noise is drawn for the whole batch from the one generator, so a problem's noise depends on its batch position:
B problems planned together equal the same problems planned one by one exactly only with sigma = 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from planners.base import Adam, Diagnostics, Incumbent, Planner, PlannerConfig, PlannerError, clip, initial_actions, \
    initial_states, lifted_variables, normal, rollout_cost
from planners.cem import elites, sample_around

if TYPE_CHECKING:
    from planners.cuda_graphs import SolveGraphs

SYNC_MODES = ("grad", "cem", "none")
IMPROVEMENT = 0.01  # patience: a sync that lowers the incumbent's cost by less than 1 % counts as no progress


@dataclass(frozen=True)
class GraspConfig(PlannerConfig):
    name: str = "grasp"
    iters: int = 300
    iters_warm: int = 100
    lr_states: float = 0.1
    lr_actions: float = 0.03
    sigma: float = 0.15
    sigma_end: float | None = None
    gamma: float = 0.1
    gamma_end: float | None = None
    sync: str = "grad"
    sync_every: int = 25
    sync_steps: int = 10
    lr_sync: float = 0.05
    cem_samples: int = 64
    cem_elites: int = 8
    cem_iters: int = 5
    cem_var_floor: float = 0.01
    relative: bool = True  # sigma, lr_states (and the CEM sync's gap) in units of the latent step k, not absolute
    patience: int = 0  # stop after this many syncs in a row without progress on every problem (0: run all iters)
    stopgrad: bool = True  # False: full gradients through F's state input (the ablation the paper argues against)
    cuda_graphs: bool = True  # on CUDA only: replay the iteration and the sync as CUDA graphs (planners/cuda_graphs.py)

    def __post_init__(self):
        super().__post_init__()
        if self.sync not in SYNC_MODES:
            raise PlannerError(f"planner.sync={self.sync!r}: choose one of {', '.join(SYNC_MODES)}")
        if self.sync_every < 1:
            raise PlannerError(f"planner.sync_every={self.sync_every}: must be >= 1")
        if self.patience < 0:
            raise PlannerError(f"planner.patience={self.patience}: must be >= 0 (0 disables early stopping)")
        if self.sync == "grad" and self.sync_steps < 1:
            raise PlannerError(f"planner.sync_steps={self.sync_steps}: must be >= 1 with sync=grad")
        if not 1 <= self.cem_elites <= self.cem_samples:
            raise PlannerError(f"planner.cem_elites={self.cem_elites}: must be in 1..cem_samples "
                               f"({self.cem_samples})")


def _decay(start: float, end: float | None, phase: float) -> float:
    return start if end is None else start + (end - start) * phase


class Lifted:
    """A solve's variables for B problems at horizon H in one flat buffer that one Adam steps: the chain s_0,
    s_1..s_{H-1}, s_H = g (B, H+1, D) then the actions (B, H, A), with a gradient buffer laid out alike. F's inputs
    are chain[:, :-1] and its targets chain[:, 1:], both views (no copy, no cat). The chain's two ends get zero
    gradient, so Adam never moves them (m = v = 0 -> a zero step); only the virtual states s_1..s_{H-1} are noised."""

    def __init__(self, B: int, H: int, D: int, A: int, cfg: GraspConfig, like: Tensor):
        self.n = n = B * (H + 1) * D
        self.lr_states = cfg.lr_states
        self.flat, self.adam = lifted_variables(n, B * H * A, cfg.lr_states, cfg.lr_actions, like)
        self.chain, self.actions = self.flat[:n].view(B, H + 1, D), self.flat[n:].view(B, H, A)
        self.states = self.chain[:, 1:-1]
        self.grad = torch.zeros_like(self.flat)
        self.grad_states, self.grad_actions = self.grad[:n].view(B, H + 1, D)[:, 1:-1], self.grad[n:].view(B, H, A)
        self.start, self.goal = torch.empty_like(like), torch.empty_like(like)  # (B, D)
        self.scale = torch.ones(B, 1, 1, device=like.device, dtype=like.dtype)  # the latent scale k

    def load(self, start: Tensor, goal: Tensor, states: Tensor, actions: Tensor, scale: Tensor) -> None:
        """Set up a solve: ends, initial virtual states (B, H-1, D) and actions (B, H, A), k (B,); fresh Adam."""
        self.start.copy_(start)
        self.goal.copy_(goal)
        self.chain[:, 0], self.chain[:, -1] = start, goal
        self.states.copy_(states)
        self.actions.copy_(actions)
        self.scale.copy_(scale[:, None, None])
        self.adam.lr[:self.n].view_as(self.chain).copy_(self.lr_states * self.scale)  # state steps in units of k
        self.adam.reset()
        self.grad.zero_()


class Grasp(Planner):
    Config = GraspConfig

    def __init__(self, cfg: GraspConfig):
        super().__init__(cfg)
        self.solve_graphs = {}  # cuda_graphs on CUDA: planners.cuda_graphs.SolveGraphs per model and shape

    def _solve(self, model, start, goal, horizon, warm_start, iters, generator, callback):
        c, H = self.cfg, horizon
        B, D = start.shape
        graphs = self._graphs(model, start, H, iters)
        lifted = graphs.lifted if graphs else Lifted(B, H, D, model.action_dim, c, start)
        lifted.load(start, goal, initial_states(start, goal, H, warm_start),
                    initial_actions(model, start, H, warm_start, c.clip_actions), self._latent_scale(model, start))
        start, goal, scale = lifted.start, lifted.goal, lifted.scale  # k (B, 1, 1); ones with relative=false
        actions, states = lifted.actions, lifted.states
        best = graphs.incumbent(actions, states) if graphs else Incumbent(model, start, goal, actions, states)
        rollout_now, gap_now = best.last_cost, self._gap(states, best.last_traj)
        diag = Diagnostics(("dyn_loss", "goal_loss", "rollout_cost", "gap", "best_cost"), iters, start, callback)
        checked = best.cost.clone()  # patience bookkeeping
        stalls = torch.zeros(B, dtype=torch.long, device=start.device)
        for it in range(iters):
            phase = (it % c.sync_every) / c.sync_every
            sigma, gamma = _decay(c.sigma, c.sigma_end, phase), _decay(c.gamma, c.gamma_end, phase)
            if graphs is not None:
                dyn_loss, goal_loss = graphs.iterate(sigma, gamma, generator)
            else:
                dyn_loss, goal_loss = self._lifted_grad(model, lifted.chain, actions, lifted.grad_states,
                                                        lifted.grad_actions, gamma, scale)
                lifted.adam.step(lifted.grad)
                if sigma > 0:
                    states.addcmul_(normal(generator, states.shape, states), scale, value=sigma)
                clip(model, actions, c.clip_actions)

            if (it + 1) % c.sync_every == 0 or it == iters - 1:
                sync_now = (it + 1) % c.sync_every == 0 and c.sync != "none"
                if sync_now and c.sync == "grad":  # its first rollout is the iterate's evaluation
                    rollout_now, traj = (graphs.sync() if graphs else
                                         self._sync_grad(model, start, goal, actions, states, best, scale))
                else:
                    best.evaluate(actions, states)
                    rollout_now, traj = best.last_cost, best.last_traj
                    if sync_now:
                        self._sync_cem(model, start, goal, actions, states, traj, best, generator, scale)
                gap_now = self._gap(states, traj)
                if sync_now:
                    lifted.adam.reset()
            diag.record(it, dyn_loss=dyn_loss, goal_loss=goal_loss, rollout_cost=rollout_now, gap=gap_now,
                        best_cost=best.cost)
            if c.patience and (it + 1) % c.sync_every == 0:
                stalls = torch.where(best.cost < (1 - IMPROVEMENT) * checked, 0, stalls + 1)
                checked.copy_(best.cost)
                if bool((stalls >= c.patience).all()):  # one host sync per sync period
                    iters = it + 1
                    break
        rows = {name: r[:iters] for name, r in diag.rows.items()}
        best.nonfinite |= ~torch.isfinite(rows["dyn_loss"]).all(0)
        return best.plan(rows, iters)

    def _graphs(self, model, start: Tensor, horizon: int, iters: int) -> "SolveGraphs | None":
        """The CUDA graphs of this solve's shape (cuda_graphs on a CUDA device), else None: the eager path."""
        if not (self.cfg.cuda_graphs and start.is_cuda and iters > 0):
            return None
        from planners.cuda_graphs import solve_graphs  # CUDA-only code, never imported on CPU
        return solve_graphs(self, model, start, horizon)

    def _latent_scale(self, model, start: Tensor) -> Tensor:
        """k (B,): mean ||F(s_0, a) - s_0|| over the 2A actions with one axis at its lower or upper bound (the
        others 0), i.e. the model's typical one-step displacement in latent units; ones with relative=false. Falls
        back to 1 where it is 0 or not finite (a model that ignores actions, a NaN start)."""
        B, D = start.shape
        if not self.cfg.relative:
            return torch.ones(B, device=start.device, dtype=start.dtype)
        probe = torch.cat((torch.diag(model.action_low), torch.diag(model.action_high))).to(start)  # (2A, A)
        N = probe.shape[0]
        with torch.no_grad():
            pred = model.predict(start.repeat_interleave(N, 0), probe.repeat(B, 1)).view(B, N, D)
        k = (pred - start[:, None]).norm(dim=-1).mean(1)
        return torch.where(torch.isfinite(k) & (k > 0), k, torch.ones_like(k))

    def _lifted_grad(self, model, chain: Tensor, actions: Tensor, grad_states: Tensor, grad_actions: Tensor,
                     gamma: float | Tensor, scale: Tensor | float = 1.0) -> tuple[Tensor, Tensor]:
        """The lifted loss's gradients for the chain (B, H+1, D) = (s_0, virtual s_1..s_{H-1}, g) and actions
        (B, H, A), in the coordinates u = s / scale (scale: k (B, 1, 1)) of the loss L / k^2: dL/ds / k into
        grad_states (B, H-1, D) and dL/da / k^2 into grad_actions (B, H, A); returns dyn_loss and goal_loss (B,)
        of the iterate, unscaled. ONE predict call on B*H rows; only the action path (and with stopgrad=False
        the state-input path) goes through autograd, the rest is the closed form of the module docstring."""
        B, H, A = actions.shape
        D = chain.shape[2]
        inputs, targets, goal_row = chain[:, :-1], chain[:, 1:], chain[:, -1:]  # views: s̄_0..s̄_{H-1}, s_1..s_H, g
        leaf = actions.detach().requires_grad_()  # aliases `actions`; autograd sees only this path
        state_in = inputs.reshape(B * H, D)  # a view at B = 1, else a copy (chain[:, :-1] is not contiguous)
        if not self.cfg.stopgrad:
            state_in = state_in.detach().requires_grad_()
        with torch.enable_grad():
            pred = model.predict(state_in, leaf.view(B * H, A)).view(B, H, D)
        resid = pred.detach() - targets  # F(s̄_t, a_t) - s_{t+1}  (B, H, D)
        goal_resid = pred.detach() - goal_row  # F(s̄_t, a_t) - g  (B, H, D)
        dyn_loss, goal_loss = resid.square().sum((1, 2)), goal_resid.square().sum((1, 2))
        grads = torch.autograd.grad(pred, (leaf,) if self.cfg.stopgrad else (leaf, state_in),
                                    (resid + gamma * goal_resid).mul_(2 / scale ** 2))
        grad_actions.copy_(grads[0])
        torch.mul(resid[:, :-1], -2 / scale, out=grad_states)
        if not self.cfg.stopgrad:  # + J_s(F)^T dL/dF_t: the brittle state-input path
            grad_states.add_(grads[1].view(B, H, D)[:, 1:] * scale)
        return dyn_loss, goal_loss

    @staticmethod
    def _gap(states: Tensor, traj: Tensor) -> Tensor:
        """Mean over t=1..H-1 of ||virtual s_t - rollout s_t||^2: (B,). Zero at H = 1 (no virtual states)."""
        return (states - traj[:, :-1]).square().sum((1, 2)) / max(states.shape[1], 1)

    def _sync_grad(self, model, start, goal, actions, states, best, scale):
        """sync_steps Adam steps on the true rollout cost / k^2 w.r.t. actions; each stepped-from plan and the final
        one are offered to the incumbent. Returns the entering iterate's true cost (B,) and rollout (B, H, D)."""
        adam = Adam(actions, self.cfg.lr_sync)
        for step in range(self.cfg.sync_steps):
            leaf = actions.detach().requires_grad_()
            with torch.enable_grad():
                cost, traj = rollout_cost(model, start, goal, leaf[:, None])  # (B, 1), (B, 1, H, D)
                grad, = torch.autograd.grad((cost / scale[:, :, 0] ** 2).sum(), leaf)
            best.offer(cost[:, 0].detach(), actions, states)
            if step == 0:
                entry = cost[:, 0].detach(), traj[:, 0].detach()
            adam.step(grad)
            clip(model, actions, self.cfg.clip_actions)
        best.evaluate(actions, states)
        return entry

    def _sync_cem(self, model, start, goal, actions, states, traj, best, generator, scale):
        """CEM around the actions; per-step std = sqrt(mean_d (virtual s_{t+1} - rollout s_{t+1})^2 / k^2 + floor).
        The actions become the best sample of this round (sample 0 of round 1 is the current plan)."""
        c = self.cfg
        B, H, A = actions.shape
        targets = torch.cat((states, goal[:, None]), 1)  # s_1..s_H, the states each a_t should reach
        var = (targets - traj).square().mean(-1, keepdim=True) / scale ** 2 + c.cem_var_floor  # (B, H, 1)
        mean, std = actions.detach().clone(), var.sqrt().expand(B, H, A)
        round_best = Incumbent(model, start, goal, mean, cost=best.last_cost)  # last_cost: the entering plan's
        for _ in range(c.cem_iters):
            samples = clip(model, sample_around(mean, std, c.cem_samples, generator), c.clip_actions)
            cost, _ = rollout_cost(model, start, goal, samples)  # (B, N)
            best.offer_samples(cost, samples, states)
            round_best.offer_samples(cost, samples)
            _, top = elites(cost, samples, c.cem_elites)
            mean, std = top.mean(1), top.std(1, correction=0)
        actions.copy_(round_best.actions)
