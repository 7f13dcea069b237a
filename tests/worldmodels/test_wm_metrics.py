"""worldmodels/metrics.py: the held-out model-quality numbers train.py logs and model cards show."""
import torch

from worldmodels.metrics import distance_rank_correlation, linear_probe_r2


def test_distance_rank_correlation_tells_a_metric_latent_from_a_scrambled_one():
    gen = torch.Generator().manual_seed(0)
    states = torch.rand(300, 2, generator=gen) * 64
    task = lambda a, b: float(((a - b) ** 2).sum() ** 0.5)  # noqa: E731
    smooth = torch.cat([states / 64, torch.zeros(300, 6)], 1)       # latent = position: ranks agree
    scrambled = torch.randn(300, 8, generator=gen)                   # latent unrelated to position
    assert distance_rank_correlation(smooth, states, task) > 0.99
    assert abs(distance_rank_correlation(scrambled, states, task)) < 0.15


def test_linear_probe_r2_is_one_for_a_linear_latent_and_ignores_constant_state_dims():
    gen = torch.Generator().manual_seed(0)
    states = torch.cat([torch.randn(6, 5, 2, generator=gen), torch.ones(6, 5, 1)], -1)   # (E, T+1, S), 1 constant
    z = torch.cat([states[..., :2] @ torch.randn(2, 4, generator=gen), torch.randn(6, 5, 2, generator=gen)], -1)
    assert abs(linear_probe_r2(z, states) - 1) < 1e-9
    assert linear_probe_r2(torch.randn(6, 5, 4, generator=gen), states) < 0.5
