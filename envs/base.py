"""The goal-conditioned environment interface every env implements, and the action block handled in one place.

A concrete env subclasses `GoalEnv` and implements the single-step physics (`_step_physics`), state access
(`get_state`/`set_state`), drawing (`_render_pixels`), a low-dim observation (`_state_obs`), the success check
and distance of the field, a sampler of reachable states and the data policy. `GoalEnv` turns those into a
gymnasium env whose one `step` is one *planner step*: `action_block` env actions stacked into one vector of
size `action_block * action_dim`, executed in order. Everything above the env (data, world model, planners, MPC)
lives at that block level.

Tasks: `reset(seed=...)` samples a start and a goal from the seed. `goal_mode=random` draws a random reachable
state; `goal_mode=trajectory` runs the data policy `goal_steps` NATIVE env steps from the start (the LeWM harness
counts dataset frames, i.e. native steps: 25 frames = 5 planner steps at action_block 5). A task already solved at
its start is rejected and redrawn. `options={"start_state": s, "goal_state": g}` pins either one; a goal
not pinned is drawn from the start as above (for `trajectory`, the data policy run from the pinned start).

Every env declares its `state_variables`: the named parts of `get_state()` (position, angle or velocity) and which
of them the task's success depends on; world-model probes (`worldmodels.metrics`) read them.

Beyond the gymnasium API every env offers `hold_action()` (the block action that keeps the agent still from the
current state: the fallback when a plan is unusable) and `coverage(states)` (how well a set of data-policy states
covers what the task needs; `envs.data.collect` reports it).
"""
from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import gymnasium as gym
import numpy as np

OBS_TYPES = ("pixels", "state")
GOAL_MODES = ("random", "trajectory")
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 512


