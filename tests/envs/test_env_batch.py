import numpy as np
import pytest

import envs


@pytest.mark.parametrize("obs_type", ["pixels", "state"])
def test_batch_matches_single_envs(obs_type):
    cfg = envs.env_config("wall", obs_type=obs_type)
    batch = envs.EnvBatch(cfg, 3)
    singles = [envs.make(cfg) for _ in range(3)]
    seeds = [4, 5, 6]
    obs, info = batch.reset(seeds)
    for i, env in enumerate(singles):
        o, inf = env.reset(seed=seeds[i])
        np.testing.assert_array_equal(obs[i], o)
        for key in ("state", "goal_state", "goal_obs", "success", "distance"):
            np.testing.assert_array_equal(info[key][i], inf[key])
    assert info["success"].dtype == bool and info["distance"].shape == (3,)
    rng = np.random.default_rng(0)
    for _ in range(4):
        actions = rng.uniform(-1, 1, (3, 10)).astype(np.float32)
        obs, reward, terminated, truncated, info = batch.step(actions)
        for i, env in enumerate(singles):
            o, r, _, _, inf = env.step(actions[i])
            np.testing.assert_array_equal(obs[i], o)
            assert reward[i] == r
            np.testing.assert_array_equal(info["state"][i], inf["state"])
        assert reward.shape == terminated.shape == truncated.shape == (3,) and not terminated.any()
    np.testing.assert_array_equal(batch.get_states(), info["state"])
    assert batch.render().shape == (3, 64, 64, 3)
    batch.close()


def test_masked_envs_stay_still():
    batch = envs.EnvBatch("wall", 3)
    obs0, info0 = batch.reset([0, 1, 2], [None, {"start_state": [10.0, 10.0], "goal_state": [50.0, 50.0]}, None])
    np.testing.assert_array_equal(info0["state"][1], [10.0, 10.0])
    obs, reward, _, _, info = batch.step(np.full((3, 10), 0.5, np.float32), mask=np.array([True, False, True]))
    np.testing.assert_array_equal(obs[1], obs0[1])
    np.testing.assert_array_equal(info["state"][1], info0["state"][1])
    assert reward[1] == -info0["distance"][1]
    assert not np.array_equal(info["state"][0], info0["state"][0])
    assert not np.array_equal(obs[2], obs0[2])


@pytest.mark.parametrize("call, needle", [
    (lambda b: b.reset([0, 1]), "2 seeds"),
    (lambda b: (b.reset([0, 1, 2]), b.step(np.zeros((3, 4))))[1], "(3, 4)"),
    (lambda b: (b.reset([0, 1, 2]), b.step(np.zeros((3, 10)), mask=[True, False]))[1], "mask"),
    (lambda b: b.step(np.zeros((3, 10))), "before reset"),
])
def test_batch_errors(call, needle):
    with pytest.raises(envs.EnvError) as err:
        call(envs.EnvBatch("wall", 3))
    assert needle in str(err.value) and "\n" not in str(err.value)
