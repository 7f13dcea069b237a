"""How good a trained world model is on held-out episodes, in the numbers that matter for planning with it.

`model_metrics` returns the `model/` scalars train.py logs and stores in checkpoints (model cards read them):
open-loop k-step prediction error, absolute and relative to a constant-latent baseline; a linear probe
latent -> each of the env's state variables (R^2); and how well latent distance ranks the env's task distance
(Spearman). Checkpoints written before the `eval/` -> `model/` rename store `eval/<name>`: read them with
`stored`.
`planning_warning` says when a model's numbers make it unusable for planning.
"""
from __future__ import annotations

import math

import torch

from worldmodels.model import episode_windows

CHUNK = 512  # frames encoded at once (bounds memory)


@torch.no_grad()
def encode_episodes(model, obs: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """Planner latents (E, T, D) of every frame of whole episodes, obs (E, T, ...) raw, states (E, T, S), each frame
    from its window of `model.history` frames (those before an episode's first repeat it, as in training and the
    agent), in chunks of about CHUNK frames."""
    per_chunk = max(1, CHUNK // obs.shape[1])
    return torch.cat([model.encode(episode_windows(obs[i:i + per_chunk], model.history), states[i:i + per_chunk])
                      for i in range(0, len(obs), per_chunk)])


@torch.no_grad()
def model_metrics(model, obs: torch.Tensor, actions: torch.Tensor, states: torch.Tensor,
                  task_distance=None, state_variables=(), plan_horizon: int | None = None) -> dict[str, float]:
    """Open-loop k-step latent prediction error on held-out episodes (mean over episodes and start frames of
    ||s_hat_{t+k} - E(o_{t+k})||^2), for k = 1, 5, the planning horizon and the episode length H (those <= H), each
    also relative to the constant-latent baseline ||E(o_t) - E(o_{t+k})||^2; given the env's `state_variables`, a
    linear probe latent -> each variable (R^2, see `linear_probe_r2`; `model/probe_r2` = mean over the variables
    success depends on); and, given the env's `task_distance(state, goal)`, how well latent distance ranks task
    distance over random pairs of held-out frames (Spearman): the planner's cost is latent distance, so a low value
    means a cost landscape that is flat away from the goal however well the model predicts.
    obs (E, T+1, ...) raw, actions (E, T, A) native, states (E, T+1, S). Frames before an episode's first one,
    which the windows of its first `model.history` - 1 frames reach, repeat it (as in training and the agent)."""
    T = actions.shape[1]
    z = encode_episodes(model, obs, states)                                           # (E, T+1, D)
    metrics = {}
    ks = sorted({k for k in (1, 5, plan_horizon or 1, T) if k <= T})
    for k, pred in enumerate(model.open_loop(z[:, :-1], model.normalize_actions(actions.to(model.device))), 1):
        if k in ks:
            err = (pred - z[:, k:]).pow(2).sum(-1).mean().item()
            baseline = (z[:, :-k] - z[:, k:]).pow(2).sum(-1).mean().item()
            metrics[f"model/pred_err_k{k}"] = err
            metrics[f"model/rel_err_k{k}"] = err / max(baseline, 1e-12)
    if state_variables:
        r2 = linear_probe_r2(z.cpu(), states, state_variables)
        metrics.update({f"model/probe_r2/{name}": value for name, value in r2.items()})
        task = [r2[v.name] for v in state_variables if v.task and not math.isnan(r2[v.name])]
        metrics["model/probe_r2"] = sum(task) / len(task) if task else float("nan")
    if task_distance is not None:
        metrics["model/dist_spearman"] = distance_rank_correlation(z.cpu().flatten(0, 1), states.flatten(0, 1),
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


def probe_targets(states: torch.Tensor, state_variables) -> tuple[torch.Tensor, torch.Tensor]:
    """What a probe predicts of each state variable: targets (..., F) float64 - an angle's (cos, sin), since a raw
    angle wraps, jumping by 2 pi where nothing moved, which no linear map of a smooth latent can follow; positions
    and velocities their columns raw - and owner (F,), each target's variable (its index in `state_variables`).
    states (..., S); `state_variables`: items with .name, .index (state columns), .kind (an env's
    `state_variables`)."""
    targets = []
    for v in state_variables:
        x = states[..., list(v.index)].double()
        targets.append(torch.cat([x.cos(), x.sin()], -1) if v.kind == "angle" else x)
    owner = torch.cat([torch.full((t.shape[-1],), i) for i, t in enumerate(targets)])
    return torch.cat(targets, -1), owner


def r2_by_variable(pred: torch.Tensor, y: torch.Tensor, owner: torch.Tensor, count: int) -> torch.Tensor:
    """R^2 (count,) of predictions pred (N, F) of targets y (N, F), each variable's targets jointly
    (1 - residual / total sum of squares); NaN where a variable does not vary."""
    residual, total = torch.zeros(2, count, dtype=torch.float64).index_add_(1, owner, torch.stack([
        (pred - y).pow(2).sum(0), (y - y.mean(0)).pow(2).sum(0)]))
    return torch.where(total > 1e-8 * len(y), 1 - residual / total, float("nan"))


def linear_probe_r2(z: torch.Tensor, states: torch.Tensor, state_variables) -> dict[str, float]:
    """{variable name: R^2} of one least-squares map latent -> every variable's probe targets (`probe_targets`),
    fitted on the first half of the episodes, scored on the second. A variable of several targets (an xy, an
    angle's pair) gets one R^2 over them jointly; NaN if it does not vary on the second half. On 50 episodes the fit
    sees ~25 values of a variable that stays put within an episode (a Push-T block nobody touches): on a latent that
    holds it weakly or not at all the fit can then score well below zero (benchmarks/latent_probe.py fits on the
    training episodes instead).
    z (E, T, D), states (E, T, S)."""
    y, owner = probe_targets(states, state_variables)                              # (E, T, F), (F,)
    x = torch.cat([z.double(), torch.ones(*z.shape[:2], 1, dtype=torch.float64)], -1)   # (E, T, D+1)
    half = max(1, len(z) // 2)
    fit_x, fit_y = x[:half].flatten(0, 1), y[:half].flatten(0, 1)
    test_x, test_y = x[half:].flatten(0, 1), y[half:].flatten(0, 1)
    if len(test_x) == 0:
        test_x, test_y = fit_x, fit_y
    # SVD-based: trained latents are often near rank-deficient (effective rank ~12-20 of 64), where the default
    # QR driver (gelsy) can return a poor fit
    weights = torch.linalg.lstsq(fit_x, fit_y, driver="gelsd").solution            # (D+1, F)
    r2 = r2_by_variable(test_x @ weights, test_y, owner, len(state_variables))
    return {v.name: value.item() for v, value in zip(state_variables, r2)}


def stored(metrics: dict, name: str) -> float | None:
    """A checkpoint's metric `name` (e.g. "rel_err_k1"): `model/<name>`, else `eval/<name>` as checkpoints written
    before the rename store it; None if neither is there."""
    return metrics.get(f"model/{name}", metrics.get(f"eval/{name}"))


def planning_warning(metrics: dict) -> str | None:
    """What is wrong, and what to do, when a model learned nothing usable for planning: its 1-step prediction is
    no better than predicting that nothing moves (rel_err_k1 >= 1); None otherwise or when not measured.
    dist_spearman is not a verdict: the pointmaze model shipped before its reach head ranks task distance at ~0 over
    random pairs and still plans 70 % of evaluate.py's episodes (benchmarks/results/study/pointmaze-state-e3ae4a9),
    so it is logged, not warned on."""
    rel = stored(metrics, "rel_err_k1")
    if rel is None or rel < 1:
        return None
    return (f"the world model may be unusable for planning (model/rel_err_k1={rel:.3g} >= 1: its 1-step prediction "
            f"is no better than predicting that nothing moves). Train longer (train.steps) and check in TensorBoard "
            f"that model/rel_err_k1 falls well below 1 and model/dist_spearman rises above 0")
