"""Closed-loop evaluation: an MPC agent plans with a world model in latent space and controls the real env.

    python evaluate.py [env=NAME] [planner=NAME] [checkpoint=PATH] [episodes=N] [seed=S] [logdir=DIR]
                       [mpc.horizon=H] [key=value ...]          (defaults: configs/evaluate.yaml)

Writes DIR/results.json and TensorBoard logs in DIR. `torchrun --nproc_per_node=K evaluate.py ...` shares the
episodes among K processes (agent/sharding.py) and gives the same results as one process.
Success counts reaching the goal at ANY env step within
`mpc.budget` (LeWM protocol); `success_final_rate` scores the last state (DINO-WM protocol; equal to the first
while `mpc.stop_on_success` ends episodes at success). Tasks solved at reset are excluded from both and counted.
The same seed and config give the same results.json apart from the timings (keys ending in `_s`).
Every input is checked before anything is written; a bad one is a one-line error and exit code 2.
The pieces (loading the model, running and summarising episodes) are in agent/evaluation.py.
"""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import datetime
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf
from tqdm import tqdm

import configs
import envs
import planners
from agent import AgentError, MPCConfig, sharding
from agent.evaluation import (USER_ERRORS, episode_seeds, load_world_model, reference_frames, run_episodes,
                              summarize, write_json)
from agent.logging import EvalLogger
from worldmodels import provenance

EVAL_SCALARS = ("success_rate", "success_final_rate", "excluded_trivial", "median_time_to_success_s",
                "mean_plan_time_s", "mean_steps", "mean_final_distance")  # the summary's eval/ scalars in TensorBoard


def run(cfg, shard: sharding.Shard = sharding.Shard()) -> dict | None:
    """The evaluation; with several torchrun ranks each runs its chunks and rank 0 alone writes and returns."""
    # ---- check every input before anything is written -----------------------------------------------------
    env_cfg = envs.env_config(OmegaConf.to_container(cfg.env, resolve=True))
    planner = planners.make(OmegaConf.to_container(cfg.planner, resolve=True))
    mpc = MPCConfig(**OmegaConf.to_container(cfg.mpc, resolve=True))
    for key in ("episodes", "batch"):
        if cfg[key] < 1:
            raise AgentError(f"{key}={cfg[key]}: must be >= 1")
    if cfg.threads is not None and cfg.threads < 1:
        raise AgentError(f"threads={cfg.threads}: must be >= 1, or null for torch's default")
    if cfg.log_videos < 0:
        raise AgentError(f"log_videos={cfg.log_videos}: must be >= 0")
    model, meta, checkpoint = load_world_model(env_cfg, cfg.checkpoint, cfg.device)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    logdir = Path(cfg.logdir or f"runs/eval/{env_cfg.name}-{cfg.planner.name}-{stamp}")
    if (logdir / "results.json").exists():
        raise AgentError(f"logdir={str(logdir)!r} already holds a finished run; choose another logdir")
    probe = envs.make(env_cfg)
    to_pixel = probe.pixel_xy if probe.has_pixel_xy else None  # plans drawn on the frame; else a frame strip
    probe.close()
    pictures = cfg.log_videos > 0 and (env_cfg.obs_type == "pixels" or to_pixel is not None)
    # reference frames before the episodes: a failure here must not cost a finished run
    nearest = reference_frames(model, meta, env_cfg, cfg.seed) if pictures and shard.main else None

    # ---- run ------------------------------------------------------------------------------------------------
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    mine = sum(len(c) for _, c in shard.chunks(cfg.episodes, cfg.batch))
    with tqdm(total=mine, desc=f"eval {env_cfg.name}/{cfg.planner.name}", unit="ep", disable=not shard.main) as bar:
        done = []

        def progress(eps):
            done.extend(eps)
            bar.update(len(eps))
            bar.set_postfix(success=f"{sum(e.success for e in done)}/{sum(not e.trivial for e in done)}")
        ran = run_episodes(model, planner, mpc, env_cfg, episode_seeds(cfg.seed, cfg.episodes), cfg.batch, cfg.seed,
                           shard, record=cfg.log_videos, on_chunk=progress)
    if not shard.main:
        return None
    episodes, records = ran

    # ---- write: TensorBoard, results.json, a summary table --------------------------------------------------
    logdir.mkdir(parents=True, exist_ok=True)
    logger = EvalLogger(str(logdir), nearest, to_pixel)
    for rec in records:
        logger.solve(rec)
    for i, ep in enumerate(episodes):
        logger.episode(i, ep)
    summary = summarize([e.summary() for e in episodes], records)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    results = {
        "env": env_cfg.name, "planner": cfg.planner.name, "checkpoint": str(checkpoint), "seed": cfg.seed, **summary,
        "protocol": "success: goal reached after any env step within mpc.budget; success_final: the last state",
        "per_episode": [{**e.summary(), "distances": e.distances} for e in episodes],
        "config": resolved, "versions": provenance.versions(), "git_commit": provenance.git_commit(),
    }
    hparams = {"env": env_cfg.name, "planner": cfg.planner.name, "checkpoint": str(checkpoint), "seed": cfg.seed,
               "episodes": cfg.episodes, **{f"mpc.{k}": v for k, v in resolved["mpc"].items()},
               **{f"planner.{k}": v for k, v in resolved["planner"].items() if not isinstance(v, (dict, list))}}
    logger.finish({k: summary[k] for k in EVAL_SCALARS if summary[k] is not None}, hparams, resolved,
                  resolved={"checkpoint": str(checkpoint), "logdir": str(logdir)},
                  discrete={"planner": sorted(planners.PLANNERS), "env": sorted(envs.ENVS)})
    write_json(logdir / "results.json", results)

    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    print(f"\n{'env':<10} {'planner':<8} {'episodes':>8} {'success':>8} {'final':>7} {'excluded':>8} "
          f"{'median t_succ':>13} {'plan s/step':>11}\n"
          f"{env_cfg.name:<10} {cfg.planner.name:<8} {summary['episodes'] - summary['excluded_trivial']:>8} "
          f"{fmt(summary['success_rate'], '.3f'):>8} {fmt(summary['success_final_rate'], '.3f'):>7} "
          f"{summary['excluded_trivial']:>8} {fmt(summary['median_time_to_success_s'], '.2f'):>13} "
          f"{fmt(summary['mean_plan_time_s'], '.3f'):>11}")
    print(f"results: {logdir / 'results.json'}\nTensorBoard logs: {logdir}\n  tensorboard --logdir {logdir}")
    return results


if __name__ == "__main__":
    with sharding.from_env() as shard:
        sys.exit(configs.main(lambda cfg: run(cfg, shard), "evaluate", user_errors=USER_ERRORS))
