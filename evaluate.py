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
"""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import datetime
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from tqdm import tqdm

import configs
from configs import provenance
import envs
import planners
import worldmodels
from agent import AgentError, MPCAgent, MPCConfig, sharding
from agent.logging import EvalLogger, NearestFrames

REPO = Path(__file__).resolve().parent
PRETRAINED = REPO / "worldmodels" / "pretrained"
REFERENCE_EPISODES, REFERENCE_EPISODE_LEN = 64, 8  # the fallback frame set for plan pictures: 576 frames


def episode_seeds(seed: int, n: int) -> list[int]:
    """Independent env seeds per (run seed, episode index); runs with different seeds share no tasks."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n, dtype=np.uint32)]


def check_model_fits_env(meta: dict, env_cfg: envs.EnvConfig, action_size: int, model) -> None:
    trained = meta.get("env", {})
    for key in ("action_block", "image_size") if env_cfg.obs_type == "pixels" else ("action_block",):
        if key in trained and trained[key] != getattr(env_cfg, key):
            raise AgentError(f"checkpoint was trained with env.{key}={trained[key]}, but env.{key}="
                             f"{getattr(env_cfg, key)}; set env.{key}={trained[key]} or use a matching checkpoint")
    if model.action_dim != action_size:
        raise AgentError(f"checkpoint model plans {model.action_dim}-d actions, env {env_cfg.name} takes "
                         f"{action_size}-d block actions")


