"""What every planner shares: the `Plan` result, input checks, the true rollout cost and the incumbent tracker.

Cost convention (all planners, all diagnostics): the TRUE cost of an action sequence is the squared L2 distance
between the serial model rollout's last latent and the goal, SUMMED over the D latent dimensions:
    cost = sum_d (s_H[d] - g[d])^2,   s_H = model.rollout(start, actions)[:, -1].
Lifted losses (GRASP, LatCo) likewise sum over latent dimensions and over time steps, never average.

A planner is a frozen config dataclass plus a class whose `plan()` is

    plan(model, start (B, D), goal (B, D), horizon, warm_start=None, iters=None, generator=None, callback=None)

The model is duck-typed: `latent_dim`, `action_dim`, `predict(s, a)`, `rollout(s0, actions)`,
`action_low`, `action_high`, `device`. Randomness comes only from `generator` (default: a fresh generator seeded
with 0, so a call without one is reproducible). `callback(it, diag)` gets, after every iteration, a dict of (B,)
tensors: the row `it` of `Plan.diagnostics`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

Callback = Callable[[int, dict[str, Tensor]], None]


class PlannerError(ValueError):
    """A bad planner name, config key or plan() input; the message is one line for the user."""


@dataclass
class Plan:
    """A planner's answer for B problems at horizon H. Everything is detached.

    actions: (B, H, A) normalised actions, finite even when the model produced NaN/inf.
    cost: (B,) true rollout cost of `actions` (see module docstring); +inf where no finite plan was found.
    states: (B, H-1, D) virtual states s_1..s_{H-1} that go with `actions` (lifted planners), else None.
    diagnostics: name -> (iters, B) per-iteration values (which names depends on the planner).
    nonfinite: (B,) True where the model returned NaN/inf for that problem at some point.
    iters: iterations run.
    elites: (B, K, H, A) further candidate action sequences, best first, that a sampling planner (iCEM) carries into
        its next solve, else None. Aligned in time with `actions`: whoever shifts `actions` for a warm start shifts
        these the same way (agent/mpc.py `shift_plan`).
    """
    actions: Tensor
    cost: Tensor
    states: Tensor | None
    diagnostics: dict[str, Tensor]
    nonfinite: Tensor
    iters: int
    elites: Tensor | None = None


@dataclass(frozen=True)
class PlannerConfig:
    """Fields every planner has: cold and warm iteration budgets and whether actions are kept in model bounds."""
    name: str
    iters: int
    iters_warm: int
    clip_actions: bool = True

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value, default = getattr(self, field.name), field.default
            kinds = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}.get(type(default), (int, float))
            if not (isinstance(value, kinds) and (isinstance(value, bool) == isinstance(default, bool))
                    or (value is None and default is None)):
                raise PlannerError(f"planner.{field.name}={value!r}: expected {kinds[-1].__name__} "
                                   f"(default {default!r})")
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise PlannerError(f"planner.{field.name}={value}: must be >= 0")


class Planner:
    """Validates inputs and picks the iteration budget; subclasses implement `_solve` on checked, detached inputs."""
    Config: type[PlannerConfig]

    def __init__(self, cfg: PlannerConfig):
        self.cfg = cfg

    def plan(self, model, start: Tensor, goal: Tensor, horizon: int, warm_start: Plan | None = None,
             iters: int | None = None, generator: torch.Generator | None = None,
             callback: Callback | None = None) -> Plan:
        check_inputs(model, start, goal, horizon, warm_start)
        if iters is None:
            iters = self.cfg.iters if warm_start is None else self.cfg.iters_warm
        if not isinstance(iters, int) or iters < 0:
            raise PlannerError(f"iters={iters!r}: expected an int >= 0")
        if generator is None:
            generator = torch.Generator(device=model.device).manual_seed(0)
        with torch.no_grad():
            return self._solve(model, start.detach(), goal.detach(), horizon, warm_start, iters, generator,
                               callback)

    def _solve(self, model, start, goal, horizon, warm_start, iters, generator, callback) -> Plan:
        raise NotImplementedError


def check_inputs(model, start: Tensor, goal: Tensor, horizon: int, warm_start: Plan | None) -> None:
    D, A = model.latent_dim, model.action_dim
    if not isinstance(horizon, int) or isinstance(horizon, bool) or horizon < 1:
        raise PlannerError(f"horizon={horizon!r}: expected an int >= 1")
    for name, x in (("start", start), ("goal", goal)):
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != D:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise PlannerError(f"{name} has shape {shape}: expected (B, {D}) latents")
        if not torch.isfinite(x).all():
            raise PlannerError(f"{name} contains NaN/inf: expected finite latents")
    if start.shape != goal.shape:
        raise PlannerError(f"start {tuple(start.shape)} and goal {tuple(goal.shape)}: expected the same (B, D)")
    if warm_start is None:
        return
    B = start.shape[0]
    if tuple(warm_start.actions.shape) != (B, horizon, A):
        raise PlannerError(f"warm_start.actions has shape {tuple(warm_start.actions.shape)}: expected "
                           f"({B}, {horizon}, {A}) (the caller shifts/pads the previous plan to the horizon)")
    if not torch.isfinite(warm_start.actions).all():
        raise PlannerError("warm_start.actions contains NaN/inf: expected finite actions")
    if warm_start.states is not None and tuple(warm_start.states.shape) != (B, horizon - 1, D):
        raise PlannerError(f"warm_start.states has shape {tuple(warm_start.states.shape)}: expected "
                           f"({B}, {horizon - 1}, {D}) or None")
    elites = warm_start.elites
    if elites is not None and (elites.dim() != 4 or (elites.shape[0], *elites.shape[2:]) != (B, horizon, A)):
        raise PlannerError(f"warm_start.elites has shape {tuple(elites.shape)}: expected ({B}, K, {horizon}, {A}) "
                           f"or None (shifted like the actions)")
    if elites is not None and not torch.isfinite(elites).all():
        raise PlannerError("warm_start.elites contains NaN/inf: expected finite actions")


def clip(model, actions: Tensor, enabled: bool) -> Tensor:
    """Clamp normalised actions (any leading dims, last dim A) in place to the model's action box."""
    if enabled:
        torch.maximum(actions, model.action_low, out=actions)
        torch.minimum(actions, model.action_high, out=actions)
    return actions


