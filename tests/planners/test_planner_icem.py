"""iCEM specifics: colored-noise spectrum, elite reuse within a solve and across a shifted warm start, the optimum
of an analytic model. Behaviour shared with every planner (seeding, bounds, NaN, warm start) is in
test_planner_common.py, which covers iCEM through planners.PLANNERS."""
import dataclasses

import pytest
import torch

import planners
from agent import shift_plan
from planners.icem import colored_noise
from toy_models import Linear, reachable


def periodogram(x):
    """Mean power per rfft bin over all leading dims of x (..., T)."""
    return torch.fft.rfft(x).abs().square().reshape(-1, x.shape[-1] // 2 + 1).mean(0)


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0, 2.5])
def test_colored_noise_has_a_power_law_spectrum_with_unit_variance(beta):
    """Known answer: the expected periodogram of 1/f^beta noise is c * f^-beta, so its log-log slope is -beta."""
    T = 64
    x = colored_noise(torch.Generator().manual_seed(0), (4000, T), beta, torch.empty(0, dtype=torch.float64))
    assert x.shape == (4000, T)
    torch.testing.assert_close(x.var(0), torch.ones(T, dtype=torch.float64), rtol=0, atol=0.1)  # every t
    power = periodogram(x)[1:-1]  # DC and Nyquist are real-valued bins (same expected power, other law)
    freq = torch.arange(1, T // 2, dtype=torch.float64)
    slope = torch.linalg.lstsq(torch.stack((freq.log(), torch.ones_like(freq)), 1), power.log()[:, None]).solution[0]
    assert abs(slope.item() + beta) < 0.1, slope
    if beta == 2.0:  # low frequencies dominate: the lowest bin carries (T/2 - 1)^2 times the highest one's power
        assert power[0] > 300 * power[-1]
        share = (1 / freq[:3].square()).sum() / (1 / freq.square()).sum()  # 0.84 of the power in 3 of 31 bins
        assert abs(power[:3].sum() / power.sum() - share) < 0.03


def test_colored_noise_handles_tiny_horizons():
    for T in (1, 2, 3):
        x = colored_noise(torch.Generator().manual_seed(0), (20000, T), 2.0, torch.empty(0))
        assert x.shape == (20000, T) and torch.isfinite(x).all()
        torch.testing.assert_close(x.var(0), torch.ones(T), rtol=0, atol=0.05)


def test_finds_the_optimum_of_a_linear_model_at_a_longer_horizon():
    model = Linear()
    start, goal = reachable(model, 10, batch=3)
    plan = planners.make("icem").plan(model, start, goal, 10)
    assert (plan.cost < 1e-3).all(), plan.cost
    best = plan.diagnostics["best_cost"]
    assert (best[1:] <= best[:-1]).all()
    assert plan.elites.shape == (3, planners.make("icem").cfg.kept, 10, 2)


def test_elites_are_reused_within_a_solve():
    """With elite reuse the elite cost can never rise from one iteration to the next (the carried elites are still
    candidates, momentum 0 so the mean is the elite mean); without it, it can."""
    model = Linear()
    start, goal = reachable(model, 8, batch=4)
    kept = planners.make("icem", iters=15, samples=40, elites=10, keep_elites=1.0, momentum=0.0)
    elite_cost = kept.plan(model, start, goal, 8).diagnostics["elite_cost"]
    # the mean of the k best of (new samples + last k elites) is at most the mean of the last k elites
    assert (elite_cost[1:] <= elite_cost[:-1] + 1e-6).all()


def test_shifted_elites_warm_start_the_next_solve():
    """A solved plan, shifted by the agent after one executed step, re-plans from the state it led to: its carried
    elites join the first population. With init_std=0 every new sample is the (deliberately bad) mean, so one
    iteration returns exactly the best shifted elite; without elites it returns the bad mean."""
    model = Linear()
    start, goal = reachable(model, 6, batch=3)
    solved = planners.make("icem").plan(model, start, goal, 6)
    next_start = model.rollout(start, solved.actions[:, :1])[:, 0]
    warm = shift_plan(solved, 1, next_start, goal)
    assert warm.elites.shape == solved.elites.shape
    torch.testing.assert_close(warm.elites[:, :, :-1], solved.elites[:, :, 1:])
    assert (warm.elites[:, :, -1] == 0).all()
    K = warm.elites.shape[1]
    elite_cost = (model.rollout(next_start.repeat_interleave(K, 0), warm.elites.reshape(-1, 6, 2))[:, -1]
                  .view(3, K, 4) - goal[:, None]).square().sum(-1)  # (B, K)
    frozen = planners.make("icem", init_std=0.0)
    bad_mean = dataclasses.replace(warm, actions=torch.full_like(warm.actions, 3.0))
    with_elites = frozen.plan(model, next_start, goal, 6, warm_start=bad_mean, iters=1)
    without = frozen.plan(model, next_start, goal, 6, warm_start=dataclasses.replace(bad_mean, elites=None), iters=1)
    torch.testing.assert_close(with_elites.cost, elite_cost.min(1).values)
    assert (with_elites.cost < without.cost).all()


def test_warm_elites_of_the_wrong_shape_are_rejected():
    model = Linear()
    start, goal = reachable(model, 5, batch=2)
    solved = planners.make("icem", iters=2).plan(model, start, goal, 5)
    bad = dataclasses.replace(solved, elites=solved.elites[:, :, 1:])
    with pytest.raises(planners.PlannerError, match="warm_start.elites"):
        planners.make("icem").plan(model, start, goal, 5, warm_start=bad)


def test_config_checks():
    with pytest.raises(planners.PlannerError, match="keep_elites"):
        planners.make("icem", keep_elites=1.5)
    with pytest.raises(planners.PlannerError, match="momentum"):
        planners.make("icem", momentum=1.0)
    assert planners.make("icem", keep_elites=0.0).cfg.kept == 0
