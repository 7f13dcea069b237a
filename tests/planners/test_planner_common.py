"""Behaviour every planner shares: reaching goals, true-cost bookkeeping, warm starts, seeding, batching, NaN
handling and input validation, each checked on tiny analytic models (toy_models.py)."""
import dataclasses

import pytest
import torch

import planners
from planners import Plan, PlannerError
from toy_models import Disk, Linear, reachable

NAMES = list(planners.PLANNERS)
FAST = {"grasp": dict(iters=150)}


def true_cost(model, start, goal, actions):
    return (model.rollout(start, actions)[:, -1] - goal).square().sum(-1)


@pytest.mark.parametrize("name", NAMES)
def test_reaches_goal_at_short_horizon_and_reports_true_cost(name):
    model = Linear()
    start, goal = reachable(model, 5, batch=4)
    plan = planners.make(name, **FAST.get(name, {})).plan(model, start, goal, 5)
    assert plan.actions.shape == (4, 5, 2) and plan.iters == FAST.get(name, {}).get("iters", plan.iters)
    assert (plan.cost < 0.05).all(), plan.cost
    torch.testing.assert_close(plan.cost, true_cost(model, start, goal, plan.actions))
    assert not plan.nonfinite.any()
    for name_, rows in plan.diagnostics.items():
        assert rows.shape == (plan.iters, 4), name_


@pytest.mark.parametrize("name", NAMES)
def test_goes_around_an_obstacle_blocking_the_straight_line(name):
    """Start and goal on opposite sides of a disk the point cannot enter; one problem is exactly symmetric."""
    model = Disk()
    start, goal = torch.tensor([[-2.0, 0.0], [-2.0, 0.3]]), torch.tensor([[2.0, 0.0], [2.0, -0.3]])
    plan = planners.make(name, **FAST.get(name, {})).plan(model, start, goal, 8)
    if name == "latco":  # no noise, no sampling: the symmetric problem is a saddle it cannot leave
        assert plan.cost[1] < 0.05 and plan.cost[0] > 1
        return
    assert (plan.cost < 0.05).all(), plan.cost
    assert (model.rollout(start, plan.actions).norm(dim=-1) >= 1 - 1e-5).all()


@pytest.mark.parametrize("name", NAMES)
def test_actions_stay_in_the_model_box(name):
    model = Linear(bound=0.3)  # goals need larger actions than allowed
    start, goal = reachable(Linear(), 5, batch=2)
    plan = planners.make(name, iters=20).plan(model, start, goal, 5)
    assert (plan.actions.abs() <= 0.3 + 1e-6).all()


@pytest.mark.parametrize("name", NAMES)
def test_warm_start_from_a_solved_plan_stays_solved(name):
    model = Linear()
    start, goal = reachable(model, 5, batch=3)
    solved = planners.make(name, **FAST.get(name, {})).plan(model, start, goal, 5)
    again = planners.make(name).plan(model, start, goal, 5, warm_start=solved, iters=3)
    cold = planners.make(name).plan(model, start, goal, 5, iters=3)
    assert (again.cost < 0.1 * cold.cost).all() and again.iters == 3  # the warm start is used, not just kept
    default = planners.make(name, iters_warm=2).plan(model, start, goal, 5, warm_start=solved)
    assert default.iters == 2


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_plan(name):
    model = Linear()
    start, goal = reachable(model, 6, batch=2)
    planner = planners.make(name, iters=20)
    one, two = (planner.plan(model, start, goal, 6, generator=torch.Generator().manual_seed(7)) for _ in range(2))
    assert torch.equal(one.actions, two.actions) and torch.equal(one.cost, two.cost)
    if name != "latco":  # LatCo draws no random numbers
        other = planner.plan(model, start, goal, 6, generator=torch.Generator().manual_seed(8))
        assert not torch.equal(one.actions, other.actions)


