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
TensorBoard gets each episode as it ends. Ctrl-C writes a partial results.json ("complete": false: the finished
episodes and chunks) and exits 130; `resume=true` with the same logdir, config and model (checkpoint sha256) runs
the chunks not finished and ends with an uninterrupted run's results.
The pieces (loading the model, running and summarising episodes) are in agent/evaluation.py, the interrupted
run's bookkeeping in agent/resume.py.
"""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import datetime
import math
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf
from tqdm import tqdm

import configs
import envs
import planners
from agent import AgentError, MPCConfig, sharding
from agent.evaluation import (USER_ERRORS, episode_seeds, eval_logger, load_world_model, results_json, run_episodes,
                              write_json)
from agent.logging import tensorboard_command
from agent.resume import Progress
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
    if cfg.resume and not cfg.logdir:
        raise AgentError("resume=true needs logdir=DIR, the directory of the interrupted run")
    model, meta, checkpoint = load_world_model(env_cfg, cfg.checkpoint, cfg.device)
    commit = provenance.git_commit()  # the code this run executes: taken before it starts, not when it writes
    model_sha256 = provenance.file_sha256(checkpoint)  # likewise the model it plans with
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    logdir = Path(cfg.logdir or f"runs/eval/{env_cfg.name}-{cfg.planner.name}-{stamp}")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    progress = Progress(logdir, resolved, model_sha256, cfg.resume, cfg.episodes, cfg.batch)  # the run it continues

    # ---- run: episodes are logged as they end; Ctrl-C keeps the finished ones -------------------------------
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    logger = eval_logger(model, meta, env_cfg, logdir, cfg.log_videos, cfg.seed) if shard.main else None
    for row in progress.stored.values() if logger else ():  # logged by the interrupted run: counted, not logged again
        logger.count(row["trivial"], row["success"], row["success_final"])
    plans_per_episode = math.ceil(mpc.budget / mpc.replan_every)  # control steps of an episode that never succeeds

    def on_plan(rec):
        progress.plan(rec)
        bar.update(len(rec.rows))
        if logger:
            logger.solve(rec)

    def on_episode(i, ep):
        if logger and i not in progress.stored:
            logger.episode(i, ep)
        progress.episode(i, ep)  # after logging: a resume skips it there
        bar.update(plans_per_episode - ep.control_steps)  # the budget it did not use
        wins, counted = progress.successes()
        bar.set_postfix(episodes=f"{len(progress.rows)}/{cfg.episodes}", success=f"{wins}/{counted}")

    with tqdm(total=progress.todo * plans_per_episode, desc=f"eval {env_cfg.name}/{cfg.planner.name}", unit="plan",
              disable=not shard.main) as bar:
        try:
            ran = run_episodes(model, planner, mpc, env_cfg, episode_seeds(cfg.seed, cfg.episodes), cfg.batch,
                               cfg.seed, shard, record=cfg.log_videos, on_plan=on_plan, on_episode=on_episode,
                               on_chunk=progress.chunk, skip=progress.skip)
        except KeyboardInterrupt:
            if not shard.main:
                raise
            bar.close()
            path = logdir / "results.json"
            write_json(path, results_json(resolved, env_cfg.name, checkpoint, model_sha256, commit,
                                          *progress.partial()))
            logger.close()
            raise configs.Interrupted(f"interrupted after {len(progress.rows)} of {cfg.episodes} episodes; partial "
                                      f"results in {path}; continue with resume=true logdir={logdir}") from None
    if not shard.main:
        return None

    # ---- write: TensorBoard's eval/ numbers and HParams, results.json, a summary table -----------------------
    results = results_json(resolved, env_cfg.name, checkpoint, model_sha256, commit,
                           [progress.rows[i] for i in range(cfg.episodes)], progress.records(ran[1]))
    summary = {k: results[k] for k in EVAL_SCALARS}
    hparams = {"env": env_cfg.name, "planner": cfg.planner.name, "checkpoint": str(checkpoint), "seed": cfg.seed,
               "episodes": cfg.episodes, **{f"mpc.{k}": v for k, v in resolved["mpc"].items()},
               **{f"planner.{k}": v for k, v in resolved["planner"].items() if not isinstance(v, (dict, list))}}
    logger.finish({k: v for k, v in summary.items() if v is not None}, hparams, resolved,
                  resolved={"checkpoint": str(checkpoint), "logdir": str(logdir)},
                  discrete={"planner": sorted(planners.PLANNERS), "env": sorted(envs.ENVS)})
    write_json(logdir / "results.json", results)

    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    print(f"\n{'env':<10} {'planner':<8} {'episodes':>8} {'success':>8} {'final':>7} {'excluded':>8} "
          f"{'median t_succ':>13} {'plan s/step':>11}\n"
          f"{env_cfg.name:<10} {cfg.planner.name:<8} {results['episodes'] - results['excluded_trivial']:>8} "
          f"{fmt(results['success_rate'], '.3f'):>8} {fmt(results['success_final_rate'], '.3f'):>7} "
          f"{results['excluded_trivial']:>8} {fmt(results['median_time_to_success_s'], '.2f'):>13} "
          f"{fmt(results['mean_plan_time_s'], '.3f'):>11}")
    print(f"results: {logdir / 'results.json'}\nTensorBoard: {tensorboard_command(logdir)}")
    return results


if __name__ == "__main__":
    with sharding.from_env() as shard:
        sys.exit(configs.main(lambda cfg: run(cfg, shard), "evaluate", user_errors=USER_ERRORS))
