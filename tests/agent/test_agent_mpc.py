import numpy as np
import pytest
import torch
from agent_fakes import STEP, PointBatch, PointModel, draw

import planners
from agent import AgentError, MPCAgent, MPCConfig, shift_plan
from planners.base import Plan, line_states


def grasp(**overrides):
    """A short GRASP for the fakes in absolute latent units (relative=false), in which these budgets were set."""
    return planners.make("grasp", **{"iters": 60, "iters_warm": 20, "sigma": 0.0, "sync_every": 20,
                                     "relative": False, **overrides})


@pytest.mark.parametrize("kwargs, word", [
    ({"horizon": 0, "budget": 10}, "mpc.horizon=0"),
    ({"horizon": 5, "budget": 0}, "mpc.budget=0"),
    ({"horizon": 5, "budget": 10, "replan_every": 6}, "mpc.replan_every=6"),
    ({"horizon": 5, "budget": 10, "replan_every": 0}, "mpc.replan_every=0"),
])
def test_mpc_config_rejects_impossible_values(kwargs, word):
    with pytest.raises(AgentError, match=word):
        MPCConfig(**kwargs)


def known_plan(B=2, H=4, A=2, D=3):
    actions = torch.arange(B * H * A, dtype=torch.float32).view(B, H, A) + 1
    states = torch.arange(B * (H - 1) * D, dtype=torch.float32).view(B, H - 1, D) + 100
    return Plan(actions, torch.zeros(B), states, {"cost": torch.zeros(5, B)}, torch.zeros(B, dtype=torch.bool), 5)


def test_shift_drops_executed_steps_pads_zeros_and_spreads_the_tail_to_the_goal():
    plan, start, goal = known_plan(), torch.zeros(2, 3), torch.full((2, 3), 200.0)
    out = shift_plan(plan, 1, start, goal)
    assert torch.equal(out.actions[:, :3], plan.actions[:, 1:]) and torch.equal(out.actions[:, 3], torch.zeros(2, 2))
    assert torch.equal(out.states[:, :2], plan.states[:, 1:])  # old s_2, s_3 are the new s_1, s_2
    assert torch.allclose(out.states[:, 2], (plan.states[:, 2] + goal) / 2)  # halfway from the old s_3 to the goal
    out = shift_plan(plan, 2, start, goal)
    assert torch.equal(out.actions[:, :2], plan.actions[:, 2:]) and not out.actions[:, 2:].any()
    assert torch.equal(out.states[:, 0], plan.states[:, 2])
    assert torch.allclose(out.states[:, 1:], plan.states[:, 2:3] + torch.tensor([1 / 3, 2 / 3])[:, None]
                          * (goal - plan.states[:, 2])[:, None])
    assert torch.equal(plan.actions, known_plan().actions)  # the input plan is not modified


def test_shift_of_a_fully_executed_plan_is_a_cold_start():
    plan, start, goal = known_plan(), torch.randn(2, 3), torch.randn(2, 3)
    out = shift_plan(plan, 4, start, goal)
    assert not out.actions.any() and torch.allclose(out.states, line_states(start, goal, 4))


def test_shift_with_model_takes_kept_states_from_the_rollout_of_the_shifted_actions():
    """The grasp.md section 7 pitfall: kept virtual states must come from the same plan as the actions."""
    model = PointModel()
    plan = known_plan(D=2)
    start, goal = torch.randn(2, 2), torch.randn(2, 2)
    out = shift_plan(plan, 1, start, goal, model)
    assert torch.allclose(out.states[:, :2], model.rollout(start, plan.actions[:, 1:3]))
    assert torch.allclose(out.states[:, 2], (out.states[:, 1] + goal) / 2)
    assert plan.states is not None and not torch.allclose(out.states[:, :2], plan.states[:, 1:])


def first_iter_below(plan, tol):
    below = (plan.diagnostics["best_cost"] < tol).all(1)
    return int(below.float().argmax()) if below.any() else len(below)


def test_warm_start_from_a_solved_plan_needs_fewer_iterations():
    model, planner = PointModel(), grasp(iters=100, iters_warm=100)
    start, goal = torch.tensor([[-1.5, -1.0], [1.0, 1.5]]), torch.tensor([[1.0, 1.2], [-1.2, -0.8]])
    cold = planner.plan(model, start, goal, 6)
    assert (cold.cost < 1e-3).all()
    moved = model.rollout(start, cold.actions[:, :1])[:, 0]  # the first step executed exactly
    warm = planner.plan(model, moved, goal, 6, warm_start=shift_plan(cold, 1, moved, goal, model))
    recold = planner.plan(model, moved, goal, 6)
    assert first_iter_below(warm, 1e-2) < first_iter_below(recold, 1e-2)
    assert first_iter_below(warm, 1e-2) == 0


def run(cfg, seeds, n=None, options_list=None, planner=None, record=None):
    agent = MPCAgent(PointModel(), planner or grasp(), cfg, generator=torch.Generator().manual_seed(0))
    return agent.run(PointBatch(n or len(seeds)), seeds, options_list, record)


