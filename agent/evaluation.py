"""Evaluating a world model and a planner on episodes: evaluate.py's pieces, most shared with every benchmark.

  load_world_model  the checkpoint for an env (null: the shipped one), frozen, checked to fit the env
  episode_seeds     independent env seeds per (run seed, episode index)
  run_episodes      a batch of MPC episodes in chunks, shared among torchrun ranks (agent/sharding.py)
  summarize         THE results summary of a set of episodes: rates, 95% intervals, times, means
  results_json      evaluate.py's results.json, complete or interrupted (agent/resume.py)
  write_json        THE results writer: atomic, so a crash never leaves a partial file
  reference_frames  the frames plan pictures are drawn with (agent/logging.NearestFrames)
  eval_logger       evaluate.py's TensorBoard writer, with plan pictures where the env allows them
  USER_ERRORS       what an evaluation reports as one line and exit code 2 (`configs.main`)
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

import envs
import planners
import worldmodels
from agent import sharding
from agent.logging import EvalLogger, NearestFrames
from agent.mpc import AgentError, Episode, MPCAgent, MPCConfig, PlanRecord
from worldmodels import provenance
from worldmodels.metrics import planning_warning

REFERENCE_EPISODES, REFERENCE_EPISODE_LEN = 64, 8  # the fallback frame set for plan pictures: 576 frames
Z95 = 1.959964
TASK_FIELDS = ("goal_mode", "goal_steps")  # EnvConfig fields that only pick tasks: free to differ from training
USER_ERRORS = (envs.EnvError, planners.PlannerError, worldmodels.ModelError, AgentError)  # + CheckpointError


# ---- the model ------------------------------------------------------------------------------------------------
def load_world_model(env_cfg: envs.EnvConfig, checkpoint: str | None = None, device: str = "cpu"):
    """(model frozen in eval mode, meta, checkpoint path) for `checkpoint` (None: the shipped one,
    `shipped_checkpoint`) on `device`, checked to fit the env. Warns on stderr when the metrics train.py
    stored in it say the model is unusable for planning (`worldmodels.metrics.planning_warning`)."""
    if device != "cpu" and not (device.startswith("cuda") and torch.cuda.is_available()):
        raise AgentError(f"device={device!r}: choose cpu" + (" or cuda" if torch.cuda.is_available() else ""))
    path = Path(checkpoint) if checkpoint else shipped_checkpoint(env_cfg)
    if not checkpoint and not path.exists():
        raise worldmodels.CheckpointError(f"no shipped checkpoint for env {env_cfg.name!r} at {path}; "
                                          f"pass checkpoint=PATH (train one with train.py)")
    model, meta = worldmodels.load_checkpoint(path, env=env_cfg.name, obs_type=env_cfg.obs_type, device=device)
    model.eval().requires_grad_(False)
    probe = envs.make(env_cfg)
    action_size, defaults = int(probe.action_space.shape[0]), type(probe).default_options
    probe.close()
    check_model_fits_env(meta, env_cfg, defaults)
    if model.action_dim != action_size:
        raise AgentError(f"checkpoint model plans {model.action_dim}-d actions, env {env_cfg.name} takes "
                         f"{action_size}-d block actions")
    warning = planning_warning(meta.get("metrics", {}))
    if warning:
        print(f"WARNING: {path}: {warning}", file=sys.stderr)
    return model, meta, path


def shipped_checkpoint(env_cfg: envs.EnvConfig) -> Path:
    """worldmodels/pretrained/<env>-<obs_type>.pt where the project ships a model for that observation type beside
    the env's default one (pointmaze: pixels beside state), else <env>.pt."""
    for_obs_type = worldmodels.checkpoint.PRETRAINED / f"{env_cfg.name}-{env_cfg.obs_type}.pt"
    return for_obs_type if for_obs_type.exists() else worldmodels.checkpoint.PRETRAINED / f"{env_cfg.name}.pt"


def check_model_fits_env(meta: dict, env_cfg: envs.EnvConfig, default_options: dict) -> None:
    """The run's env must be the one the model was trained in: every EnvConfig field except those that only sample
    tasks (TASK_FIELDS) and, for state observations, image_size (it only sizes rendered frames). Options are
    compared at their effective values, an absent one taking the env's default (`default_options`), so an old
    checkpoint's `options: {}` matches the defaults. A mismatch is one line naming each differing key."""
    trained_cfg = meta.get("env", {})
    skip = TASK_FIELDS + (("image_size",) if env_cfg.obs_type == "state" else ())

    def flat(cfg: dict) -> dict:
        options = {**default_options, **(cfg.get("options") or {})}
        return {**{k: v for k, v in cfg.items() if k != "options" and k not in skip},
                **{f"options.{k}": v for k, v in options.items()}}

    trained, run = flat(trained_cfg), flat(dataclasses.asdict(env_cfg))
    differ = [k for k in trained if trained[k] != run.get(k)]
    if differ:
        shown = lambda cfg: ", ".join(f"env.{k}={_yaml(cfg.get(k))}" for k in differ)  # noqa: E731
        raise AgentError(f"checkpoint was trained with {shown(trained)}, but this run has {shown(run)}; pass "
                         f"{' '.join(f'env.{k}={_yaml(trained[k])}' for k in differ)} or use a matching checkpoint")


