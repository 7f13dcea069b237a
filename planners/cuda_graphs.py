"""GRASP solves replayed as CUDA graphs (`cuda_graphs: true`, the default; effective only when the model and the
latents are on a CUDA device: planners/grasp.py imports this module only then, so the CPU path never touches it).

At this project's model sizes a GRASP solve on a GPU is bound by kernel launches and serial depth, not arithmetic:
eager, a default call at H = 50, B = 16 took 2.63 s on an H200, CEM's 0.24 s (benchmarks/results/planner_speed_cuda.md).
So each solve shape (model, B, H) gets two graphs, captured on its first solve and kept with their static buffers
across plan() calls (an MPC agent re-plans at a few shapes: its batch shrinks as episodes end):
  - the lifted iteration: predict on B*H rows, its action backward, the closed-form state gradient, Adam, noise, clip;
  - the sync (sync=grad): its sync_steps rollouts, backwards and Adam steps, the incumbent's updates and the final
    evaluation. Its Adam starts afresh at every sync, so its step counts are the same at every replay.
What changes between replays of the iteration lives in small device tensors filled before each: sigma * k, gamma,
Adam's bias corrections, and the state noise, drawn eagerly from the planner's generator with the same call as the
eager path, so both paths consume the same random numbers. Each graph is captured after one warm-up run on a side
stream whose writes are undone (capturing itself runs nothing).

A graph reads the model's weights where they were at capture, so the cache key holds their addresses: a model whose
tensors were replaced (`.to()` elsewhere and back, `load_state_dict` with assign=True) gets new graphs, not stale
ones. Modes (train/eval) are not part of the key: the models here have no mode-dependent layers.
"""
from __future__ import annotations

import torch
from torch import Tensor

from planners.base import Incumbent, clip

# Shapes kept per planner, least recently used dropped first. An evaluation's batch shrinks one episode at a time,
# so a batch of b episodes visits up to b sizes at each horizon; each shape holds a few (B, H, D) buffers.
MAX_SHAPES = 64


def solve_graphs(planner, model, start: Tensor, horizon: int) -> "SolveGraphs":
    """The planner's graphs for this model and shape, made (not yet captured) on first use."""
    weights = tuple(t.data_ptr() for t in (*model.parameters(), *model.buffers())) \
        if isinstance(model, torch.nn.Module) else ()
    # entries hold the model, so its id is not reused while they live
    key = (id(model), weights, tuple(start.shape), horizon, start.dtype, start.device)
    cache = planner.solve_graphs
    if key in cache:
        cache[key] = cache.pop(key)  # most recently used last
    else:
        if len(cache) >= MAX_SHAPES:
            del cache[next(iter(cache))]
        cache[key] = SolveGraphs(planner, model, start, horizon)
    return cache[key]


def capture(fn, state: list[Tensor], warmups: int):
    """Run fn `warmups` times on a side stream (lazy initialisation must not happen while capturing), capture it
    in a CUDA graph, then undo the warm-up's writes to `state`. Returns the graph and fn's (static) outputs."""
    device = state[0].device
    saved = [t.clone() for t in state]
    with torch.cuda.device(device):  # the capture stream must be on the tensors' GPU, whichever is current
        main, side = torch.cuda.current_stream(), torch.cuda.Stream()
        side.wait_stream(main)
        with torch.cuda.stream(side):
            for _ in range(warmups):
                fn()
        main.wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = fn()
    for live, copy in zip(state, saved):
        live.copy_(copy)
    return graph, outputs


class SolveGraphs:
    """One solve shape's static buffers (the Lifted variables, the incumbent, the per-iteration inputs) and its
    two graphs, each captured on first use."""

    def __init__(self, planner, model, start: Tensor, horizon: int):
        from planners.grasp import Lifted
        B, D = start.shape
        self.planner, self.model = planner, model
        self.lifted = Lifted(B, horizon, D, model.action_dim, planner.cfg, start)
        self.best: Incumbent | None = None
        self.sigma = torch.zeros_like(self.lifted.scale)  # sigma * k (B, 1, 1)
        self.gamma = torch.zeros((), device=start.device, dtype=start.dtype)
        self.corrections = torch.zeros(2, device=start.device, dtype=start.dtype)
        self.noise = torch.zeros_like(self.lifted.states)  # (B, H-1, D)
        self.iteration_graph = self.sync_graph = None
        self.iteration_out = self.sync_out = None  # the graphs' static outputs

    def incumbent(self, actions: Tensor, states: Tensor) -> Incumbent:
        """The solve's incumbent, in buffers that stay the same across solves (the sync graph writes to them)."""
        if self.best is None:
            self.best = Incumbent(self.model, self.lifted.start, self.lifted.goal, actions, states)
        else:
            self.best.restart(actions, states)
        return self.best

    def iterate(self, sigma: float, gamma: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """One lifted iteration, as the eager path's. Returns dyn_loss and goal_loss (B,), valid until the next."""
        lifted = self.lifted
        torch.mul(lifted.scale, sigma, out=self.sigma)
        self.gamma.fill_(gamma)
        second, first = lifted.adam.corrections()
        self.corrections[0].fill_(second)
        self.corrections[1].fill_(first)
        if sigma > 0:
            torch.randn(self.noise.shape, generator=generator, out=self.noise)
        if self.iteration_graph is None:
            self.iteration_graph, self.iteration_out = capture(
                self._iteration, [lifted.flat, lifted.adam.m, lifted.adam.v, lifted.grad], warmups=3)
        self.iteration_graph.replay()
        return self.iteration_out

    def _iteration(self) -> tuple[Tensor, Tensor]:
        lifted, planner = self.lifted, self.planner
        losses = planner._lifted_grad(self.model, lifted.chain, lifted.actions, lifted.grad_states,
                                      lifted.grad_actions, self.gamma, lifted.scale)
        lifted.adam.step_graphable(lifted.grad, self.corrections)
        lifted.states.addcmul_(self.noise, self.sigma)
        clip(self.model, lifted.actions, planner.cfg.clip_actions)
        return losses

    def sync(self) -> tuple[Tensor, Tensor]:
        """The gradient sync, as the eager path's `_sync_grad`: returns the entering iterate's true cost (B,) and
        rollout (B, H, D), valid until the next sync."""
        if self.sync_graph is None:
            best = self.best
            self.sync_graph, self.sync_out = capture(
                self._sync, [self.lifted.flat, best.cost, best.actions, best.states, best.nonfinite], warmups=1)
        self.sync_graph.replay()
        return self.sync_out

    def _sync(self) -> tuple[Tensor, Tensor]:
        lifted = self.lifted
        return self.planner._sync_grad(self.model, lifted.start, lifted.goal, lifted.actions, lifted.states,
                                       self.best, lifted.scale)
