import json

import numpy as np
import pytest

import envs
import envs.data as data
from envs.data import Dataset, collect

STATE_CFG = envs.env_config("wall", obs_type="state", action_block=2)
SMALL = dict(episodes=5, episode_len=3, seed=1, episodes_per_shard=2)


def arrays(path):
    return Dataset(path).load_all()


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("obs_type, shape, dtype", [("state", (2,), np.float32), ("pixels", (32, 32, 3), np.uint8)])
def test_round_trip(tmp_path, obs_type, shape, dtype):
    cfg = envs.env_config("wall", obs_type=obs_type, image_size=32, action_block=2)
    collect(cfg, tmp_path, **SMALL)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["env"]["obs_type"] == obs_type and meta["obs_shape"] == list(shape) and meta["action_dim"] == 4
    assert [s["episodes"] for s in meta["shards"]] == [2, 2, 1] and meta["state_dim"] == 2
    ds = Dataset(tmp_path)
    assert len(ds) == 5
    ep = ds.episode(4)
    assert ep["obs"].shape == (4, *shape) and ep["obs"].dtype == dtype
    assert ep["actions"].shape == (3, 4) and ep["actions"].dtype == np.float32
    assert ep["states"].shape == (4, 2) and ep["states"].dtype == np.float64
    # the recorded block actions replayed through env.step reproduce the recorded states and observations
    env = envs.make(cfg)
    env.reset(seed=0, options={"start_state": ep["states"][0], "goal_state": [60.0, 60.0]})
    np.testing.assert_array_equal(env.observe(), ep["obs"][0])
    for t, action in enumerate(ep["actions"]):
        obs, *_ = env.step(action)
        np.testing.assert_array_equal(env.get_state(), ep["states"][t + 1])
        np.testing.assert_array_equal(obs, ep["obs"][t + 1])
    with pytest.raises(IndexError):
        ds.episode(5)
    # the data policy's coverage of the collected states is recorded
    assert meta["coverage"] == {k: round(v, 4) for k, v in env.coverage(ds.load_all()["states"]).items()}
    assert set(meta["coverage"]) == {"cells_visited", "crossing_share"}


def test_same_seed_same_data_other_seed_other_data(tmp_path):
    collect(STATE_CFG, tmp_path / "a", **SMALL)
    collect(STATE_CFG, tmp_path / "b", **SMALL)
    collect(STATE_CFG, tmp_path / "c", **{**SMALL, "seed": 2})
    assert_same(arrays(tmp_path / "a"), arrays(tmp_path / "b"))
    assert not np.array_equal(arrays(tmp_path / "a")["states"], arrays(tmp_path / "c")["states"])


def test_interrupted_collection_leaves_no_partial_shard_and_resumes(tmp_path, monkeypatch):
    collect(STATE_CFG, tmp_path / "fresh", **SMALL)
    out = tmp_path / "run"
    real_savez, calls = np.savez_compressed, []

    def savez_then_die(file, **arrays_):
        calls.append(1)
        if len(calls) == 2:       # second shard: bytes half written, then the process is interrupted
            file.write(b"partial")
            raise KeyboardInterrupt
        real_savez(file, **arrays_)

    monkeypatch.setattr(np, "savez_compressed", savez_then_die)
    with pytest.raises(KeyboardInterrupt):
        collect(STATE_CFG, out, **SMALL)
    monkeypatch.setattr(np, "savez_compressed", real_savez)
    assert (out / "shard_00001.npz.tmp").exists()
    assert sorted(p.name for p in out.glob("shard_*.npz")) == ["shard_00000.npz"]
    assert [s["file"] for s in json.loads((out / "meta.json").read_text())["shards"]] == ["shard_00000.npz"]
    with pytest.raises(envs.EnvError, match="incomplete"):
        Dataset(out)

    made = []
    real_episode = data._episode
    monkeypatch.setattr(data, "_episode", lambda *a: made.append(1) or real_episode(*a))
    collect(STATE_CFG, out, **SMALL)
    assert len(made) == 3                                 # shard 0 (2 episodes) was kept, shards 1-2 made
    assert not list(out.glob("*.tmp"))                    # the interrupted temporary file is gone
    assert_same(arrays(out), arrays(tmp_path / "fresh"))

    made.clear()
    collect(STATE_CFG, out, **{**SMALL, "episodes": 6})   # growing: only the short last shard is redone
    assert len(made) == 2
    assert_same({k: v[:5] for k, v in arrays(out).items()}, arrays(tmp_path / "fresh"))


def test_resume_refuses_other_settings(tmp_path):
    collect(STATE_CFG, tmp_path, **SMALL)
    with pytest.raises(envs.EnvError, match="seed=1"):
        collect(STATE_CFG, tmp_path, **{**SMALL, "seed": 3})
    with pytest.raises(envs.EnvError, match="env="):
        collect(envs.env_config(STATE_CFG, action_block=3), tmp_path, **SMALL)


def test_lazy_shards(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "CACHED_SHARDS", 2)
    collect(STATE_CFG, tmp_path, episodes=7, episode_len=4, seed=0, episodes_per_shard=1)
    ds = Dataset(tmp_path)
    assert not ds._cache
    for i in range(len(ds)):
        ds.episode(i)
        assert len(ds._cache) <= 2
    assert np.all(np.abs(ds.load_all()["actions"]) <= 1)


class ReplayPolicy:
    """A policy that is not the data policy: constant actions, recorded from the env like the data policy's."""
    describe = {"name": "constant", "action": 0.5}

    def __init__(self):
        self.calls = []

    def shard(self, rng, size, episode_len, progress):
        self.calls.append(size)
        progress(size)
        env = envs.make(STATE_CFG)
        env.reset(seed=0)
        eps = []
        for _ in range(size):
            env.set_state(env.sample_state(rng))
            obs, states = [env.observe()], [env.get_state()]
            for _ in range(episode_len):
                env.step(np.full(env.action_space.shape, 0.5, np.float32))
                obs.append(env.observe())
                states.append(env.get_state())
            eps.append({"obs": np.stack(obs), "states": np.stack(states),
                        "actions": np.full((episode_len, *env.action_space.shape), 0.5, np.float32)})
        return {k: np.stack([e[k] for e in eps]) for k in eps[0]}


def test_another_policy_fills_the_shards_and_is_recorded_and_checked_on_resume(tmp_path):
    policy = ReplayPolicy()
    collect(STATE_CFG, tmp_path, episodes=5, episode_len=3, seed=0, episodes_per_shard=2, policy=policy)
    ds = Dataset(tmp_path)
    assert policy.calls == [2, 2, 1] and ds.meta["policy"] == ReplayPolicy.describe and len(ds) == 5
    assert np.all(ds.load_all()["actions"] == 0.5)
    collect(STATE_CFG, tmp_path, episodes=5, episode_len=3, seed=0, episodes_per_shard=2, policy=policy)
    assert policy.calls == [2, 2, 1]   # complete: nothing collected again
    with pytest.raises(envs.EnvError, match="policy="):
        collect(STATE_CFG, tmp_path, episodes=5, episode_len=3, seed=0, episodes_per_shard=2)


def test_errors(tmp_path):
    with pytest.raises(envs.EnvError, match="meta.json missing"):
        Dataset(tmp_path / "nothing")
    with pytest.raises(envs.EnvError, match="episodes=0"):
        collect(STATE_CFG, tmp_path, episodes=0, episode_len=3, seed=0)
    with pytest.raises(envs.EnvError, match="'maze'"):
        collect({"name": "maze"}, tmp_path, episodes=1, episode_len=1, seed=0)
