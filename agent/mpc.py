"""Receding-horizon control: plan to the goal in latent space, execute the first steps, shift the plan, replan.

One control step, for the episodes still running (B rows of an `envs.EnvBatch`):
  1. encode their last k = `model.history` observations -> starts (B, D); goals (B, D) were encoded once at reset;
  2. ONE batched `planner.plan(model, start, goal, horizon, warm_start, iters)` call;
  3. execute the first `replan_every` planner steps (each one env step = action_block native actions, mapped
     back from the planner's normalised actions with `model.denormalize_actions`);
  4. keep the unexecuted rest: shifted by the executed steps it is the next warm start (`shift_plan`).
An episode ends at its first success (any step within the budget, the LeWM protocol) or when it has used the
budget; ended episodes drop out of the batch and cost no more planner work. Tasks already solved at reset are
flagged `trivial` and never run (envs redraw such tasks, so any that appear are counted and excluded).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from planners.base import line_states


class AgentError(ValueError):
    """A bad MPC setting; the message is one line for the user."""


@dataclass(frozen=True)
class MPCConfig:
    """Loop semantics, all counted in planner steps (= env steps; one env step executes action_block actions).

    horizon: planner steps per plan (>= 1).
    budget: env steps an episode may use (>= 1); success is checked after every one of them.
    replan_every: planner steps executed from each plan before replanning, 1..horizon (1 = classic MPC; horizon =
        each plan executed whole, which leaves nothing to warm-start from: every solve is cold).
    warm_start: start each replan from the previous plan shifted by the executed steps (False: cold restarts).
    stop_on_success: end an episode at its first success (True, the LeWM protocol). False runs every episode for
        the full budget, so `success_final` scores the last state as DINO-WM does; with True it equals `success`.
    """

    horizon: int
    budget: int
    replan_every: int = 1
    warm_start: bool = True
    stop_on_success: bool = True

    def __post_init__(self):
        if self.horizon < 1:
            raise AgentError(f"mpc.horizon={self.horizon}: must be >= 1 planner step")
        if self.budget < 1:
            raise AgentError(f"mpc.budget={self.budget}: must be >= 1 env step")
        if not 1 <= self.replan_every <= self.horizon:
            raise AgentError(f"mpc.replan_every={self.replan_every}: must be in [1, horizon={self.horizon}]")


def shift_plan(plan, steps: int, start: torch.Tensor, goal: torch.Tensor, model=None):
    """The warm start for the next solve after `steps` planner steps of `plan` were executed.

    Actions (B, H, A) and any elites (B, K, H, A): shifted left by `steps`; the new tail is padded with zeros, i.e.
    the dataset-mean action in the normalised space - the same value a cold start uses, so the tail carries no
    stale intent.
    Virtual states (B, H-1, D), s_1..s_{H-1}: the executed ones are dropped, the kept ones s_{steps+1}.. move to
    the front and the `steps` new tail states are spread on the line from the last kept state (or the new start)
    to the goal, which the new plan reaches at s_H, as in a cold start.
    Consistency: if `model` is given the kept states are NOT the plan's virtual states but the rollout of the
    kept actions from the new `start` (B, D). Use this when the plan's actions are a best-by-rollout incumbent
    while its states come from a later iterate: shifting such states next to those actions leaves the pair
    inconsistent (the design note grasp.md section 7 reports ~8 points of success lost). Both come from one plan then.
    """
    actions = plan.actions
    B, H, A = actions.shape
    shifted = torch.cat([actions[:, steps:], actions.new_zeros(B, min(steps, H), A)], dim=1)  # (B, H, A)
    states = plan.states
    if states is not None:
        n_kept = max(H - 1 - steps, 0)
        if model is None:
            kept = states[:, steps:]  # (B, n_kept, D)
        else:
            with torch.no_grad():
                kept = model.rollout(start, shifted[:, :n_kept]) if n_kept else states[:, :0]
        anchor = kept[:, -1] if n_kept else start
        states = torch.cat([kept, line_states(anchor, goal, H - n_kept)], dim=1)  # (B, H-1, D)
    elites = plan.elites  # (B, K, H, A) (iCEM): shifted and padded like the actions
    if elites is not None:
        elites = torch.cat([elites[:, :, steps:], elites.new_zeros(B, elites.shape[1], min(steps, H), A)], dim=2)
    return dataclasses.replace(plan, actions=shifted, states=states, elites=elites)


def select_rows(plan, rows: torch.Tensor):
    """The plan restricted to the problems `rows` (indices into its batch axis)."""
    return dataclasses.replace(
        plan, actions=plan.actions[rows], cost=plan.cost[rows], nonfinite=plan.nonfinite[rows],
        states=None if plan.states is None else plan.states[rows],
        elites=None if plan.elites is None else plan.elites[rows],
        diagnostics={k: v[:, rows] for k, v in plan.diagnostics.items()})


@dataclass
class Episode:
    """What one episode did. Distances are the env's task distance, at reset and after every env step."""

    seed: int
    trivial: bool  # solved at reset: never run, excluded from every rate
    distances: list[float]
    success: bool = False  # goal reached after any env step within the budget
    success_final: bool = False  # goal satisfied by the last state
    steps: int = 0  # env steps executed
    # Planning time is the episode's own: each batched solve's wall clock divided by the problems in it, summed over
    # the solves it took part in (env stepping, rendering and encoding not counted), so it does not depend on the
    # batch size or on which other episodes share the batch.
    time_to_success_s: float | None = None  # its planning seconds up to the solve whose steps reached the goal
    plan_time_s: float = 0.0  # its planning seconds over the whole episode
    control_steps: int = 0
    iters: int = 0  # planner iterations summed over its solves
    nonfinite_plans: int = 0  # solves that found no finite-cost plan; the env's hold action was executed instead
    frames: list[np.ndarray] = field(default_factory=list)  # rendered frames, only for recorded episodes
    # traced episodes (MPCAgent(trace=True)) only: the observations and the executed native actions (clipped to the
    # env's bounds, as the env applies them), one per env step; `states` is kept for them too
    observations: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    goal_frame: np.ndarray | None = None
    first_plan: dict[str, torch.Tensor] = field(default_factory=dict)  # recorded episodes: latents of plan 1
    # recorded and traced episodes: true env states (at reset and after every step); recorded ones only: the goal
    # state and every plan's latents with the env steps executed before it (for pictures that place plans on the frame)
    states: list[np.ndarray] = field(default_factory=list)
    goal_state: np.ndarray | None = None
    plans: list[tuple[int, dict[str, torch.Tensor]]] = field(default_factory=list)

    @property
    def final_distance(self) -> float:
        return self.distances[-1]

    def summary(self) -> dict:
        """The episode's numbers for a results file (no frames, latents or per-step distances)."""
        return {"seed": self.seed, "trivial": self.trivial, "success": self.success,
                "success_final": self.success_final, "steps": self.steps, "final_distance": self.final_distance,
                "time_to_success_s": self.time_to_success_s, "plan_time_s": self.plan_time_s,
                "control_steps": self.control_steps, "iters": self.iters, "nonfinite_plans": self.nonfinite_plans}


