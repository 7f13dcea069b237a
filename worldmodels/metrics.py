"""How good a trained world model is on held-out episodes, in the numbers that matter for planning with it.

`model_metrics` returns the `eval/` scalars train.py logs and stores in checkpoints (model cards read them):
open-loop k-step prediction error, absolute and relative to a constant-latent baseline; a linear probe
latent -> physical state (R^2); and how well latent distance ranks the env's task distance (Spearman).
"""
from __future__ import annotations

import torch

from worldmodels.model import episode_windows

CHUNK = 512  # frames encoded at once (bounds memory)


@torch.no_grad()
def model_metrics(model, obs: torch.Tensor, actions: torch.Tensor, states: torch.Tensor,
                  task_distance=None) -> dict[str, float]:
    """Open-loop k-step latent prediction error on held-out episodes (mean over episodes and start frames of
    ||s_hat_{t+k} - E(o_{t+k})||^2), for k = 1, 5 and the episode length H, each also relative to the
    constant-latent baseline ||E(o_t) - E(o_{t+k})||^2; a linear probe latent -> physical state (R^2); and, given
    the env's `task_distance(state, goal)`, how well latent distance ranks task distance over random pairs of
    held-out frames (Spearman): the planner's cost is latent distance, so a low value means a cost landscape
    that is flat away from the goal however well the model predicts.
    obs (E, T+1, ...) raw, actions (E, T, A) native, states (E, T+1, S). Frames before an episode's first one,
    which the windows of its first `model.history` - 1 frames reach, repeat it (as in training and the agent)."""
    E, T = actions.shape[:2]
    per_chunk = max(1, CHUNK // (T + 1))  # episodes; every frame is encoded from its window of `history` frames
    z = torch.cat([model.encode(episode_windows(obs[i:i + per_chunk], model.history))
                   for i in range(0, E, per_chunk)])                                  # (E, T+1, D)
    metrics = {}
    ks = sorted({k for k in (1, 5, T) if k <= T})
    for k, pred in enumerate(model.open_loop(z[:, :-1], model.normalize_actions(actions.to(model.device))), 1):
        if k in ks:
            err = (pred - z[:, k:]).pow(2).sum(-1).mean().item()
            baseline = (z[:, :-k] - z[:, k:]).pow(2).sum(-1).mean().item()
            metrics[f"eval/pred_err_k{k}"] = err
            metrics[f"eval/rel_err_k{k}"] = err / max(baseline, 1e-12)
    metrics["eval/probe_r2"] = linear_probe_r2(z.cpu(), states)
    if task_distance is not None:
        metrics["eval/dist_spearman"] = distance_rank_correlation(z.cpu().flatten(0, 1), states.flatten(0, 1),
                                                                  task_distance)
    return metrics


def distance_rank_correlation(z: torch.Tensor, states: torch.Tensor, task_distance, pairs: int = 1000) -> float:
    """Spearman correlation of ||z_i - z_j|| and task_distance(state_i, state_j) over fixed random pairs."""
    gen = torch.Generator().manual_seed(0)
    i, j = torch.randint(len(z), (2, pairs), generator=gen)
    latent = (z[i] - z[j]).norm(dim=-1)
    task = torch.tensor([task_distance(states[a].numpy(), states[b].numpy()) for a, b in zip(i, j)])
    rank = lambda x: x.argsort().argsort().double()  # noqa: E731
    return torch.corrcoef(torch.stack([rank(latent), rank(task)]))[0, 1].item()


def linear_probe_r2(z: torch.Tensor, states: torch.Tensor) -> float:
    """Least squares latent -> state fitted on the first half of the episodes, R^2 on the second half
    (mean over state dimensions that vary)."""
    half = max(1, len(z) // 2)
    x = torch.cat([z, torch.ones(*z.shape[:2], 1)], -1).double()                 # (E, T+1, D+1)
    y = states.double()
    fit_x, fit_y = x[:half].flatten(0, 1), y[:half].flatten(0, 1)
    test_x, test_y = x[half:].flatten(0, 1), y[half:].flatten(0, 1)
    if len(test_x) == 0:
        test_x, test_y = fit_x, fit_y
    weights = torch.linalg.lstsq(fit_x, fit_y).solution
    residual = (test_x @ weights - test_y).pow(2).sum(0)
    total = (test_y - test_y.mean(0)).pow(2).sum(0)
    varies = total > 1e-8 * len(test_y)
    return (1 - residual[varies] / total[varies]).mean().item() if varies.any() else float("nan")
