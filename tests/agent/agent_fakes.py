"""A tiny exact world model and a batched 2-D point env with the EnvBatch interface, for fast MPC tests."""
from __future__ import annotations

import numpy as np
import torch

STEP = 0.5  # a native action of 1 moves the point by STEP
SUCCESS_RADIUS = 0.25


class PointModel:
    """The true dynamics of `PointBatch` as a world model: latent = position, s' = s + STEP * a. Normalised
    actions are native ones scaled by 2, so (de)normalisation is exercised. `history` k: the agent feeds windows of
    the last k observations; the latent is the newest one's position."""

    latent_dim, action_dim = 2, 2

    def __init__(self, history: int = 1):
        self.device, self.history = torch.device("cpu"), history
        self.action_low, self.action_high = torch.full((2,), -2.0), torch.full((2,), 2.0)

    def encode(self, windows, states=None):
        windows = torch.as_tensor(windows, dtype=torch.float32)  # (N, k, 2)
        assert windows.shape[1:] == (self.history, 2), windows.shape
        return windows[:, -1]

    def predict(self, s, a):
        return s + STEP * self.denormalize_actions(a)

    def rollout(self, s0, actions):
        out, s = [], s0
        for t in range(actions.shape[1]):
            s = self.predict(s, actions[:, t])
            out.append(s)
        return torch.stack(out, 1)  # (B, T, D)

    def normalize_actions(self, a):
        return a * 2

    def denormalize_actions(self, a):
        return a / 2


def draw(state):
    frame = np.zeros((8, 8, 3), np.uint8)
    x, y = np.clip(((np.asarray(state) + 2) * 2).astype(int), 0, 7)
    frame[y, x] = 255
    return frame


class PointBatch:
    """n points in [-2, 2]^2; obs = position (float32); actions clipped to [-1, 1]; success within 0.25."""

    def __init__(self, n: int):
        self.n = n
        self.steps_taken = np.zeros(n, int)

    def _info(self):
        dist = np.linalg.norm(self.state - self.goal, axis=1)
        return {"state": self.state.copy(), "goal_state": self.goal.copy(), "goal_obs": self.goal.astype(np.float32),
                "success": dist < SUCCESS_RADIUS, "distance": dist}

    def reset(self, seeds, options_list=None):
        assert len(seeds) == self.n
        tasks = [np.random.default_rng(s).uniform(-2, 2, (2, 2)) for s in seeds]
        for i, opts in enumerate(options_list or [None] * self.n):
            if opts:
                tasks[i] = np.stack([opts.get("start_state", tasks[i][0]), opts.get("goal_state", tasks[i][1])])
        self.state = np.stack([t[0] for t in tasks])
        self.goal = np.stack([t[1] for t in tasks])
        self.steps_taken[:] = 0
        return self.state.astype(np.float32), self._info()

    def step(self, actions, mask=None):
        mask = np.ones(self.n, bool) if mask is None else np.asarray(mask)
        assert np.isfinite(actions).all()
        self.state[mask] += STEP * np.clip(actions[mask], -1, 1)
        self.steps_taken[mask] += 1
        info = self._info()
        return self.state.astype(np.float32), -info["distance"], np.zeros(self.n, bool), np.zeros(self.n, bool), info

    def hold_actions(self):
        return np.zeros((self.n, 2), np.float32)  # (B, A) native: the point has no momentum

    def render(self):
        return np.stack([draw(s) for s in self.state])

    @property
    def envs(self):  # EnvBatch keeps its envs in `.envs`; the agent renders state-obs goals with them
        return [self] * self.n

    def render_state(self, state):
        return draw(state)

    def close(self):
        pass