def _yaml(value) -> str:
    """A value as typed on the command line."""
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def reference_frames(model, meta: dict, env_cfg: envs.EnvConfig, seed: int) -> NearestFrames:
    """Encoded frames for plan pictures: from the checkpoint's training data (meta `data.path`) when it is on
    this machine and readable, else from a small fresh collection with the env's data policy (a shipped checkpoint
    on a new machine has no dataset beside it; a dataset may also be incomplete, moved or damaged)."""
    from envs.data import Dataset, collect
    path = (meta.get("data") or {}).get("path")
    why = "training data not on this machine"
    if path and Path(path).exists():
        try:
            data = Dataset(path)
            if data.meta["env"].get("obs_type") == env_cfg.obs_type:  # the model encodes this env's observations
                return NearestFrames.from_dataset(model, data, seed=seed)
            why = f"training data {path} holds {data.meta['env'].get('obs_type')} observations"
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:  # EnvError is a ValueError
            why = f"training data {path} unreadable: {err}"
    print(f"plan pictures: {REFERENCE_EPISODES * (REFERENCE_EPISODE_LEN + 1)} fresh reference frames from the env's "
          f"data policy ({why})")  # before the collection: it is the pause before the first episode
    with tempfile.TemporaryDirectory() as tmp:
        collect(env_cfg, tmp, episodes=REFERENCE_EPISODES, episode_len=REFERENCE_EPISODE_LEN, seed=seed)
        return NearestFrames.from_dataset(model, Dataset(tmp), seed=seed)


def eval_logger(model, meta: dict, env_cfg: envs.EnvConfig, logdir: Path, log_videos: int, seed: int) -> EvalLogger:
    """evaluate.py's TensorBoard writer in `logdir`, with plan pictures of the first `log_videos` episodes drawn on
    the env's frame where it has `pixel_xy` (else a strip of nearest frames; none for state observations without
    it)."""
    probe = envs.make(env_cfg)
    to_pixel = probe.pixel_xy if probe.has_pixel_xy else None
    probe.close()
    pictures = log_videos > 0 and (env_cfg.obs_type == "pixels" or to_pixel is not None)
    nearest = reference_frames(model, meta, env_cfg, seed) if pictures else None
    logdir.mkdir(parents=True, exist_ok=True)
    return EvalLogger(str(logdir), nearest, to_pixel)


# ---- episodes -------------------------------------------------------------------------------------------------
def episode_seeds(seed: int, n: int) -> list[int]:
    """Independent env seeds per (run seed, episode index); runs with different seeds share no tasks."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n, dtype=np.uint32)]


def run_episodes(model, planner, mpc: MPCConfig, env_cfg: envs.EnvConfig, seeds: list[int], batch: int, seed: int,
                 shard: sharding.Shard = sharding.Shard(), options=None, record: int = 0,
                 env_batches: dict | None = None, on_chunk=None, on_plan=None, on_episode=None,
                 skip=frozenset()) -> tuple[list[Episode], list[PlanRecord]] | None:
    """The episodes with env seeds `seeds`, run in chunks of `batch` (one EnvBatch, one batched planner call per
    control step), this rank's chunks here; chunk k's planner noise comes from (seed, k) alone, so the results do
    not depend on the number of ranks. `options(i)`: episode i's reset options (None: the env draws the task from
    its seed); the first `record` episodes keep frames and their first plan's latents. Chunks in `skip` are not
    run (a resumed evaluation has them). Live, on this rank: `on_plan(record)` after every solve,
    `on_episode(i, episode)` when episode i (its index in `seeds`) ends, `on_chunk(k, episodes, records)` after
    chunk k; rank 0 also gets the other ranks' solves and episodes through on_plan and on_episode once gathered.
    EnvBatches are kept by size in `env_batches` for the caller to reuse and close (None: closed here). Returns, on
    rank 0, every rank's episodes and plan records in episode order (skipped chunks left out); None on the others."""
    batches = {} if env_batches is None else env_batches
    done = []
    try:
        for k, chunk in shard.chunks(len(seeds), batch):
            if k in skip:
                continue
            if len(chunk) not in batches:
                batches[len(chunk)] = envs.EnvBatch(env_cfg, len(chunk))
            agent = MPCAgent(model, planner, mpc, generator=sharding.chunk_generator(seed, k, model.device))
            eps, recs = agent.run(batches[len(chunk)], [seeds[i] for i in chunk],
                                  None if options is None else [options(i) for i in chunk],
                                  record=[i < record for i in chunk], on_plan=on_plan,
                                  on_episode=on_episode and (lambda j, ep, chunk=chunk: on_episode(chunk[j], ep)))
            done.append((k, (eps, recs)))
            if on_chunk is not None:
                on_chunk(k, eps, recs)
    finally:
        if env_batches is None:
            for env_batch in batches.values():
                env_batch.close()
    parts = shard.gather(done)
    if not shard.main:
        return None
    for k, (eps, recs) in (item for part in parts[1:] for item in part):  # the other ranks' chunks
        for rec in recs if on_plan else ():
            on_plan(rec)
        for j, ep in enumerate(eps if on_episode else ()):
            on_episode(k * batch + j, ep)
    merged = sharding.merge_chunks(parts)
    return [e for eps, _ in merged for e in eps], [r for _, recs in merged for r in recs]