def dataset_frames(model, meta: dict, env_cfg: envs.EnvConfig, seed: int) -> NearestFrames:
    """Encoded frames for plan pictures: from the checkpoint's training data (meta `data.path`) when it is on
    this machine, else from a small fresh collection with the env's data policy (a shipped checkpoint on a new
    machine has no dataset beside it)."""
    from envs.data import Dataset, collect
    path = (meta.get("data") or {}).get("path")
    if path and (Path(path) / "meta.json").exists():
        data = Dataset(path)
        if data.meta["env"].get("obs_type") == env_cfg.obs_type:  # the model encodes this env's observations
            return NearestFrames.from_dataset(model, data, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        collect(env_cfg, tmp, episodes=REFERENCE_EPISODES, episode_len=REFERENCE_EPISODE_LEN, seed=seed)
        return NearestFrames.from_dataset(model, Dataset(tmp), seed=seed)


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def load_world_model(cfg, env_cfg: envs.EnvConfig):
    """(model frozen in eval mode, meta, checkpoint path) for `cfg.checkpoint` (null: the shipped one) on
    `cfg.device`, checked to fit the env."""
    if cfg.device != "cpu" and not (cfg.device.startswith("cuda") and torch.cuda.is_available()):
        raise AgentError(f"device={cfg.device!r}: choose cpu" + (" or cuda" if torch.cuda.is_available() else ""))
    checkpoint = Path(cfg.checkpoint) if cfg.checkpoint else PRETRAINED / f"{env_cfg.name}.pt"
    if not cfg.checkpoint and not checkpoint.exists():
        raise worldmodels.CheckpointError(f"no shipped checkpoint for env {env_cfg.name!r} at {checkpoint}; "
                                          f"pass checkpoint=PATH (train one with train.py)")
    model, meta = worldmodels.load_checkpoint(checkpoint, env=env_cfg.name, obs_type=env_cfg.obs_type,
                                              device=cfg.device)
    model.eval().requires_grad_(False)
    probe = envs.make(env_cfg)
    action_size = int(probe.action_space.shape[0])
    probe.close()
    check_model_fits_env(meta, env_cfg, action_size, model)
    return model, meta, checkpoint


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
    model, meta, checkpoint = load_world_model(cfg, env_cfg)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    logdir = Path(cfg.logdir or f"runs/eval/{env_cfg.name}-{cfg.planner.name}-{stamp}")
    if (logdir / "results.json").exists():
        raise AgentError(f"logdir={str(logdir)!r} already holds a finished run; choose another logdir")

    # ---- run ------------------------------------------------------------------------------------------------
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    seeds = episode_seeds(cfg.seed, cfg.episodes)
    chunks, done = [], []  # this rank's (chunk index, (episodes, solves))
    batches: dict[int, envs.EnvBatch] = {}
    my_chunks = shard.chunks(cfg.episodes, cfg.batch)
    with tqdm(total=sum(len(c) for _, c in my_chunks), desc=f"eval {env_cfg.name}/{cfg.planner.name}", unit="ep",
              disable=not shard.main) as bar:
        for k, chunk in my_chunks:
            if len(chunk) not in batches:
                batches[len(chunk)] = envs.EnvBatch(env_cfg, len(chunk))
            agent = MPCAgent(model, planner, mpc, generator=sharding.chunk_generator(cfg.seed, k, cfg.device))
            eps, recs = agent.run(batches[len(chunk)], [seeds[i] for i in chunk],
                                  record=[i < cfg.log_videos for i in chunk])
            chunks.append((k, (eps, recs)))
            done += eps
            bar.update(len(chunk))
            bar.set_postfix(success=f"{sum(e.success for e in done)}/{sum(not e.trivial for e in done)}")
    for batch in batches.values():
        batch.close()
    parts = shard.gather(chunks)
    if not shard.main:
        return None
    probe = envs.make(env_cfg)
    to_pixel = probe.pixel_xy if probe.has_pixel_xy else None  # plans drawn on the frame; else a frame strip
    probe.close()
    pictures = cfg.log_videos > 0 and (env_cfg.obs_type == "pixels" or to_pixel is not None)
    nearest = dataset_frames(model, meta, env_cfg, cfg.seed) if pictures else None
    logdir.mkdir(parents=True, exist_ok=True)
    logger = EvalLogger(str(logdir), nearest, to_pixel)
    episodes, solves = [], []
    for eps, recs in sharding.merge_chunks(parts):
        for rec in recs:
            logger.solve(rec)
        for ep in eps:
            logger.episode(len(episodes), ep)
            episodes.append(ep)
        solves += recs

    # ---- results --------------------------------------------------------------------------------------------
    counted = [e for e in episodes if not e.trivial]
    times = [e.time_to_success_s for e in counted if e.success]
    metrics = {
        "success_rate": sum(e.success for e in counted) / len(counted) if counted else 0.0,
        "success_final_rate": sum(e.success_final for e in counted) / len(counted) if counted else 0.0,
        "excluded_trivial": len(episodes) - len(counted),
        "median_time_to_success_s": statistics.median(times) if times else None,
        "mean_plan_time_s": statistics.fmean(r.seconds for r in solves) if solves else None,
        "mean_steps": statistics.fmean(e.steps for e in counted) if counted else 0.0,
        "mean_final_distance": statistics.fmean(e.final_distance for e in counted) if counted else 0.0,
    }
    resolved = OmegaConf.to_container(cfg, resolve=True)
    results = {
        "env": env_cfg.name, "planner": cfg.planner.name, "checkpoint": str(checkpoint), "seed": cfg.seed,
        "episodes": cfg.episodes, "successes": sum(e.success for e in counted), **metrics,
        "mean_iters_per_solve": statistics.fmean(r.iters for r in solves) if solves else None,
        "protocol": "success: goal reached after any env step within mpc.budget; success_final: the last state",
        "per_episode": [{**e.summary(), "distances": e.distances} for e in episodes],
        "config": resolved, "versions": provenance.versions(), "git_commit": provenance.git_commit(),
    }
    hparams = {"env": env_cfg.name, "planner": cfg.planner.name, "checkpoint": str(checkpoint), "seed": cfg.seed,
               "episodes": cfg.episodes, **{f"mpc.{k}": v for k, v in resolved["mpc"].items()},
               **{f"planner.{k}": v for k, v in resolved["planner"].items() if not isinstance(v, (dict, list))}}
    logger.finish({k: v for k, v in metrics.items() if v is not None}, hparams, resolved,
                  resolved={"checkpoint": str(checkpoint), "logdir": str(logdir)},
                  discrete={"planner": sorted(planners.PLANNERS), "env": sorted(envs.ENVS)})
    write_json(logdir / "results.json", results)

    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    print(f"\n{'env':<10} {'planner':<8} {'episodes':>8} {'success':>8} {'final':>7} {'excluded':>8} "
          f"{'median t_succ':>13} {'plan s/step':>11}\n"
          f"{env_cfg.name:<10} {cfg.planner.name:<8} {len(counted):>8} {fmt(metrics['success_rate'], '.3f'):>8} "
          f"{fmt(metrics['success_final_rate'], '.3f'):>7} {metrics['excluded_trivial']:>8} "
          f"{fmt(metrics['median_time_to_success_s'], '.2f'):>13} {fmt(metrics['mean_plan_time_s'], '.3f'):>11}")
    print(f"results: {logdir / 'results.json'}\nTensorBoard logs: {logdir}\n  tensorboard --logdir {logdir}")
    return results


USER_ERRORS = (envs.EnvError, planners.PlannerError, worldmodels.CheckpointError, AgentError)

if __name__ == "__main__":
    with sharding.from_env() as shard:
        sys.exit(configs.main(lambda cfg: run(cfg, shard), "evaluate", user_errors=USER_ERRORS))