def rollout_cost(model, start: Tensor, goal: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
    """True cost of `actions` (B, N, H, A) from start/goal (B, D): ONE rollout call on B*N rows.

    Returns cost (B, N) and the rollout latents (B, N, H, D). Differentiable when called under enable_grad.
    """
    B, N, H, A = actions.shape
    D = start.shape[1]
    s0 = start[:, None].expand(B, N, D).reshape(B * N, D)
    traj = model.rollout(s0, actions.reshape(B * N, H, A)).view(B, N, H, D)
    return (traj[:, :, -1] - goal[:, None]).square().sum(-1), traj


def initial_actions(model, start: Tensor, horizon: int, warm_start: Plan | None, clip_actions: bool) -> Tensor:
    """The first iterate's actions (B, H, A): the warm start's, else zeros (the dataset-mean action); clipped."""
    if warm_start is None:
        actions = torch.zeros(start.shape[0], horizon, model.action_dim, device=start.device, dtype=start.dtype)
    else:
        actions = warm_start.actions.to(start).clone()
    return clip(model, actions, clip_actions)


def initial_states(start: Tensor, goal: Tensor, horizon: int, warm_start: Plan | None) -> Tensor:
    """The first iterate's virtual states s_1..s_{H-1} (B, H-1, D): the warm start's, else the line to the goal."""
    if warm_start is None or warm_start.states is None:
        return line_states(start, goal, horizon)
    return warm_start.states.to(start)


def lifted_variables(n_states: int, n_actions: int, lr_states: float, lr_actions: float, like: Tensor
                     ) -> tuple[Tensor, "Adam"]:
    """One flat buffer for a lifted planner's states then actions, and an Adam with a learning rate per part."""
    flat = torch.empty(n_states + n_actions, device=like.device, dtype=like.dtype)
    lr = torch.full_like(flat, lr_states)
    lr[n_states:] = lr_actions
    return flat, Adam(flat, lr)


def line_states(start: Tensor, goal: Tensor, horizon: int) -> Tensor:
    """Virtual states s_1..s_{H-1} evenly spaced on the straight line from start to goal: (B, H-1, D)."""
    frac = torch.arange(1, horizon, device=start.device, dtype=start.dtype) / horizon  # (H-1,)
    return start[:, None] + frac[None, :, None] * (goal - start)[:, None]


def normal(generator: torch.Generator, shape, like: Tensor) -> Tensor:
    return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)


