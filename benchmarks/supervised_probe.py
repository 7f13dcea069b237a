"""Can a model's encoder see a state variable at all? The checkpoint's encoder (same config, frame history, input
normalisation and proprioception) with fresh weights, trained supervised - latent -> a linear head -> the probe
targets of every env state variable, z-scored - on the training episodes of its dataset, scored on the held-out ones
(R² per variable, as benchmarks.latent_probe). A variable this reaches but latent_probe cannot read from the trained
model's latent is one the JEPA objective left out, not one the encoder cannot resolve.

    python -m benchmarks.supervised_probe CHECKPOINT [steps=2000] [batch=64] [lr=0.001] [seed=0] [data=DIR]

`data` defaults to the checkpoint's `data.path`, split as in training (the last `train.eval_episodes` held out).
An ensemble's first member gives the architecture. Prints a markdown table.
"""
from __future__ import annotations

import math
import sys

import torch
import torch.nn.functional as F
from torch import nn

import envs
from benchmarks import cli
from benchmarks.latent_probe import data_split
from envs.data import Dataset
from worldmodels.checkpoint import load_checkpoint
from worldmodels.metrics import probe_targets, r2_by_variable
from worldmodels.model import JEPA, episode_windows

CHUNK = 512  # frames encoded at once when scoring (bounds memory)


def supervised_probe(model: JEPA, obs: torch.Tensor, states: torch.Tensor, state_variables, n_fit: int,
                     steps: int, batch: int, lr: float, seed: int) -> dict[str, float]:
    """{variable: held-out R²} of model's encoder, re-initialised from `seed`, trained for `steps` Adam steps of
    `batch` random frames of the first n_fit episodes to predict every variable's z-scored targets through a linear
    head. obs (E, T, ...) raw frames, states (E, T, S)."""
    torch.manual_seed(seed)
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    y, owner = probe_targets(states, state_variables)                              # (E, T, F), (F,)
    mean, std = y[:n_fit].flatten(0, 1).mean(0), y[:n_fit].flatten(0, 1).std(0).clamp_min(1e-8)
    target = ((y - mean) / std).float()
    head = nn.Linear(model.cfg.latent_dim, y.shape[-1])
    optimizer = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    T, k = obs.shape[1], model.history
    model.train()
    for _ in range(steps):
        episode, t = torch.randint(n_fit, (batch,), generator=gen), torch.randint(T, (batch,), generator=gen)
        frames = (t[:, None] + torch.arange(1 - k, 1)).clamp_min(0)              # (batch, k), repeating frame 0
        z = model.embed(obs[episode[:, None], frames], states[episode, t])      # (batch, D)
        loss = F.mse_loss(head(z), target[episode, t].to(z.device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    per_chunk = max(1, CHUNK // T)
    with torch.no_grad():
        pred = torch.cat([head(model.embed(episode_windows(obs[i:i + per_chunk], k), states[i:i + per_chunk])).cpu()
                          for i in range(n_fit, len(obs), per_chunk)])           # (E - n_fit, T, F)
    r2 = r2_by_variable(pred.double().flatten(0, 1) * std + mean, y[n_fit:].flatten(0, 1), owner,
                        len(state_variables))
    return {v.name: r2[i].item() for i, v in enumerate(state_variables)}


def main(argv: list[str]) -> None:
    paths = [a for a in argv if "=" not in a]
    args = cli.parse([a for a in argv if "=" in a], {"steps": "2000", "batch": "64", "lr": "0.001", "seed": "0",
                                                     "data": ""}, "CHECKPOINT steps=INT batch=INT lr=FLOAT "
                                                                  "seed=INT data=DIR")
    try:
        steps, batch, lr, seed = int(args["steps"]), int(args["batch"]), float(args["lr"]), int(args["seed"])
        valid = len(paths) == 1 and steps >= 1 and batch >= 1 and math.isfinite(lr) and lr > 0 and seed >= 0
    except ValueError:
        valid = False
    if not valid:
        raise SystemExit(f"error: checkpoints {paths}, steps={args['steps']!r}, batch={args['batch']!r}, "
                         f"lr={args['lr']!r}, seed={args['seed']!r}: need one CHECKPOINT, steps >= 1, batch >= 1, "
                         f"lr > 0 and seed >= 0")
    model, meta = load_checkpoint(paths[0])
    model = model.members[0]                       # keeps the input normalisation the encoder was trained with
    path, held_out = data_split(paths[0], meta, args["data"])
    data = Dataset(path).load_all()
    obs, states = torch.from_numpy(data["obs"]), torch.from_numpy(data["states"])
    if len(obs) <= held_out:
        raise SystemExit(f"error: data={path!r} has {len(obs)} episodes: need more than train.eval_episodes="
                         f"{held_out}")
    env = envs.make(envs.env_config(meta["env"]))
    r2 = supervised_probe(model, obs, states, env.state_variables, len(obs) - held_out, steps, batch, lr, seed)
    env.close()
    print(f"{paths[0]}: its encoder re-initialised (seed {seed}) and trained supervised for {steps} steps of "
          f"{batch} frames (Adam, lr {lr}) on {len(obs) - held_out} episodes of data {path}, scored on {held_out}\n")
    print("| variable | supervised R² |\n|---|---|")
    for name, value in r2.items():
        print(f"| {name} | {value:.3f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
