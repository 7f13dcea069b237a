"""Is a state variable in a model's latent at all? Linear and k-nearest-neighbour probes latent -> each of the env's
state variables, fitted on the training episodes of the checkpoint's dataset, scored on its held-out episodes.

    python -m benchmarks.latent_probe CHECKPOINT [data=DIR] [k=10]

The model cards' probe (worldmodels.metrics.linear_probe_r2) fits on half of 50 held-out episodes: a variable that
stays put within an episode (a Push-T block nobody touches) then has ~25 values for the map's D + 1 weights, and on
a latent that holds it weakly or not at all the fit can score well below zero. Here the linear map is fitted on
every training frame, and the kNN probe (mean target of the k nearest training frames, latent standardised per
dimension) also finds what the latent holds nonlinearly. Targets are those of `probe_targets` (an angle's cos and
sin). The `reference` column is the same kNN probe given the variable's own targets as the latent, what the method
reaches on this split (about 1: below it, the split's held-out values lie outside the training ones).

`data` defaults to the dataset the checkpoint was trained on (`data.path` in its meta; its planner-in-the-loop
`data.extra` is left out), split as in training (the last `train.eval_episodes` held out). Prints a markdown table.
"""
from __future__ import annotations

import sys

import torch

import envs
from benchmarks import cli
from envs.data import Dataset
from worldmodels.checkpoint import load_checkpoint
from worldmodels.metrics import encode_episodes, probe_targets, r2_by_variable

CHUNK = 512  # test rows compared at once (bounds memory)


def knn_predict(fit_x: torch.Tensor, fit_y: torch.Tensor, test_x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean target (M, F) of each test row's k nearest fit rows; features standardised by the fit rows'."""
    mean, std = fit_x.mean(0), fit_x.std(0).clamp_min(1e-8)
    fit_x, test_x = (fit_x - mean) / std, (test_x - mean) / std
    nearest = torch.cat([torch.cdist(test_x[i:i + CHUNK], fit_x).topk(k, largest=False).indices
                         for i in range(0, len(test_x), CHUNK)])                 # (M, k)
    return fit_y[nearest].mean(1)


def latent_probe(z: torch.Tensor, states: torch.Tensor, state_variables, n_fit: int, k: int = 10
                 ) -> dict[str, tuple[float, float, float]]:
    """{variable: (linear R^2, kNN R^2, reference kNN R^2)}, fitted on the first n_fit episodes, scored on the
    rest. z (E, T, D), states (E, T, S)."""
    y, owner = probe_targets(states, state_variables)                              # (E, T, F), (F,)
    fit_y, test_y = y[:n_fit].flatten(0, 1), y[n_fit:].flatten(0, 1)
    x = torch.cat([z.double(), torch.ones(*z.shape[:2], 1, dtype=torch.float64)], -1)   # (E, T, D+1)
    weights = torch.linalg.lstsq(x[:n_fit].flatten(0, 1), fit_y, driver="gelsd").solution
    linear = r2_by_variable(x[n_fit:].flatten(0, 1) @ weights, test_y, owner, len(state_variables))
    latent = z.double()
    knn = r2_by_variable(knn_predict(latent[:n_fit].flatten(0, 1), fit_y, latent[n_fit:].flatten(0, 1), k),
                         test_y, owner, len(state_variables))
    own = [owner == i for i in range(len(state_variables))]                   # each variable's target columns
    reference = [r2_by_variable(knn_predict(fit_y[:, o], fit_y[:, o], test_y[:, o], k), test_y[:, o],
                                torch.zeros(int(o.sum()), dtype=torch.long), 1)[0] for o in own]
    return {v.name: (linear[i].item(), knn[i].item(), reference[i].item()) for i, v in enumerate(state_variables)}


def data_split(checkpoint: str, meta: dict, data: str) -> tuple[str, int]:
    """(dataset path, held-out episode count) of a checkpoint: `data` or the one it was trained on, split as in
    training."""
    try:
        return data or meta["data"]["path"], int(meta["config"]["train"]["eval_episodes"])
    except (KeyError, TypeError, ValueError):
        raise SystemExit(f"error: checkpoint {checkpoint!r} records no train.py dataset and held-out split "
                         f"(data.path, train.eval_episodes); probe a model.pt or checkpoint.pt that train.py "
                         f"wrote") from None


def main(argv: list[str]) -> None:
    paths = [a for a in argv if "=" not in a]
    args = cli.parse([a for a in argv if "=" in a], {"data": "", "k": "10"}, "CHECKPOINT data=DIR k=INT")
    if len(paths) != 1 or not args["k"].isdigit() or int(args["k"]) < 1:
        raise SystemExit(f"error: checkpoints {paths}, k={args['k']!r}: need one CHECKPOINT and k >= 1")
    model, meta = load_checkpoint(paths[0])
    path, held_out = data_split(paths[0], meta, args["data"])
    data = Dataset(path).load_all()
    obs, states = torch.from_numpy(data["obs"]), torch.from_numpy(data["states"])
    if len(obs) <= held_out or int(args["k"]) > (len(obs) - held_out) * obs.shape[1]:
        raise SystemExit(f"error: data={path!r} has {len(obs)} episodes: need more than train.eval_episodes="
                         f"{held_out} and k={args['k']} training frames")
    z = encode_episodes(model, obs, states)                                      # (E, T+1, D)
    env = envs.make(envs.env_config(meta["env"]))
    probes = latent_probe(z.cpu(), states, env.state_variables, len(obs) - held_out, int(args["k"]))
    env.close()
    print(f"{paths[0]}: data {path}, fit on {len(obs) - held_out} episodes, scored on {held_out}, k = {args['k']}\n")
    print("| variable | linear R² | kNN R² | reference kNN R² |\n|---|---|---|---|")
    for name, (linear, knn, reference) in probes.items():
        print(f"| {name} | {linear:.3f} | {knn:.3f} | {reference:.3f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
