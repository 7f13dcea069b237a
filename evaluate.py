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
episodes and chunks) and exits 130; `resume=true` with the same logdir and config runs the chunks not finished
and ends with an uninterrupted run's results.
The pieces (loading the model, running and summarising episodes) are in agent/evaluation.py.
"""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import datetime
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
from omegaconf import OmegaConf
from tqdm import tqdm

import configs
import envs
import planners
from agent import AgentError, MPCConfig, sharding
from agent.evaluation import (USER_ERRORS, episode_seeds, load_world_model, reference_frames, run_episodes,
                              summarize, write_json)
from agent.logging import EvalLogger, tensorboard_command
from worldmodels import provenance

RESUME_MAY_CHANGE = ("resume", "logdir", "device", "threads")  # what a resumed evaluation may set differently
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
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    logdir = Path(cfg.logdir or f"runs/eval/{env_cfg.name}-{cfg.planner.name}-{stamp}")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    stored, chunk_calls = interrupted_run(logdir, resolved, cfg.resume)
    resumed = set(chunk_calls)  # chunks the interrupted run finished

    # ---- run: episodes are logged as they end; Ctrl-C keeps the finished ones -------------------------------
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    logger = make_logger(cfg, env_cfg, model, meta, logdir) if shard.main else None
    rows = {i: row for i, row in stored.items() if i // cfg.batch in chunk_calls}  # a cut chunk runs again
    for row in stored.values() if logger else ():  # logged by the interrupted run: counted, not logged again
        logger.count(row["trivial"], row["success"], row["success_final"])
    todo = [i for k, c in enumerate(range(0, cfg.episodes, cfg.batch)) if k not in chunk_calls
            for i in range(c, min(c + cfg.batch, cfg.episodes))]
    plans_per_episode = math.ceil(mpc.budget / mpc.replan_every)  # control steps of an episode that never succeeds
    live = []  # this process's solves, for a partial summary

    def on_plan(rec):
        live.append(rec)
        bar.update(len(rec.rows))
        if logger:
            logger.solve(rec)

    def on_episode(i, ep):
        if logger and i not in stored:
            logger.episode(i, ep)
        rows[i] = {"index": i, **ep.summary(), "distances": ep.distances}  # after logging: a resume skips it there
        bar.update(plans_per_episode - ep.control_steps)  # the budget it did not use
        counted = [r for r in rows.values() if not r["trivial"]]
        bar.set_postfix(episodes=f"{len(rows)}/{cfg.episodes}", success=f"{sum(r['success'] for r in counted)}/"
                                                                        f"{len(counted)}")

    def on_chunk(k, eps, recs):
        chunk_calls[k] = [[r.seconds, r.iters] for r in recs]

    with tqdm(total=len(todo) * plans_per_episode, desc=f"eval {env_cfg.name}/{cfg.planner.name}", unit="plan",
              disable=not shard.main) as bar:
        try:
            ran = run_episodes(model, planner, mpc, env_cfg, episode_seeds(cfg.seed, cfg.episodes), cfg.batch,
                               cfg.seed, shard, record=cfg.log_videos, on_plan=on_plan, on_episode=on_episode,
                               on_chunk=on_chunk, skip=resumed)
        except KeyboardInterrupt:
            if not shard.main:
                raise
            bar.close()
            path = logdir / "results.json"
            kept = {**stored, **rows}  # with the cut chunk's episodes a previous attempt finished
            write_json(path, results_of(cfg, env_cfg, checkpoint, resolved, [kept[i] for i in sorted(kept)],
                                        stored_records({k: chunk_calls[k] for k in resumed}) + live, chunk_calls))
            logger.close()
            raise configs.Interrupted(f"interrupted after {len(rows)} of {cfg.episodes} episodes; partial results "
                                      f"in {path}; continue with resume=true logdir={logdir}") from None
    if not shard.main:
        return None
    records = stored_records({k: chunk_calls[k] for k in resumed}) + ran[1]

    # ---- write: TensorBoard's eval/ numbers and HParams, results.json, a summary table -----------------------
    results = results_of(cfg, env_cfg, checkpoint, resolved, [rows[i] for i in range(cfg.episodes)], records)
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


def make_logger(cfg, env_cfg, model, meta, logdir: Path) -> EvalLogger:
    """The TensorBoard writer, with plan pictures drawn on the env's frame where it has `pixel_xy` (else a strip
    of nearest frames; none for state observations without it)."""
    probe = envs.make(env_cfg)
    to_pixel = probe.pixel_xy if probe.has_pixel_xy else None
    probe.close()
    pictures = cfg.log_videos > 0 and (env_cfg.obs_type == "pixels" or to_pixel is not None)
    nearest = reference_frames(model, meta, env_cfg, cfg.seed) if pictures else None
    logdir.mkdir(parents=True, exist_ok=True)
    return EvalLogger(str(logdir), nearest, to_pixel)


def interrupted_run(logdir: Path, config: dict, resume: bool) -> tuple[dict[int, dict], dict[int, list]]:
    """(per-episode rows by index, {chunk: its plan calls as [seconds, iters]} of the finished chunks) of the
    interrupted run in `logdir` that `resume=true` continues; empty for a fresh logdir. A finished run, an
    interrupted one without resume=true, or a config that differs in more than RESUME_MAY_CHANGE is an error."""
    path = logdir / "results.json"
    if not path.exists():
        if resume:
            raise AgentError(f"resume=true but {str(path)!r} does not exist; nothing to continue")
        return {}, {}
    old = json.loads(path.read_text())
    if old.get("complete", True):
        raise AgentError(f"logdir={str(logdir)!r} already holds a finished run; choose another logdir")
    if not resume:
        raise AgentError(f"logdir={str(logdir)!r} holds an interrupted run; pass resume=true to continue it or "
                         f"choose another logdir")
    before, now = flat(old["config"]), flat(config)
    changed = sorted(k for k in before.keys() | now.keys()
                     if k.split(".")[0] not in RESUME_MAY_CHANGE and before.get(k) != now.get(k))
    if changed:
        k = changed[0]
        raise AgentError(f"resume: {k}={now.get(k)!r} differs from the interrupted run's {before.get(k)!r}; a "
                         f"resumed run must keep its config")
    return ({r["index"]: r for r in old["per_episode"]},
            {c["chunk"]: c["plan_calls"] for c in old["finished_chunks"]})


def flat(d: dict, prefix: str = "") -> dict:
    return {k: v for key, value in d.items()
            for k, v in (flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value}).items()}


def stored_records(chunk_calls: dict[int, list]) -> list[SimpleNamespace]:
    """What `summarize` reads of plan records (seconds, iters), from the finished chunks' stored plan calls."""
    return [SimpleNamespace(seconds=s, iters=it) for calls in chunk_calls.values() for s, it in calls]


def results_of(cfg, env_cfg, checkpoint, resolved: dict, rows: list[dict], records,
               chunk_calls: dict[int, list] | None = None) -> dict:
    """results.json: the summary, the per-episode rows, the config and provenance. With `chunk_calls` it is an
    interrupted run's (complete: false): the finished episodes, and the finished chunks that a resume skips."""
    out = {"env": env_cfg.name, "planner": cfg.planner.name, "checkpoint": str(checkpoint), "seed": cfg.seed,
           "complete": chunk_calls is None, **summarize(rows, records),
           "protocol": "success: goal reached after any env step within mpc.budget; success_final: the last state",
           "per_episode": rows, "config": resolved, "versions": provenance.versions(),
           "git_commit": provenance.git_commit()}
    if chunk_calls is not None:
        out["finished_chunks"] = [{"chunk": k, "plan_calls": c} for k, c in sorted(chunk_calls.items())]
    return out


if __name__ == "__main__":
    with sharding.from_env() as shard:
        sys.exit(configs.main(lambda cfg: run(cfg, shard), "evaluate", user_errors=USER_ERRORS))
