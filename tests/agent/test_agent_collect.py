"""agent/collect.py: planner-in-the-loop episodes written as a dataset that replays exactly and trains beside the
data-policy one."""
import numpy as np
import pytest

import configs
import envs
import train
from agent import collect
from envs.data import Dataset
from worldmodels import load_checkpoint, provenance

ENV = envs.env_config("wall", obs_type="state", options={"door_y": 32.0, "door_width": 12.0})   # wall.yaml's
SMALL = ["env=wall", "env.obs_type=state", "planner=cem", "planner.iters=2", "planner.iters_warm=1",
         "planner.samples=16", "planner.elites=4", "mpc.horizon=3", "episodes=3", "episode_len=6", "task_steps=3",
         "batch=2", "episodes_per_shard=2"]


def collected(tmp_path, checkpoint, *extra):
    return collect.run(configs.load_config("collect", [*SMALL, f"checkpoint={checkpoint}", *extra]))


@pytest.fixture(scope="module")
def mpc_data(tmp_path_factory):
    from tests.conftest import save_tiny_checkpoint
    tmp = tmp_path_factory.mktemp("collect")
    checkpoint = save_tiny_checkpoint(tmp / "tiny.pt", obs_type="state")
    return checkpoint, collected(tmp, checkpoint, f"out={tmp / 'mpc'}")


def test_mpc_episodes_replay_exactly_in_the_env_and_record_their_source(mpc_data):
    checkpoint, out = mpc_data
    data = Dataset(out)
    arrays = data.load_all()
    assert len(data) == 3 and arrays["obs"].shape == (3, 7, 2) and arrays["actions"].shape == (3, 6, 10)
    assert arrays["obs"].dtype == np.float32 and arrays["states"].dtype == np.float64
    policy = data.meta["policy"]
    assert policy["name"] == "mpc" and policy["planner"]["name"] == "cem" and policy["mpc"]["budget"] == 3
    assert policy["checkpoint_sha256"] == provenance.file_sha256(checkpoint)
    env = envs.make(ENV)
    env.reset(seed=0)
    for i in range(3):   # the stored actions, executed from the stored start, give the stored states and obs
        env.set_state(arrays["states"][i, 0])
        for t in range(6):
            obs, *_ = env.step(arrays["actions"][i, t])
            np.testing.assert_array_equal(env.get_state(), arrays["states"][i, t + 1])
            np.testing.assert_array_equal(obs, arrays["obs"][i, t + 1])
    assert np.abs(arrays["actions"]).max() <= 1.0   # clipped to the env's bounds, as executed
    assert not np.allclose(arrays["actions"], 0)


def test_same_settings_same_episodes_and_the_default_directory_is_keyed_by_them(mpc_data, tmp_path, monkeypatch):
    checkpoint, out = mpc_data
    again = collected(tmp_path, checkpoint, f"out={tmp_path / 'again'}")
    for key, value in Dataset(out).load_all().items():
        np.testing.assert_array_equal(Dataset(again).load_all()[key], value)
    monkeypatch.chdir(tmp_path)
    first = collected(tmp_path, checkpoint)
    assert first.parent.name == "data" and first.name.startswith("wall-state-mpc-")
    assert collected(tmp_path, checkpoint) == first
    assert collected(tmp_path, checkpoint, "seed=1") != first


def test_bad_settings_are_one_line_errors(mpc_data, capsys):
    checkpoint, _ = mpc_data
    code = configs.main(collect.run, "collect", [*SMALL, f"checkpoint={checkpoint}", "task_steps=4"],
                        user_errors=collect.USER_ERRORS)
    assert code == 2 and "episode_len=6 is not a multiple of mpc.budget=4" in capsys.readouterr().err
    code = configs.main(collect.run, "collect", [*SMALL, f"checkpoint={checkpoint}", "episode_len=null"],
                        user_errors=collect.USER_ERRORS)
    assert code == 2 and "records no training episode length; pass episode_len=N" in capsys.readouterr().err


def test_train_py_trains_on_the_data_policy_and_the_mpc_episodes(mpc_data, tmp_path):
    _, out = mpc_data
    base = envs.data.collect(ENV, tmp_path / "base", episodes=6, episode_len=6, seed=0)
    cfg = configs.load_config("train", [
        "env=wall", "env.obs_type=state", f"data.path={base}", f"data.extra=[{out}]", f"logdir={tmp_path / 'run'}",
        "model.latent_dim=8", "model.hidden=16", "model.action_embed=8", "model.predictor_hidden=16",
        "train.steps=2", "train.batch_size=4", "train.seq_len=3", "train.warmup=1", "train.eval_episodes=2",
        "train.sigreg_projections=8", "mpc.horizon=2"])
    train.run(cfg)
    _, meta = load_checkpoint(tmp_path / "run" / "model.pt", env="wall", obs_type="state")
    assert meta["data"]["train_episodes"] == 6 - 2 + 3 and meta["data"]["transitions"] == 7 * 6
    assert [e["episodes"] for e in meta["data"]["extra"]] == [3] and meta["data"]["extra"][0]["policy"]["name"] == "mpc"
    assert meta["config"]["data"]["extra"] == [str(out)]