class Incumbent:
    """Best plan so far per problem, judged by true rollout cost; NaN/inf candidates never win but are flagged.

    Starts from the initial plan and its true cost (rolled out here unless `cost` (B,) is given), so a warm start
    is never returned worse than it came in. `last_cost` (B,) / `last_traj` (B, H, D) hold the latest `evaluate`.
    `cost`, `actions`, `states` and `nonfinite` are updated in place (a CUDA graph that offers candidates writes to
    the same buffers at every replay), so a caller that keeps an old value keeps a copy.
    """

    def __init__(self, model, start: Tensor, goal: Tensor, actions: Tensor, states: Tensor | None = None,
                 cost: Tensor | None = None):
        self.model, self.start, self.goal = model, start, goal
        self.actions = actions.detach().clone()  # (B, H, A)
        self.states = None if states is None else states.detach().clone()  # (B, H-1, D)
        self.cost = torch.full(start.shape[:1], float("inf"), device=start.device, dtype=start.dtype)
        self.nonfinite = torch.zeros(start.shape[:1], dtype=torch.bool, device=start.device)
        if cost is None:
            self.evaluate(actions, states)
        else:
            self.offer(cost, actions, states)

    def restart(self, actions: Tensor, states: Tensor | None = None) -> None:
        """Track a new solve from its initial plan, as a fresh Incumbent would, in this one's buffers."""
        self.actions.copy_(actions)
        if self.states is not None:
            self.states.copy_(states)
        self.cost.fill_(float("inf"))
        self.nonfinite.zero_()
        self.evaluate(actions, states)

    def evaluate(self, actions: Tensor, states: Tensor | None = None) -> None:
        """Roll out `actions` (B, H, A) and offer them as a candidate."""
        cost, traj = rollout_cost(self.model, self.start, self.goal, actions[:, None])
        self.last_cost, self.last_traj = cost[:, 0], traj[:, 0]
        self.offer(self.last_cost, actions, states)

    def offer(self, cost: Tensor, actions: Tensor, states: Tensor | None = None) -> None:
        """Candidates with known true cost (B,) for actions (B, H, A) (and virtual states (B, H-1, D))."""
        cost = cost.detach()  # written into a buffer with out=, which refuses a tensor that needs grad
        finite = torch.isfinite(cost)
        self.nonfinite |= ~finite
        better = finite & (cost < self.cost)
        torch.where(better, cost, self.cost, out=self.cost)
        torch.where(better[:, None, None], actions.detach(), self.actions, out=self.actions)
        if self.states is not None:
            torch.where(better[:, None, None], states.detach(), self.states, out=self.states)

    def offer_samples(self, cost: Tensor, samples: Tensor, states: Tensor | None = None) -> None:
        """The best of N samples per problem: cost (B, N), samples (B, N, H, A), shared states (B, H-1, D)."""
        self.nonfinite |= ~torch.isfinite(cost).all(1)
        best = torch.nan_to_num(cost, nan=float("inf")).argmin(1)  # (B,)
        rows = torch.arange(cost.shape[0], device=cost.device)
        self.offer(cost[rows, best], samples[rows, best], self.states if states is None else states)

    def plan(self, diagnostics: dict[str, Tensor], iters: int) -> Plan:
        """The incumbent as a Plan; it holds copies, so this tracker may be restarted for another solve."""
        states = None if self.states is None else self.states.clone()
        return Plan(self.actions.clone(), self.cost.clone(), states, diagnostics, self.nonfinite.clone(), iters)


class Diagnostics:
    """Preallocated (iters, B) buffers; `record` writes one row without a host sync and feeds the callback."""

    def __init__(self, names: tuple[str, ...], iters: int, like: Tensor, callback: Callback | None):
        self.rows = {n: torch.full((iters, like.shape[0]), float("nan"), device=like.device, dtype=like.dtype)
                     for n in names}
        self.callback = callback

    def record(self, it: int, **values: Tensor) -> None:
        for name, value in values.items():
            self.rows[name][it] = value
        if self.callback is not None:
            self.callback(it, {name: rows[it] for name, rows in self.rows.items()})


class Adam:
    """Adam (Kingma & Ba 2015, torch.optim.Adam's update) on one parameter tensor updated in place, with a
    per-element learning rate (a float or a tensor shaped like the parameter), and gradients passed to `step`.

    Planners keep all their variables in one flat buffer, so a step is a handful of kernels instead of the ~60 us
    of Python that torch.optim.Adam spends per step, which is comparable to a small predictor call."""

    def __init__(self, params: Tensor, lr: Tensor | float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.m, self.v = torch.zeros_like(params), torch.zeros_like(params)
        self.t = 0

    def reset(self) -> None:
        """Forget the moments (the GRASP author rebuilds the optimiser after every sync)."""
        self.m.zero_()
        self.v.zero_()
        self.t = 0

    def step(self, grad: Tensor) -> None:
        (b1, b2), self.t = self.betas, self.t + 1
        self.m.lerp_(grad, 1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = self.v.div(1 - b2 ** self.t).sqrt_().add_(self.eps)
        self.params.addcdiv_(self.m * self.lr, denom, value=-1 / (1 - b1 ** self.t))

    def corrections(self) -> tuple[float, float]:
        """Advance the step count like `step` and return its bias factors (1 / (1 - b2^t), -1 / (1 - b1^t))."""
        (b1, b2), self.t = self.betas, self.t + 1
        return 1 / (1 - b2 ** self.t), -1 / (1 - b1 ** self.t)

    def step_graphable(self, grad: Tensor, corrections: Tensor) -> None:
        """`step` with its step-dependent factors read from a tensor `corrections` = (1 / (1 - b2^t),
        -1 / (1 - b1^t)) that the caller fills from `corrections()` before each call, so that the step can be
        captured once in a CUDA graph and replayed (a Python scalar would be frozen into the graph)."""
        b1, b2 = self.betas
        self.m.lerp_(grad, 1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = self.v.mul(corrections[0]).sqrt_().add_(self.eps)
        self.params.addcmul_((self.m * self.lr).div_(denom), corrections[1])