def test_episodes_reach_their_goals_and_finished_ones_stop_consuming_planner_work():
    episodes, solves = run(MPCConfig(horizon=8, budget=12), [1, 2, 3, 4])
    assert all(e.success and e.success_final and not e.trivial for e in episodes)
    for i, e in enumerate(episodes):
        assert e.steps == len(e.distances) - 1 == e.control_steps and e.final_distance < 0.25
        assert sum(i in s.rows for s in solves) == e.control_steps  # never planned for after success
        assert e.iters == 60 + 20 * (e.control_steps - 1)  # cold first solve, then planner.iters_warm
        assert e.time_to_success_s > 0 and e.plan_time_s > 0
    assert [s.warm for s in solves] == [False] + [True] * (len(solves) - 1)
    assert len(solves[-1].rows) < 4 or len({e.steps for e in episodes}) == 1


def test_batched_episodes_equal_sequential_ones():
    cfg = MPCConfig(horizon=6, budget=10, replan_every=2)
    seeds = [5, 6, 7]
    batched, _ = run(cfg, seeds)
    for seed, b in zip(seeds, batched):
        (single,), _ = run(cfg, [seed])
        assert (single.success, single.steps, single.iters) == (b.success, b.steps, b.iters)
        np.testing.assert_allclose(single.distances, b.distances, atol=1e-4)


def test_success_any_step_vs_final_budget_and_trivial_accounting():
    start, goal = np.array([-1.8, -1.8]), np.array([1.8, 1.8])
    options = [{"start_state": goal.copy(), "goal_state": goal.copy()},  # solved at reset: trivial
               {"start_state": start.copy(), "goal_state": goal.copy()},  # 7.2 away: > 4 steps of 0.5*sqrt(2)
               {"start_state": np.array([0.0, 0.0]), "goal_state": np.array([0.5, 0.0])}]
    episodes, solves = run(MPCConfig(horizon=4, budget=4), [0, 1, 2], options_list=options)
    trivial, far, near = episodes
    assert trivial.trivial and trivial.steps == 0 and trivial.control_steps == 0 and 0 not in solves[0].rows
    assert not far.success and far.steps == 4 and far.final_distance < far.distances[0]
    assert near.success and near.steps == 1
    # without stopping at success the near episode runs the whole budget; success still counts any step
    episodes, _ = run(MPCConfig(horizon=4, budget=4, stop_on_success=False), [0, 1, 2], options_list=options)
    assert episodes[2].steps == 4 and episodes[2].success


def run_with_warm_starts_seen(cfg: MPCConfig):
    """(episodes, solves, the warm_start each solve got) of two point episodes planned by a short GRASP."""
    seen = []

    class Spy:
        def plan(self, model, start, goal, horizon, warm_start=None, generator=None):
            seen.append(warm_start)
            return planner.plan(model, start, goal, horizon, warm_start=warm_start, generator=generator)

    planner = grasp()
    episodes, solves = MPCAgent(PointModel(), Spy(), cfg).run(PointBatch(2), [11, 12])
    return episodes, solves, seen


def test_cold_restarts_use_full_iterations_and_no_warm_start():
    _, solves, seen = run_with_warm_starts_seen(MPCConfig(horizon=5, budget=3, warm_start=False))
    assert seen and all(w is None for w in seen) and all(s.iters == 60 and not s.warm for s in solves)


def test_a_plan_executed_whole_leaves_no_warm_start():
    cfg = MPCConfig(horizon=2, budget=6, replan_every=2, stop_on_success=False)
    episodes, solves, seen = run_with_warm_starts_seen(cfg)
    assert len(solves) == 3 and all(w is None for w in seen) and all(s.iters == 60 and not s.warm for s in solves)
    assert all(e.steps == 6 for e in episodes)


class FixedPlanner:
    """Returns the same plan for every problem: native action `native` (normalised: x2) at every step, `cost`, and
    `nonfinite` set; records the planner noise it draws from the agent's generator."""

    def __init__(self, native, cost, nonfinite=True):
        self.native, self.cost, self.nonfinite, self.noise = native, cost, nonfinite, []

    def plan(self, model, start, goal, horizon, warm_start=None, generator=None):
        B = start.shape[0]
        generator = generator if generator is not None else torch.Generator().manual_seed(0)  # as planners.base
        self.noise.append(torch.rand(B, generator=generator))
        actions = model.normalize_actions(torch.tensor(self.native, dtype=torch.float32)).expand(B, horizon, 2)
        return Plan(actions.clone(), torch.full((B,), self.cost), None, {}, torch.full((B,), self.nonfinite), 1)


class HoldRight(PointBatch):
    def hold_actions(self):
        return np.tile(np.float32([0.2, 0.0]), (self.n, 1))  # distinguishable from the dataset-mean (zero) action


