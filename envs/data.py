"""Offline datasets of episodes (the env's data policy, or another policy such as MPC): collection into compressed
shards, and lazy reading.

A dataset directory holds `meta.json` and shards `shard_00000.npz`, ... Each shard stores `k` fixed-length
episodes of `T` planner steps:
    obs     (k, T+1, *obs_shape)  uint8 pixels or float32 state observations
    actions (k, T, A)             float32 block actions (A = action_block * action_dim), native units
    states  (k, T+1, S)           float64 physical states
An episode starts at `env.sample_state(rng)` and follows `env.data_action` one native action at a time (the
policy sees the state after every native action), exactly what `env.step` would do with the recorded block.

When the last shard is written, `env.coverage` of all the collected states (how well the data policy covered
what the task needs, e.g. Push-T's contact share) is stored in `meta.json` under "coverage" and printed.

Shard i is generated from the seed `[seed, i]` alone, so collection can stop anywhere and resume: a shard is
written to a temporary file and renamed into place, then `meta.json` (listing the finished shards) is rewritten
the same way. Only shards listed in `meta.json` count; stray temporary files of an interrupted run are removed.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from envs import EnvConfig, EnvError, env_config, make

FORMAT = 1
TMP_SUFFIX = ".tmp"
CACHED_SHARDS = 4


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _episode(env, rng: np.random.Generator, episode_len: int) -> dict[str, np.ndarray]:
    env.set_state(env.sample_state(rng))
    obs, actions, states = [env.observe()], [], [env.get_state()]
    for _ in range(episode_len):
        block = []
        for _ in range(env.cfg.action_block):
            # rounded to the stored float32 first, so replaying the stored actions repeats the episode exactly
            action = np.clip(env.data_action(rng), env.action_low, env.action_high).astype(np.float32)
            env._step_physics(action.astype(np.float64))
            block.append(action)
        actions.append(np.concatenate(block))
        obs.append(env.observe())
        states.append(env.get_state())
    return {"obs": np.stack(obs), "actions": np.stack(actions),
            "states": np.stack(states).astype(np.float64)}


def collect(env_cfg: EnvConfig, out_dir: str | os.PathLike, episodes: int, episode_len: int, seed: int,
            episodes_per_shard: int = 100, policy=None) -> Path:
    """Collect `episodes` episodes of `episode_len` planner steps into `out_dir` (resuming what is there).

    `policy` (None: the env's data policy) acts instead of the data policy: an object with `describe`, a JSON-able
    dict stored in meta.json as "policy" (a resumed collection must match it), and `shard(rng, size, episode_len,
    progress)`, the arrays of a shard of `size` episodes as above, drawn from `rng` alone, calling `progress(n)` as
    (possibly fractional) episodes are done (e.g. `agent.collect`'s MPC episodes).
    """
    env_cfg = env_config(env_cfg)
    if episodes < 1 or episode_len < 1 or episodes_per_shard < 1:
        raise EnvError(f"episodes={episodes}, episode_len={episode_len}, episodes_per_shard={episodes_per_shard}: "
                       f"each must be >= 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stray in out.glob("*" + TMP_SUFFIX):
        stray.unlink()
    env = make(env_cfg)
    env.reset(seed=seed)   # some simulators must be reset once before set_state
    meta = {"format": FORMAT, "env": dataclasses.asdict(env_cfg), "episodes": episodes,
            "data_policy_revision": env.data_policy_revision, "episode_len": episode_len,
            "episodes_per_shard": episodes_per_shard, "seed": seed, "policy": policy and policy.describe,
            "obs_shape": list(env.observation_space.shape), "obs_dtype": str(env.observation_space.dtype),
            "action_dim": int(env.action_space.shape[0]), "state_dim": int(env.get_state().shape[0]), "shards": []}
    sizes = [min(episodes_per_shard, episodes - start) for start in range(0, episodes, episodes_per_shard)]
    names = [f"shard_{i:05d}.npz" for i in range(len(sizes))]

    done: dict[str, int] = {}
    meta_path = out / "meta.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        for key in ("format", "env", "data_policy_revision", "episode_len", "episodes_per_shard", "seed", "obs_shape",
                    "action_dim", "policy"):
            if old.get(key) != meta[key]:
                raise EnvError(f"{out} holds a dataset with {key}={old.get(key)!r}, not {meta[key]!r}; "
                               f"use another directory")
        done = {s["file"]: s["episodes"] for s in old["shards"] if (out / s["file"]).exists()}

    def save_meta(f):
        f.write(json.dumps(meta, indent=1).encode())

    bar = tqdm(total=episodes, desc=f"collect {env_cfg.name}", unit="ep")
    for i, (name, size) in enumerate(zip(names, sizes)):
        if done.get(name) != size:
            rng = np.random.default_rng([seed, i])
            if policy is None:
                eps = []
                for _ in range(size):
                    eps.append(_episode(env, rng, episode_len))
                    bar.update(1)
                shard = {key: np.stack([e[key] for e in eps]) for key in eps[0]}
            else:
                shard = policy.shard(rng, size, episode_len, bar.update)
            _write_atomic(out / name, lambda f: np.savez_compressed(f, **shard))
        else:
            bar.update(size)
        meta["shards"].append({"file": name, "episodes": size})
        _write_atomic(meta_path, save_meta)
    bar.close()
    states = []
    for s in meta["shards"]:
        with np.load(out / s["file"]) as z:
            states.append(z["states"])
    meta["coverage"] = {k: round(float(v), 4) for k, v in env.coverage(np.concatenate(states)).items()}
    _write_atomic(meta_path, save_meta)
    print(f"collect {env_cfg.name}: coverage " + ", ".join(f"{k}={v:.3f}" for k, v in meta["coverage"].items()))
    env.close()
    return out


class Dataset:
    """A collected dataset, read lazily: a few shards are kept in memory (least recently used dropped)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.exists():
            raise EnvError(f"no dataset at {self.path} (meta.json missing)")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != FORMAT:
            raise EnvError(f"{meta_path}: format {self.meta.get('format')!r}, expected {FORMAT}")
        listed = sum(s["episodes"] for s in self.meta["shards"])
        if listed != self.meta["episodes"]:
            raise EnvError(f"{self.path}: incomplete dataset ({listed} of {self.meta['episodes']} episodes); "
                           f"run collect again to finish it")
        self.episodes_per_shard = self.meta["episodes_per_shard"]
        self._cache: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()

    def __len__(self) -> int:
        return self.meta["episodes"]

    def shard(self, i: int) -> dict[str, np.ndarray]:
        if i not in self._cache:
            with np.load(self.path / self.meta["shards"][i]["file"]) as z:
                self._cache[i] = {key: z[key] for key in ("obs", "actions", "states")}
            if len(self._cache) > CACHED_SHARDS:
                self._cache.popitem(last=False)
        self._cache.move_to_end(i)
        return self._cache[i]

    def episode(self, i: int) -> dict[str, np.ndarray]:
        """obs (T+1, *obs_shape), actions (T, A), states (T+1, S) of episode i."""
        if not 0 <= i < len(self):
            raise IndexError(f"episode {i} out of range [0, {len(self)})")
        shard = self.shard(i // self.episodes_per_shard)
        return {key: value[i % self.episodes_per_shard] for key, value in shard.items()}

    def load_all(self) -> dict[str, np.ndarray]:
        """Every episode in memory: obs (N, T+1, ...), actions (N, T, A), states (N, T+1, S)."""
        shards = [self.shard(i) for i in range(len(self.meta["shards"]))]
        return {key: np.concatenate([s[key] for s in shards]) for key in ("obs", "actions", "states")}
