"""Planner-in-the-loop data: MPC episodes of a world model and a planner, written as a dataset train.py trains on.

    python -m agent.collect [env=NAME] [planner=NAME] [checkpoint=PATH] [episodes=N] [out=DIR] [key=value ...]
    python train.py env=NAME data.extra=[DIR]                 (the data-policy dataset plus these episodes)

Why: a planner drives a learned model to actions the data policy seldom took, where the model's predictions are
wrong, and its plans exploit those errors (benchmarks/oracle_probe.py's realised errors: Push-T plans predicted to
end 0.12 of the start distance from the goal latent end 0.42 away). Training on the planner's own episodes corrects
the model where the planner goes (DAgger-style data aggregation); a next round collects with the retrained model.

An episode is `episode_len` planner steps of MPC (`mpc.horizon`, replanning every `mpc.replan_every` steps) in tasks
of `mpc.budget` steps: the first is the env's task for the episode's seed, each later one starts where the agent is,
with a goal drawn from there the env's way (goal_mode=trajectory: the data policy run goal_steps native steps on).
Episodes do not stop at success: acting near the goal is data too. The directory has `envs.data`'s format, its
meta.json's "policy" names the checkpoint (path, SHA-256, commit), planner and MPC settings, and, as with the data
policy, shard i is drawn from the seed [seed, i] alone, so an interrupted collection resumes where it stopped.
"""
from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import hashlib
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

import configs
import envs
import planners
from agent.evaluation import USER_ERRORS, load_world_model
from agent.mpc import AgentError, MPCAgent, MPCConfig
from envs.data import collect
from worldmodels import provenance