@pytest.mark.parametrize("name, overrides", [("grasp", dict(sigma=0.0)), ("gd", dict(starts=1)), ("latco", {})])
def test_batch_equals_problems_one_by_one(name, overrides):
    """Deterministic settings only: noise and random starts are drawn for the whole batch from one generator,
    so with randomness a problem's draw depends on its batch position (documented in planners/grasp.py)."""
    model = Linear()
    start, goal = reachable(model, 6, batch=3)
    planner = planners.make(name, iters=40, **overrides)
    batch = planner.plan(model, start, goal, 6)
    for i in range(3):
        single = planner.plan(model, start[i:i + 1], goal[i:i + 1], 6)
        torch.testing.assert_close(single.actions[0], batch.actions[i], rtol=0, atol=1e-5)
        torch.testing.assert_close(single.diagnostics["best_cost"][:, 0], batch.diagnostics["best_cost"][:, i],
                                   rtol=1e-4, atol=1e-5)


class Exploding(Linear):
    """Linear, but predictions are NaN for any row with a latent beyond +-50 (the second problem starts there)."""

    def step(self, s, a):
        out = super().step(s, a)
        return torch.where((s.abs() > 50).any(-1, keepdim=True), torch.full_like(out, float("nan")), out)


@pytest.mark.parametrize("name", NAMES)
def test_nan_model_is_flagged_and_actions_stay_finite(name):
    model = Exploding()
    start, goal = reachable(model, 5, batch=2)
    start[1] = 100.0
    plan = planners.make(name, iters=30).plan(model, start, goal, 5)
    assert plan.nonfinite.tolist() == [False, True]
    assert torch.isfinite(plan.actions).all()
    assert torch.isfinite(plan.cost[0]) and plan.cost[1] == float("inf")
    if plan.states is not None:
        assert torch.isfinite(plan.states[0]).all()


def test_diagnostics_feed_the_callback_every_iteration():
    model = Linear()
    start, goal = reachable(model, 4, batch=2)
    seen = []
    plan = planners.make("grasp", iters=7).plan(model, start, goal, 4, callback=lambda it, d: seen.append((it, d)))
    assert [it for it, _ in seen] == list(range(7))
    assert set(seen[3][1]) == set(plan.diagnostics) == {"dyn_loss", "goal_loss", "rollout_cost", "gap", "best_cost"}
    torch.testing.assert_close(seen[3][1]["dyn_loss"], plan.diagnostics["dyn_loss"][3])


def one_line_error(fn, *words):
    with pytest.raises(PlannerError) as err:
        fn()
    message = str(err.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_make_rejects_unknown_names_keys_and_values():
    one_line_error(lambda: planners.make("rrt"), "'rrt'", "grasp, cem, gd, mppi, latco")
    one_line_error(lambda: planners.make({"name": "cem", "iter": 3}), "'iter'", "iters", "samples")
    one_line_error(lambda: planners.make("grasp", sync="adam"), "'adam'", "grad, cem, none")
    one_line_error(lambda: planners.make("cem", elites=400), "elites=400")
    one_line_error(lambda: planners.make("gd", lr="fast"), "lr='fast'", "float")
    one_line_error(lambda: planners.make("gd", iters=-1), "iters=-1")
    one_line_error(lambda: planners.make("grasp", sync_steps=0), "sync_steps=0")
    assert planners.make({"name": "cem", "samples": 50}, elites=5).cfg.elites == 5


def test_plan_rejects_bad_inputs():
    model, planner = Linear(), planners.make("grasp", iters=1)
    start, goal = reachable(model, 3, batch=2)
    warm = planner.plan(model, start, goal, 3)
    one_line_error(lambda: planner.plan(model, start[0], goal[0], 3), "start", "(B, 4)")
    one_line_error(lambda: planner.plan(model, start, goal[:1], 3), "goal", "same")
    one_line_error(lambda: planner.plan(model, start[:, :3], goal[:, :3], 3), "(2, 3)", "(B, 4)")
    one_line_error(lambda: planner.plan(model, start, goal, 0), "horizon=0")
    one_line_error(lambda: planner.plan(model, start * float("nan"), goal, 3), "NaN")
    one_line_error(lambda: planner.plan(model, start, goal, 4, warm_start=warm), "warm_start.actions", "(2, 4, 2)")
    bad_states = dataclasses.replace(warm, states=warm.states[:, :1])
    one_line_error(lambda: planner.plan(model, start, goal, 3, warm_start=bad_states), "warm_start.states")
    one_line_error(lambda: planner.plan(model, start, goal, 3, iters=-2), "iters=-2")
    assert isinstance(warm, Plan)
