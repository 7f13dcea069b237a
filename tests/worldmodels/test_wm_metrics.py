"""worldmodels/metrics.py: the held-out model-quality numbers train.py logs and model cards show."""
import torch

import math

import pytest

from envs import StateVariable
from worldmodels.metrics import distance_rank_correlation, linear_probe_r2, model_metrics, planning_warning, stored


def test_distance_rank_correlation_tells_a_metric_latent_from_a_scrambled_one():
    gen = torch.Generator().manual_seed(0)
    states = torch.rand(300, 2, generator=gen) * 64
    task = lambda a, b: float(((a - b) ** 2).sum() ** 0.5)  # noqa: E731
    smooth = torch.cat([states / 64, torch.zeros(300, 6)], 1)       # latent = position: ranks agree
    scrambled = torch.randn(300, 8, generator=gen)                   # latent unrelated to position
    assert distance_rank_correlation(smooth, states, task) > 0.99
    assert abs(distance_rank_correlation(scrambled, states, task)) < 0.15


# a state (q, x, y, v): q an angle that wraps, x and y a position, v a velocity the latents below never carry
VARIABLES = (StateVariable("q", (0,), "angle", task=True), StateVariable("xy", (1, 2), "position", task=True),
             StateVariable("v", (3,), "velocity", task=False))


def random_states(gen, E=20, T=10):
    q = torch.rand(E, T, 1, generator=gen) * 20 - 10           # many turns: the raw angle wraps all the time
    return torch.cat([q, torch.randn(E, T, 3, generator=gen)], -1).double()   # (E, T, 4)


def test_linear_probe_r2_known_answers_per_variable():
    """Latents that are a linear function of (cos q, sin q, x, y) plus noise dims give R^2 = 1 for q and xy, and
    ~0 for the velocity they do not carry; a constant variable is NaN, not a number. The latent is rank-deficient
    (4 features mixed into 6 dims), as trained latents nearly are: the default lstsq driver (gelsy) fits it
    poorly (R^2 0.988 for q here), which pins the SVD driver."""
    gen = torch.Generator().manual_seed(0)
    states = random_states(gen)
    q = states[..., :1]
    features = torch.cat([q.cos(), q.sin(), states[..., 1:3]], -1)                 # (E, T, 4)
    z = torch.cat([features @ torch.randn(4, 6, generator=gen).double(), torch.randn(20, 10, 2, generator=gen)], -1)
    r2 = linear_probe_r2(z, states, VARIABLES)
    assert r2["q"] == pytest.approx(1, abs=1e-9) and r2["xy"] == pytest.approx(1, abs=1e-9)
    assert abs(r2["v"]) < 0.1
    still = states.clone()
    still[..., 3] = 1.0
    assert math.isnan(linear_probe_r2(z, still, VARIABLES)["v"])


def test_linear_probe_r2_scores_a_wrapping_angle_by_its_cos_and_sin():
    """Pins the old probe's bug: it regressed the raw angle, which jumps by 2 pi where nothing moved, so a latent
    holding exactly (cos q, sin q) scored near 0 for q. As a raw "position" the angle is not linearly decodable;
    as an angle it is."""
    gen = torch.Generator().manual_seed(1)
    states = random_states(gen)
    q = states[..., :1]
    z = torch.cat([q.cos(), q.sin()], -1)
    as_angle = StateVariable("q", (0,), "angle", task=True)
    assert linear_probe_r2(z, states, [as_angle])["q"] == pytest.approx(1, abs=1e-9)
    assert linear_probe_r2(z, states, [as_angle._replace(kind="position")])["q"] < 0.2


class Identity(torch.nn.Module):
    """A 'model' whose latent is its observation and whose prediction is s + a: exact for obs_{t+1} = obs_t + a_t."""
    device = torch.device("cpu")
    history = 1

    def encode(self, windows, states=None):  # (..., 1, 4) windows of one frame
        return windows[..., 0, :].float()

    def normalize_actions(self, a):
        return a

    def open_loop(self, z, actions):
        T = z.shape[1]
        s = z
        for k in range(1, T + 1):
            s = s[:, :T - k + 1] + actions[:, k - 1:]
            yield s


def test_model_metrics_names_k_steps_probe_variables_and_headline():
    gen = torch.Generator().manual_seed(2)
    actions = torch.randn(40, 12, 4, generator=gen)
    obs = torch.cat([torch.zeros(40, 1, 4), actions.cumsum(1)], 1)                   # (E, T+1, 4): exact dynamics
    states = torch.cat([torch.rand(40, 13, 1, generator=gen) * 7, obs[..., :2],
                        torch.randn(40, 13, 1, generator=gen)], -1)   # q, v: not in the latent; xy: two latent dims
    m = model_metrics(Identity(), obs, actions, states, state_variables=VARIABLES, plan_horizon=7)
    assert {k for k in m if k.startswith("model/rel_err")} == {f"model/rel_err_k{k}" for k in (1, 5, 7, 12)}
    assert m["model/rel_err_k1"] < 1e-9 and m["model/probe_r2/xy"] == pytest.approx(1, abs=1e-9)
    assert abs(m["model/probe_r2/q"]) < 0.1
    # the headline is the mean over the task variables (q, xy), not over all of them
    assert m["model/probe_r2"] == pytest.approx((m["model/probe_r2/q"] + m["model/probe_r2/xy"]) / 2)
    longer = model_metrics(Identity(), obs, actions, states, plan_horizon=40)     # beyond the episode: not logged
    assert {k for k in longer if k.startswith("model/rel_err")} == {f"model/rel_err_k{k}" for k in (1, 5, 12)}
    assert not any(k.startswith(("eval/", "model/probe")) for k in longer)


def test_stored_prefers_model_keys_and_reads_old_eval_keys():
    assert stored({"eval/rel_err_k1": 0.2}, "rel_err_k1") == 0.2                  # a checkpoint from before the rename
    assert stored({"eval/rel_err_k1": 0.2, "model/rel_err_k1": 0.1}, "rel_err_k1") == 0.1
    assert stored({}, "rel_err_k1") is None


@pytest.mark.parametrize("metrics, warned", [
    ({"model/rel_err_k1": 0.05, "model/dist_spearman": 0.4}, None),
    ({"model/rel_err_k1": 1.0, "model/dist_spearman": 0.4}, "model/rel_err_k1=1 >= 1"),
    ({"eval/rel_err_k1": 1.2, "eval/dist_spearman": 0.4}, "model/rel_err_k1=1.2 >= 1"),   # keys before model/
    ({"model/rel_err_k1": 0.001, "model/dist_spearman": -0.004}, None),   # pointmaze's pre-reach model: 70 %
    ({}, None),
])
def test_planning_warning_names_what_failed_and_what_to_do(metrics, warned):
    message = planning_warning(metrics)
    if warned is None:
        assert message is None
    else:
        assert warned in message and "Train longer" in message and "\n" not in message