def occupied_share(points: np.ndarray, low, high, bins) -> float:
    """Share of the cells of a regular grid over the box [low, high] (one bin count per column of `points` (N, K))
    that hold at least one point; points outside the box are ignored."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, len(bins))
    counts, _ = np.histogramdd(points, bins=bins, range=list(zip(low, high)))
    return float((counts > 0).mean())


STATE_KINDS = ("position", "angle", "velocity")


class StateVariable(NamedTuple):
    """A named part of the state vector: `index` (its columns of get_state()), `kind` (one of STATE_KINDS; an angle
    is one column, in radians, that may wrap) and `task` (whether success depends on it)."""

    name: str
    index: tuple[int, ...]
    kind: str
    task: bool


class EnvError(ValueError):
    """Bad env name, option or input; the message is one line for the user."""


@dataclass(frozen=True)
class EnvConfig:
    """What selects and shapes an env. `options` holds env-specific settings (e.g. a maze layout).
    `goal_steps` counts native env steps (not planner steps) of the data policy for `goal_mode=trajectory`."""

    name: str
    obs_type: str = "pixels"
    image_size: int = 64
    action_block: int = 5
    goal_mode: str = "random"
    goal_steps: int = 25
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.obs_type not in OBS_TYPES:
            raise EnvError(f"unknown obs_type {self.obs_type!r}; choose one of: {', '.join(OBS_TYPES)}")
        if not MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE:
            raise EnvError(f"image_size={self.image_size} out of range [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}]")
        if self.action_block < 1:
            raise EnvError(f"action_block={self.action_block}: must be >= 1")
        if self.goal_mode not in GOAL_MODES:
            raise EnvError(f"unknown goal_mode {self.goal_mode!r}; choose one of: {', '.join(GOAL_MODES)}")
        if self.goal_steps < 1:
            raise EnvError(f"goal_steps={self.goal_steps}: must be >= 1")


class GoalEnv(gym.Env):
    """Base of every env. Subclasses set `action_low`, `action_high` (native, shape (action_dim,)),
    `state_obs_dim` and `state_variables` (covering every column of get_state() once), call
    `super().__init__(cfg)` and implement the abstract methods below."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    max_task_tries = 1000
    default_options: dict[str, Any] = {}  # the value of each `cfg.options` key the config leaves out
    data_policy_revision = 1  # bumped whenever `data_action` changes, so cached datasets of the old one are not reused
    action_low: np.ndarray
    action_high: np.ndarray
    state_obs_dim: int
    state_variables: tuple[StateVariable, ...]

    def __init__(self, cfg: EnvConfig):
        self.cfg = cfg
        self.render_mode = "rgb_array"
        self.action_dim = int(self.action_low.shape[0])
        block = cfg.action_block
        self.action_space = gym.spaces.Box(
            np.tile(self.action_low, block).astype(np.float32),
            np.tile(self.action_high, block).astype(np.float32), dtype=np.float32)
        if cfg.obs_type == "pixels":
            self.observation_space = gym.spaces.Box(0, 255, (cfg.image_size, cfg.image_size, 3), np.uint8)
        else:
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.state_obs_dim,), np.float32)
        self.goal_state: np.ndarray | None = None
        self.goal_obs: np.ndarray | None = None

    # ---- implemented by each env -------------------------------------------------------------------------
    def get_state(self) -> np.ndarray:
        """Full physical state, float64 (S,); `set_state(get_state())` restores the env exactly."""
        raise NotImplementedError

    def set_state(self, state: np.ndarray) -> None:
        raise NotImplementedError

    def _step_physics(self, action: np.ndarray) -> None:
        """Advance one env step with one native action (action_dim,), already clipped to the bounds."""
        raise NotImplementedError

    def _render_pixels(self) -> np.ndarray:
        """The current state drawn as uint8 (image_size, image_size, 3)."""
        raise NotImplementedError

    def _state_obs(self) -> np.ndarray:
        """Low-dim observation of the current state, float32 (state_obs_dim,)."""
        raise NotImplementedError

    def is_success(self, state: np.ndarray, goal_state: np.ndarray) -> bool:
        raise NotImplementedError

    def distance(self, state: np.ndarray, goal_state: np.ndarray) -> float:
        raise NotImplementedError

    def sample_state(self, rng: np.random.Generator) -> np.ndarray:
        """A random reachable state (used for starts and `goal_mode=random` goals)."""
        raise NotImplementedError

    def data_action(self, rng: np.random.Generator) -> np.ndarray:
        """One native action of the data policy from the current state; the policy must cover the task."""
        raise NotImplementedError

    def _hold_native(self) -> np.ndarray:
        """The native action (action_dim,) that brings the agent to rest from the current state (see hold_action)."""
        raise NotImplementedError

    def coverage(self, states: np.ndarray) -> dict[str, float]:
        """Coverage statistics (name -> number in [0, 1] unless the name says otherwise) of data-policy states
        (episodes, T+1, S), consecutive along axis 1 (e.g. a dataset's `states`)."""
        return {}

    def task_info(self, state: np.ndarray, goal_state: np.ndarray) -> dict[str, Any]:
        """Extra per-step info entries beyond success and distance (same keys on every call); none by default."""
        return {}

    # ---- shared machinery ---------------------------------------------------------------------------------
    def observe(self) -> np.ndarray:
        return self._render_pixels() if self.cfg.obs_type == "pixels" else self._state_obs()

    def observe_state(self, state: np.ndarray) -> np.ndarray:
        """The observation of an arbitrary state (e.g. a goal), leaving the env where it was."""
        return self._at_state(state, self.observe)

    def _at_state(self, state: np.ndarray, look: Callable[[], np.ndarray]) -> np.ndarray:
        """`look()` with the env set to `state`, then put back where it was."""
        current = self.get_state()
        self.set_state(state)
        out = look()
        self.set_state(current)
        return out

    def render(self) -> np.ndarray:
        return self._render_pixels()

    def pixel_xy(self, states: np.ndarray) -> np.ndarray:
        """(N, S) states -> (N, 2) continuous pixel coordinates (x right, y down; pixel i spans [i, i+1)) in the
        env's frames of the point the task is about, for pictures that mark states on a frame. Optional: an env
        without a natural point raises NotImplementedError (see `has_pixel_xy`)."""
        raise NotImplementedError

    @property
    def has_pixel_xy(self) -> bool:
        return type(self).pixel_xy is not GoalEnv.pixel_xy

    def render_state(self, state: np.ndarray) -> np.ndarray:
        """The frame of an arbitrary state (e.g. a goal, for state observations), leaving the env where it was."""
        return self._at_state(state, self._render_pixels)

    def check_action(self, action) -> np.ndarray:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_space.shape:
            raise EnvError(f"{self.cfg.name}: action shape {action.shape} != expected {self.action_space.shape} "
                           f"(action_block={self.cfg.action_block} x action_dim={self.action_dim})")
        if not np.all(np.isfinite(action)):
            shown = np.array2string(action, precision=3, max_line_width=10**6)   # one line, whatever the size
            raise EnvError(f"{self.cfg.name}: action contains NaN or inf: {shown}")
        return action

    def hold_action(self) -> np.ndarray:
        """The block action (action_block * action_dim,) float32, native units, that keeps the agent still from the
        current state: each native action brings it to rest as fast as the action bounds allow (zero for an agent
        without momentum), so an agent already at rest stays where it is. Computed by running the block from the
        current state and restoring it (which restarts the data policy, as `set_state` does)."""
        current = self.get_state()
        block = []
        for _ in range(self.cfg.action_block):
            action = np.clip(self._hold_native(), self.action_low, self.action_high).astype(np.float32)
            self._step_physics(action.astype(np.float64))
            block.append(action)
        self.set_state(current)
        return np.concatenate(block)

    def step(self, action):
        if self.goal_state is None:
            raise EnvError(f"{self.cfg.name}: step() called before reset()")
        action = self.check_action(action).reshape(self.cfg.action_block, self.action_dim)
        action = np.clip(action, self.action_low, self.action_high)
        for a in action:
            self._step_physics(a)
        return self.observe(), -self._distance_now(), False, False, self._info()

    def sample_task(self, rng: np.random.Generator, start: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(start_state, goal_state) per `goal_mode` from `start` (None: a sampled one), the goal redrawn while the
        start already satisfies it (and the start too, unless given)."""
        given = start
        for _ in range(self.max_task_tries):
            start = self.sample_state(rng) if given is None else np.asarray(given, dtype=np.float64)
            if self.cfg.goal_mode == "random":
                goal = self.sample_state(rng)
            else:
                self.set_state(start)
                for _ in range(self.cfg.goal_steps):
                    self._step_physics(np.clip(self.data_action(rng), self.action_low, self.action_high))
                goal = self.get_state()
            if not self.is_success(start, goal):
                return start, goal
        if self.cfg.goal_mode == "trajectory":
            hint = (f"a goal {self.cfg.goal_steps} native steps ahead (goal_steps) stays within the success threshold "
                    f"of its start: use more goal_steps (a longer horizon)")
        else:
            hint = "every goal drawn was within the success threshold of " + ("the start given" if given is not None
                                                                              else "its start")
        raise EnvError(f"{self.cfg.name}: no task in {self.max_task_tries} draws whose start is not already at its "
                       f"goal (goal_mode={self.cfg.goal_mode}); {hint}")

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = options or {}
        start, goal = options.get("start_state"), options.get("goal_state")
        if goal is None:
            start, goal = self.sample_task(self.np_random, start)
        elif start is None:
            start = self.sample_task(self.np_random)[0]
        self.goal_state = np.asarray(goal, dtype=np.float64).copy()
        self.goal_obs = self.observe_state(self.goal_state)
        self.set_state(np.asarray(start, dtype=np.float64))
        return self.observe(), self._info()

    def _distance_now(self) -> float:
        return float(self.distance(self.get_state(), self.goal_state))

    def _info(self) -> dict:
        state = self.get_state()
        # copies: a caller that keeps or edits an info must not reach the env's goal (gymnasium checks this)
        return {"state": state, "goal_state": self.goal_state.copy(), "goal_obs": self.goal_obs.copy(),
                "success": bool(self.is_success(state, self.goal_state)),
                "distance": float(self.distance(state, self.goal_state)), **self.task_info(state, self.goal_state)}