# ---- results --------------------------------------------------------------------------------------------------
def wilson(successes: int, n: int, z: float = Z95) -> list[float] | None:
    """95% Wilson score interval of a success rate; None without episodes."""
    if n == 0:
        return None
    p, z2 = successes / n, z * z
    centre, half = (p + z2 / (2 * n)) / (1 + z2 / n), z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def summarize(episodes: list[dict], records: list[PlanRecord]) -> dict:
    """The results summary of episodes (rows as `Episode.summary()` gives them) and their plan records, for
    evaluate.py's results.json and every benchmark cell alike. Trivial episodes (solved at reset) are counted in
    `excluded_trivial` and left out of every rate and mean. An empty cell - a value with nothing to take it over
    (no counted episode, no success, no plan call) - is None (JSON null), never 0."""
    counted = [e for e in episodes if not e["trivial"]]
    wins = sum(e["success"] for e in counted)
    finals = sum(e["success_final"] for e in counted)
    times = [e["time_to_success_s"] for e in counted if e["success"]]
    n = len(counted)
    return {"episodes": len(episodes), "excluded_trivial": len(episodes) - n, "successes": wins,
            "success_rate": wins / n if n else None, "success_ci95": wilson(wins, n),
            "success_final_rate": finals / n if n else None, "success_final_ci95": wilson(finals, n),
            "median_time_to_success_s": statistics.median(times) if times else None,
            "mean_plan_time_s": statistics.fmean(r.seconds for r in records) if records else None,
            "plan_calls": len(records),
            "mean_iters_per_call": statistics.fmean(r.iters for r in records) if records else None,
            "mean_steps": statistics.fmean(e["steps"] for e in counted) if counted else None,
            "mean_final_distance": statistics.fmean(e["final_distance"] for e in counted) if counted else None,
            "nonfinite_plans": sum(e["nonfinite_plans"] for e in episodes)}


def results_json(config: dict, env: str, checkpoint: Path, checkpoint_sha256: str, commit: str | None,
                 rows: list[dict], records: list, chunk_calls: dict[int, list] | None = None) -> dict:
    """evaluate.py's results.json: the summary of `rows` (`Episode.summary()` rows with index and distances) and
    `records`, the rows, the resolved `config` and provenance (`commit` and `checkpoint_sha256`: the git commit and
    the checkpoint's content when the run started, so editing or committing files while it runs does not change
    what it records). With `chunk_calls` ({chunk: plan calls}) it is an interrupted run's (complete: false) and
    lists the finished chunks, which a resume skips and checks the checkpoint against (agent/resume.py)."""
    out = {"env": env, "planner": config["planner"]["name"], "checkpoint": provenance.repo_path(checkpoint),
           "checkpoint_sha256": checkpoint_sha256, "seed": config["seed"],
           "complete": chunk_calls is None, **summarize(rows, records),
           "protocol": "success: goal reached after any env step within mpc.budget; success_final: the last state",
           "per_episode": rows, "config": config, "versions": provenance.versions(),
           "git_commit": commit}
    if chunk_calls is not None:
        out["finished_chunks"] = [{"chunk": k, "plan_calls": c} for k, c in sorted(chunk_calls.items())]
    return out


def write_json(path: Path, data) -> None:
    """Write `data` as indented JSON atomically (a temporary file renamed into place), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)