@dataclass
class PlanRecord:
    """One batched solve: which episodes, warm or cold, its wall clock and the planner's diagnostics (iters, B)."""

    control_step: int
    rows: list[int]
    warm: bool
    seconds: float
    iters: int
    cost: torch.Tensor
    diagnostics: dict[str, torch.Tensor]


class MPCAgent:
    """Runs batches of episodes with one planner and one world model (frozen, eval mode).

    The planner picks its iteration budget: `planner.iters` for the first (cold) solve of an episode,
    `planner.iters_warm` for warm-started ones.
    generator: the planner noise of a `run`, drawn in sequence by all its solves (None: a new one seeded 0 per run).
    A plan whose cost is not finite is not executed: the env's `hold_actions()` (native) keep the agent still.
    resync_states: re-initialise the shifted virtual states from the rollout of the shifted actions
        (see `shift_plan`); needed when the planner returns best-by-rollout actions beside later states.
    trace: every episode keeps its observations, executed actions and states (to write them as data).
    """

    def __init__(self, model, planner, cfg: MPCConfig, generator: torch.Generator | None = None,
                 resync_states: bool = True, trace: bool = False):
        self.model, self.planner, self.cfg = model, planner, cfg
        self.generator, self.resync_states, self.trace = generator, resync_states, trace

    @torch.no_grad()
    def encode(self, windows: np.ndarray, states: np.ndarray) -> torch.Tensor:
        """Windows (N, k, ...) and the env states (N, S) of their newest frames (read by a model with
        proprioception) -> latents (N, D)."""
        device = self.model.device
        return self.model.encode(torch.as_tensor(windows, device=device), torch.as_tensor(states, device=device))

    def run(self, envs, seeds: list[int], options_list: list[dict] | None = None, record: list[bool] | None = None,
            on_plan=None, on_episode=None) -> tuple[list[Episode], list[PlanRecord]]:
        """Run len(seeds) episodes at once in `envs` (an EnvBatch of that size; `options_list` goes to its reset).
        `record[i]` keeps episode i's frames, goal frame and first plan's latents; `on_plan(record)` is called
        after every solve, `on_episode(i, episode)` when episode i has ended (trivial ones at reset)."""
        cfg, model = self.cfg, self.model
        n = len(seeds)
        record = record or [False] * n
        window, state, goal, episodes = self._reset(envs, seeds, options_list, record)
        done = np.array([e.trivial for e in episodes])
        for i in np.flatnonzero(done if on_episode is not None else []):
            on_episode(int(i), episodes[i])
        records: list[PlanRecord] = []
        prev, prev_rows, executed = None, None, 0  # the last plan, its episodes, planner steps executed from it
        control_step = 0
        generator = self.generator if self.generator is not None else torch.Generator(model.device).manual_seed(0)
        while not done.all():
            rows = np.flatnonzero(~done)
            start = self.encode(window[rows], state[rows])  # (b, D)
            warm = None
            if cfg.warm_start and prev is not None and executed < cfg.horizon:  # a plan executed whole leaves none
                keep = torch.as_tensor(np.searchsorted(prev_rows, rows))
                warm = shift_plan(select_rows(prev, keep), executed, start, goal[rows],
                                  model if self.resync_states else None)
            tic = time.perf_counter()
            plan = self.planner.plan(model, start, goal[rows], cfg.horizon, warm_start=warm, generator=generator)
            seconds = time.perf_counter() - tic
            rec = PlanRecord(control_step, rows.tolist(), warm is not None, seconds, int(plan.iters),
                             plan.cost.detach().cpu(), {k: v.detach().cpu() for k, v in plan.diagnostics.items()})
            records.append(rec)
            if on_plan is not None:
                on_plan(rec)
            native = model.denormalize_actions(plan.actions).detach().cpu().numpy().astype(np.float32)  # (b, H, A)
            unusable = rows[~torch.isfinite(plan.cost).cpu().numpy()]  # episodes whose plan is not executed
            for j, i in enumerate(rows):
                e = episodes[i]
                e.plan_time_s += seconds / len(rows)
                e.control_steps += 1
                e.iters += int(plan.iters)
                e.nonfinite_plans += int(i in unusable)
                if record[i]:
                    e.plans.append((e.steps, self._plan_latents(plan, start, j)))
                    e.first_plan = e.first_plan or e.plans[0][1]
            for executed in range(1, cfg.replan_every + 1):
                step_actions = np.zeros((n, native.shape[-1]), np.float32)
                step_actions[rows] = native[:, executed - 1]
                if len(unusable):
                    step_actions[unusable] = envs.hold_actions()[unusable]
                window, state = self._step(envs, step_actions, window, episodes, done, record, on_episode)
                if done.all():
                    break
            prev, prev_rows = plan, rows
            control_step += 1
        return episodes, records

    def _reset(self, envs, seeds: list[int], options_list, record: list[bool]):
        """Resets `envs` to the episodes' tasks. Returns the encoder's first windows (n, k, *obs_shape), the env
        states (n, S), the goals' latents (n, D) and the new episodes, the recorded ones with their first frame,
        state, goal frame and state."""
        obs, info = envs.reset(seeds, options_list)
        # the encoder sees the last k = model.history observations; at reset, and for the goal (at rest), one
        # observation repeated k times, as frames before an episode's first repeat it in training
        window = np.repeat(obs[:, None], self.model.history, axis=1)  # (n, k, *obs_shape)
        goal = self.encode(np.repeat(info["goal_obs"][:, None], self.model.history, axis=1), info["goal_state"])
        episodes = [Episode(seed=int(s), trivial=bool(info["success"][i]), distances=[float(info["distance"][i])])
                    for i, s in enumerate(seeds)]
        for i, e in enumerate(episodes):
            if self.trace:
                e.observations.append(obs[i])
            if record[i] or self.trace:
                e.states.append(np.asarray(info["state"][i]))
        pixels = obs.ndim == 4  # pixel observations are the frames; state observations need rendering
        if any(record):
            frames = obs if pixels else envs.render()
            for i in np.flatnonzero(record):
                episodes[i].frames.append(frames[i])
                episodes[i].goal_state = np.asarray(info["goal_state"][i])
                episodes[i].goal_frame = (info["goal_obs"][i] if pixels
                                          else envs.envs[i].render_state(info["goal_state"][i]))
        return window, info["state"], goal, episodes

    def _step(self, envs, step_actions: np.ndarray, window: np.ndarray, episodes: list[Episode], done: np.ndarray,
              record: list[bool], on_episode) -> tuple[np.ndarray, np.ndarray]:
        """One env step of the running episodes (not `done`) with native `step_actions` (n, A): each one's steps,
        distance, success (and frame and state if recorded); those that end are marked in `done` (in place) and
        passed to `on_episode`. Returns the encoder's windows (n, k, *obs_shape) with the new observation last, and
        the env states (n, S)."""
        obs, _, _, _, info = envs.step(step_actions, ~done)
        window = np.concatenate([window[:, 1:], obs[:, None]], axis=1)
        frames = obs if obs.ndim == 4 or not any(record) else envs.render()  # pixel observations are the frames
        for i in np.flatnonzero(~done):
            e = episodes[i]
            e.steps += 1
            e.distances.append(float(info["distance"][i]))
            e.success_final = bool(info["success"][i])
            if e.success_final and not e.success:
                e.success, e.time_to_success_s = True, e.plan_time_s
            if record[i]:
                e.frames.append(frames[i])
            if record[i] or self.trace:
                e.states.append(np.asarray(info["state"][i]))
            if self.trace:
                e.observations.append(obs[i])
                e.actions.append(np.clip(step_actions[i], envs.action_space.low, envs.action_space.high))
            done[i] = e.steps >= self.cfg.budget or (self.cfg.stop_on_success and e.success)
            if done[i] and on_episode is not None:
                on_episode(int(i), e)
        return window, info["state"]

    @torch.no_grad()
    def _plan_latents(self, plan, start: torch.Tensor, j: int) -> dict[str, torch.Tensor]:
        """Latents of problem j's plan for pictures: the virtual states (if any) and the model's rollout."""
        out = {"rollout": self.model.rollout(start[j:j + 1], plan.actions[j:j + 1])[0].cpu()}  # (H, D)
        if plan.states is not None:
            out["virtual"] = plan.states[j].detach().cpu()  # (H-1, D)
        return out
