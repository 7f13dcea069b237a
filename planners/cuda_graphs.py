"""GRASP's lifted iteration as one CUDA graph (opt-in: `cuda_graphs: true`, effective only when the model and the
latents are on a CUDA device; planners/grasp.py imports this module only then, so the CPU path never touches it).

At the model sizes of this project a lifted iteration is launch-bound on a GPU: ~20 small kernels for predict,
its action backward, the closed-form state gradient, Adam, noise and clipping (design note grasp.md section 8: a bare
iteration took 0.925 ms eager and 0.168 ms replayed as one graph on an H100, B = 16, H = 50). The graph is
captured once per plan() call on the planner's own buffers (the chain of states, the actions, the gradient
buffer and Adam's moments are static tensors), after a warm-up on a side stream whose effects are undone.
What changes between iterations lives in small device tensors filled before each replay: sigma (times the latent
scale k), gamma, Adam's bias
corrections, and the state noise, which is drawn eagerly from the planner's generator with the same call as the
eager path, so both paths consume the same random numbers. The sync (serial rollout) stays eager.

Written without a GPU at hand and kept opt-in (default false): tests/planners/test_planner_grasp.py checks it
against the eager path and is skipped where CUDA is absent.
"""
from __future__ import annotations

import torch
from torch import Tensor

from planners.base import clip

WARMUP_ITERS = 3


class GraspGraph:
    def __init__(self, planner, model, chain: Tensor, actions: Tensor, grad: Tensor, grad_states: Tensor,
                 grad_actions: Tensor, adam, generator: torch.Generator, scale: Tensor):
        self.adam, self.generator = adam, generator
        like = chain
        self.scale = scale  # the latent scale k (B, 1, 1), fixed for the solve
        self.sigma = torch.zeros_like(scale)  # sigma * k
        self.gamma = torch.zeros((), device=like.device, dtype=like.dtype)
        self.corrections = torch.zeros(2, device=like.device, dtype=like.dtype)
        self.states = chain[:, 1:-1]
        self.noise = torch.zeros_like(self.states)

        def iteration() -> tuple[Tensor, Tensor]:
            losses = planner._lifted_grad(model, chain, actions, grad_states, grad_actions, self.gamma, scale)
            adam.step_graphable(grad, self.corrections)
            self.states.addcmul_(self.noise, self.sigma)
            clip(model, actions, planner.cfg.clip_actions)
            return losses

        saved = [t.clone() for t in (adam.params, adam.m, adam.v, grad)]
        side = torch.cuda.Stream(device=like.device)
        side.wait_stream(torch.cuda.current_stream(like.device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_ITERS):
                iteration()
        torch.cuda.current_stream(like.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs = iteration()  # dyn_loss, goal_loss (B,): overwritten by every replay
        for live, copy in zip((adam.params, adam.m, adam.v, grad), saved):
            live.copy_(copy)

    def step(self, sigma: float, gamma: float) -> tuple[Tensor, Tensor]:
        """One lifted iteration (the eager path's `_lifted_grad`, Adam step, noise, clip). Returns the static
        dyn_loss and goal_loss (B,), valid until the next call."""
        torch.mul(self.scale, sigma, out=self.sigma)
        self.gamma.fill_(gamma)
        second, first = self.adam.corrections()
        self.corrections[0].fill_(second)
        self.corrections[1].fill_(first)
        if sigma > 0:
            torch.randn(self.noise.shape, generator=self.generator, out=self.noise)
        self.graph.replay()
        return self.outputs