class MPCPolicy:
    """`envs.data.collect`'s policy: MPC episodes of `model` and `planner` in `batch` episodes at once, chained tasks
    of `mpc.budget` steps each (see the module docstring). `describe` is what meta.json records."""

    def __init__(self, model, planner, env_cfg: envs.EnvConfig, mpc: MPCConfig, batch: int, describe: dict):
        self.model, self.planner, self.env_cfg, self.batch = model, planner, env_cfg, batch
        self.mpc = replace(mpc, stop_on_success=False)
        self.describe = describe
        self.tasks = self.solved = 0   # tasks run and reached (at any step) so far, for the progress line

    def shard(self, rng: np.random.Generator, size: int, episode_len: int, progress) -> dict[str, np.ndarray]:
        check_task_steps(episode_len, self.mpc.budget)
        parts = []
        for first in range(0, size, self.batch):
            n = min(self.batch, size - first)
            env_batch = envs.EnvBatch(self.env_cfg, n)
            try:
                parts.append(self._episodes(env_batch, rng, episode_len // self.mpc.budget, progress))
            finally:
                env_batch.close()
        return {key: np.concatenate([p[key] for p in parts]) for key in ("obs", "actions", "states")}

    def _episodes(self, env_batch: envs.EnvBatch, rng: np.random.Generator, n_tasks: int,
                  progress) -> dict[str, np.ndarray]:
        """obs (n, T+1, ...), actions (n, T, A), states (n, T+1, S) of len(env_batch) episodes of n_tasks tasks."""
        generator = torch.Generator(self.model.device).manual_seed(int(rng.integers(2 ** 63)))
        agent = MPCAgent(self.model, self.planner, self.mpc, generator=generator, trace=True)
        n = len(env_batch)
        obs, actions, states = [[] for _ in range(n)], [[] for _ in range(n)], [[] for _ in range(n)]
        options = None   # the first task: the env's own for the seed
        for task in range(n_tasks):
            seeds = [int(s) for s in rng.integers(2 ** 31, size=n)]
            episodes, _ = agent.run(env_batch, seeds, options)
            if any(e.trivial for e in episodes):   # envs redraw solved tasks, so this is a broken env
                raise RuntimeError(f"{self.env_cfg.name}: a task was solved at reset; envs must redraw those")
            for i, e in enumerate(episodes):
                skip = 1 if task else 0   # a later task's first frame is the previous task's last
                obs[i] += e.observations[skip:]
                states[i] += e.states[skip:]
                actions[i] += e.actions
            self.tasks, self.solved = self.tasks + n, self.solved + sum(e.success for e in episodes)
            options = [{"start_state": s[-1]} for s in states]
            progress(n / n_tasks)
        return {"obs": np.stack([np.stack(o) for o in obs]),
                "actions": np.stack([np.stack(a) for a in actions]).astype(np.float32),
                "states": np.stack([np.stack(s) for s in states]).astype(np.float64)}


def check_task_steps(episode_len: int, budget: int) -> None:
    if episode_len % budget:
        raise AgentError(f"episode_len={episode_len} is not a multiple of mpc.budget={budget} (the steps of each "
                         f"task)")


def run(cfg) -> Path:
    env_cfg = envs.env_config(OmegaConf.to_container(cfg.env, resolve=True))
    planner_cfg = OmegaConf.to_container(cfg.planner, resolve=True)
    planner = planners.make(planner_cfg)
    mpc = MPCConfig(**{**OmegaConf.to_container(cfg.mpc, resolve=True), "budget": cfg.task_steps or cfg.mpc.budget})
    for key in ("episodes", "episode_len", "task_steps", "episodes_per_shard", "batch"):
        if cfg[key] is not None and cfg[key] < 1:
            raise AgentError(f"{key}={cfg[key]}: must be >= 1")
    if cfg.threads is not None and cfg.threads < 1:
        raise AgentError(f"threads={cfg.threads}: must be >= 1, or null for torch's default")
    model, meta, checkpoint = load_world_model(env_cfg, cfg.checkpoint, cfg.device)
    episode_len = cfg.episode_len or (meta.get("data") or {}).get("episode_len")
    if episode_len is None:
        raise AgentError(f"checkpoint {checkpoint} records no training episode length; pass episode_len=N")
    check_task_steps(episode_len, mpc.budget)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    describe = {"name": "mpc", "checkpoint": provenance.repo_path(checkpoint),
                "checkpoint_sha256": provenance.file_sha256(checkpoint), "checkpoint_commit": meta.get("git_commit"),
                "planner": planner_cfg,
                "mpc": {k: v for k, v in asdict(mpc).items() if k != "stop_on_success"}, "batch": cfg.batch,
                "device": cfg.device, "git_commit": provenance.git_commit(), "versions": provenance.versions()}
    out = Path(cfg.out) if cfg.out else default_out(env_cfg, describe, cfg.seed, episode_len, cfg.episodes_per_shard)
    policy = MPCPolicy(model, planner, env_cfg, mpc, cfg.batch, describe)
    collect(env_cfg, out, cfg.episodes, episode_len, cfg.seed, cfg.episodes_per_shard, policy=policy)
    if policy.tasks:
        print(f"collect {env_cfg.name}: {policy.solved}/{policy.tasks} of this run's MPC tasks reached their goal "
              f"(at any step)")
    print(f"planner-in-the-loop data: {out}\ntrain on it beside the data-policy episodes: "
          f"python train.py env={env_cfg.name} data.extra=[{out}]")
    return out


def default_out(env_cfg: envs.EnvConfig, describe: dict, seed: int, episode_len: int, episodes_per_shard: int) -> Path:
    """data/<env>-<obs_type>-mpc-<hash of what makes the episodes>: the same command finds (and resumes) it again.
    Provenance that does not change the episodes (commits, versions) is left out of the hash."""
    key = {"env": asdict(env_cfg), "seed": seed, "episode_len": episode_len, "episodes_per_shard": episodes_per_shard,
           **{k: v for k, v in describe.items() if k not in ("checkpoint", "checkpoint_commit", "git_commit",
                                                               "versions")}}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return Path("data") / f"{env_cfg.name}-{env_cfg.obs_type}-mpc-{digest[:10]}"


if __name__ == "__main__":
    sys.exit(configs.main(run, "collect", user_errors=USER_ERRORS))