def test_plans_without_finite_cost_execute_the_envs_hold_action():
    """Pins a bug: the fallback was the normalised zero (the dataset-mean action, for Push-T's absolute targets
    "drive to the table centre") instead of the env's own hold action."""
    agent = MPCAgent(PointModel(), FixedPlanner([1.0, 1.0], float("inf")), MPCConfig(horizon=3, budget=2))
    env = HoldRight(1)
    start = env.reset([3])[0].copy()
    (episode,), _ = agent.run(env, [3])
    assert episode.nonfinite_plans == 2
    np.testing.assert_allclose(env.state[0] - start[0], [2 * STEP * 0.2, 0.0], atol=1e-6)


def test_a_plan_with_finite_cost_is_executed_even_if_some_iteration_was_nonfinite():
    """Pins a bug: `plan.nonfinite` (any sample or iteration non-finite) discarded plans whose cost was finite."""
    agent = MPCAgent(PointModel(), FixedPlanner([1.0, 0.0], 1.0), MPCConfig(horizon=3, budget=2))
    env = HoldRight(1)
    start = env.reset([3])[0].copy()
    (episode,), _ = agent.run(env, [3])
    assert episode.nonfinite_plans == 0
    np.testing.assert_allclose(env.state[0] - start[0], [2 * STEP, 0.0], atol=1e-6)


def test_without_a_generator_each_replan_draws_new_noise_and_runs_repeat():
    """Pins a bug: generator=None made every replan reuse the noise of a fresh generator seeded 0."""
    noise = []
    for _ in range(2):
        planner = FixedPlanner([0.0, 0.0], 1.0)
        MPCAgent(PointModel(), planner, MPCConfig(horizon=3, budget=3)).run(PointBatch(2), [1, 2])
        noise.append(torch.stack(planner.noise))  # (solves, B)
    assert noise[0].shape == (3, 2) and not torch.equal(noise[0][0], noise[0][1])
    assert torch.equal(noise[0], noise[1])


def test_planning_time_is_each_episodes_share_of_its_solves():
    episodes, solves = run(MPCConfig(horizon=8, budget=12), [1, 2, 3, 4])
    for i, e in enumerate(episodes):
        share = sum(s.seconds / len(s.rows) for s in solves if i in s.rows)
        assert e.plan_time_s == pytest.approx(share) and e.time_to_success_s == pytest.approx(share)
    assert sum(e.plan_time_s for e in episodes) == pytest.approx(sum(s.seconds for s in solves))


def test_recorded_episodes_keep_frames_and_their_first_plan():
    episodes, _ = run(MPCConfig(horizon=5, budget=3), [1, 2], record=[True, False])
    rec, plain = episodes
    assert len(rec.frames) == rec.steps + 1 and rec.goal_frame is not None
    assert rec.first_plan["rollout"].shape == (5, 2) and rec.first_plan["virtual"].shape == (4, 2)
    assert not plain.frames and not plain.first_plan
    assert len(rec.states) == len(rec.frames) and len(rec.plans) == rec.control_steps
    assert np.array_equal(rec.frames[-1], draw(rec.states[-1])) and np.array_equal(rec.goal_frame, draw(rec.goal_state))


def recorded_encodes(history: int, budget: int):
    """Two recorded episodes planned with a model that keeps what every encode call got: (episodes, windows,
    states), the goal's call first, then one per control step."""
    windows, states = [], []

    class Recorder(PointModel):
        def encode(self, obs, newest_states=None):
            windows.append(np.array(obs))
            states.append(np.array(newest_states))
            return super().encode(obs)

    agent = MPCAgent(Recorder(history=history), grasp(), MPCConfig(horizon=4, budget=budget, stop_on_success=False),
                     generator=torch.Generator().manual_seed(0))
    episodes, _ = agent.run(PointBatch(2), [1, 2], record=[True, True])
    return episodes, windows, states


def test_the_agent_passes_the_env_state_of_each_windows_newest_frame_for_proprioception():
    episodes, _, seen = recorded_encodes(history=2, budget=3)
    goal, *starts = seen                                                   # goal, then one start per control step
    assert len(starts) == 3
    for i, e in enumerate(episodes):
        np.testing.assert_array_equal(goal[i], e.goal_state)
        for step, states in enumerate(starts):
            np.testing.assert_array_equal(states[i], e.states[step])


def test_the_agent_encodes_windows_of_the_last_k_observations_repeating_the_first_at_reset():
    episodes, seen, _ = recorded_encodes(history=3, budget=4)
    goal, *starts = seen                                                   # goal, then one start per control step
    assert len(starts) == 4 and all(w.shape == (2, 3, 2) for w in seen)
    for i, e in enumerate(episodes):
        states = np.asarray(e.states, np.float32)                          # the observation at reset, after each step
        assert (goal[i] == np.float32(e.goal_state)).all()                 # the goal at rest: its obs repeated
        for step, window in enumerate(starts):                             # frames before the first repeat it
            np.testing.assert_array_equal(window[i], states[np.maximum(np.arange(step - 2, step + 1), 0)])
