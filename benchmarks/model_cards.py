"""Model cards of world-model checkpoints, read from what train.py stored in them (config, commit, metrics), or
with the model metrics re-measured on a small fresh collection.

    python -m benchmarks.model_cards [PATH ...] [remeasure=false] [episodes=50] [seed=1]
                                                        (default PATHs: worldmodels/pretrained/*.pt)

Prints one markdown row per checkpoint: the env and observation (and the state variables a pixel model also reads,
`model.proprio`, and those its latent was trained to hold, `model.state_targets`), the frame history
(`model.history`: observations per encoder input), size, training steps, speed and time (seconds of training steps,
recorded since the `model/` metrics), the training data (episodes / transitions), the held-out
open-loop prediction error relative to the constant-latent baseline (1.0 = no better than predicting that nothing
moves) at k = 1, 5, the env's planning horizon (`mpc.horizon` of configs/env/<env>.yaml, if within an episode)
and the episode length, the linear probe latent -> state (R^2: the mean over the variables success depends on,
then every variable; see worldmodels.metrics), and the Spearman correlation of latent distance with the env's task
distance (the planner's cost landscape).
`remeasure=true` recomputes those model metrics on `episodes` fresh data-policy episodes collected with the
checkpoint's env config and episode length from `seed` (the shipped data used seed 0), instead of reading the
checkpoint's: checkpoints written before the probe was fixed store an `eval/probe_r2` on raw wrapping angles, which
is not shown.
"""
from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path

import torch
from omegaconf import OmegaConf

import configs
import envs
from benchmarks import cli
from envs.data import Dataset, collect
from worldmodels.checkpoint import PRETRAINED, load_checkpoint, read_checkpoint
from worldmodels.metrics import model_metrics, stored

HEADER = ("| env | obs | history | params / file | steps | train steps/s | train time | train data (episodes / transitions) | "
          "rel. err k=1 | k=5 | k=plan | k=episode | probe R² (task) | probe R² per variable | dist. Spearman | "
          "commit |\n" + "|---" * 16 + "|")


def plan_horizon(env_name: str) -> int | None:
    """The horizon evaluate.py plans with by default for this env."""
    return OmegaConf.select(configs.load_config("train", [f"env={env_name}"]), "mpc.horizon")


def remeasure(path: Path, episodes: int, seed: int) -> dict[str, float]:
    """The checkpoint's `model/` metrics on `episodes` fresh episodes of its env's data policy."""
    model, meta = load_checkpoint(path)
    env_cfg = envs.env_config(meta["env"])
    env = envs.make(env_cfg)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):   # stdout: the table only
        data = Dataset(collect(env_cfg, tmp, episodes=episodes, episode_len=meta["data"]["episode_len"],
                               seed=seed)).load_all()
    obs, actions, states = (torch.from_numpy(data[k]) for k in ("obs", "actions", "states"))
    metrics = model_metrics(model, obs, actions, states, env.distance, env.state_variables,
                            plan_horizon(env_cfg.name))
    env.close()
    return metrics


def card(path: Path, metrics: dict | None = None) -> str:
    """One table row; `metrics` (re-measured) replace the checkpoint's model metrics."""
    ckpt = read_checkpoint(path)
    meta = ckpt["meta"]
    m = meta["metrics"] if metrics is None else {**meta["metrics"], **metrics}
    params = sum(v.numel() for v in ckpt["model"].values())
    length, horizon = meta["data"]["episode_len"], plan_horizon(meta["env"]["name"])
    # training data: recorded since the model/ metrics; before that, the dataset less the held-out episodes
    train_episodes = meta["data"].get("train_episodes",
                                      meta["data"]["episodes"] - meta["config"]["train"]["eval_episodes"])

    def number(value, digits):
        return "-" if value is None else f"{value:.{digits}f}"

    rel = lambda k: number(stored(m, f"rel_err_k{k}"), 3)  # noqa: E731
    at_plan = "-" if horizon is None else f"{rel(horizon)} (H={horizon})" if horizon <= length else \
        f"- (H={horizon} > {length})"
    # probe: model/ keys only; an old checkpoint's eval/probe_r2 is the raw-angle probe, a different number
    per_variable = ", ".join(f"{k.removeprefix('model/probe_r2/')} {v:.3f}" for k, v in m.items()
                             if k.startswith("model/probe_r2/")) or "-"
    seconds = meta.get("train_time_s")
    history = ckpt["model_config"].get("history", 1)  # checkpoints from before frame history have 1
    proprio = meta["config"].get("model", {}).get("proprio") or []  # none before proprioception
    targets = meta["config"].get("model", {}).get("state_targets") or []  # none before state targets
    obs = meta["env"]["obs_type"] + (f" + {', '.join(proprio)}" if proprio else "") + \
        (f" (trained to hold {', '.join(targets)})" if targets else "")
    return (f"| {meta['env']['name']} | {obs} | {history} | {params / 1e3:.0f}k / "
            f"{path.stat().st_size / 2**20:.1f} MB | {meta['step']} | {number(m.get('perf/steps_per_s'), 1)} | "
            f"{'-' if seconds is None else f'{seconds / 60:.1f} min'} | "
            f"{train_episodes} / {train_episodes * length} | {rel(1)} | {rel(5)} | {at_plan} | "
            f"{rel(length)} (H={length}) | {number(m.get('model/probe_r2'), 3)} | {per_variable} | "
            f"{number(stored(m, 'dist_spearman'), 2)} | {(meta.get('git_commit') or '-')[:10]} |")


def main(argv: list[str]) -> None:
    options = [a for a in argv if "=" in a]
    args = cli.parse(options, {"remeasure": "false", "episodes": "50", "seed": "1"},
                     "PATH ..., remeasure=true|false, episodes=N, seed=S")
    if (args["remeasure"] not in ("true", "false") or not args["episodes"].isdigit() or int(args["episodes"]) < 2
            or not args["seed"].isdigit()):
        raise SystemExit(f"error: remeasure={args['remeasure']!r}, episodes={args['episodes']!r}, "
                         f"seed={args['seed']!r}: need remeasure=true|false, episodes >= 2 (the probe fits on half, "
                         f"scores on the other) and seed >= 0")
    paths = [Path(a) for a in argv if "=" not in a] or sorted(PRETRAINED.glob("*.pt"))
    rows = [card(p, remeasure(p, int(args["episodes"]), int(args["seed"])) if args["remeasure"] == "true" else None)
            for p in paths]
    print(HEADER, *rows, sep="\n")


if __name__ == "__main__":
    main(sys.argv[1:])
