import envs  # noqa: I001

import numpy as np
import pytest

from envs.pusht import AGENT_RADIUS, ANGLE_TOLERANCE, POS_TOLERANCE


@pytest.fixture(scope="module", params=["pixels", "state"])
def env(request):
    env = envs.make("pusht", obs_type=request.param)
    yield env
    env.close()


def test_actions_are_table_positions_and_state_observation_is_normalised():
    env = envs.make("pusht", obs_type="state")
    assert env.action_space.low.min() == 0 and env.action_space.high.max() == 512
    env.reset(seed=0)
    obs, _, _, _, info = env.step(env.action_space.sample())
    s = info["state"]
    np.testing.assert_allclose(obs, [*(s[:4] / 256 - 1), np.cos(s[4]), np.sin(s[4]), *(s[5:7] / 512)],
                               rtol=1e-5, atol=1e-6)
    env.close()


def test_set_state_round_trip_mid_push(env):
    """Pins a real bug: pymunk warm-starts contacts from impulses cached in the previous step, so restoring a state
    taken while the agent pushed the block used to diverge on the next step."""
    env.reset(seed=1)
    rng = np.random.default_rng(0)
    contacts = 0
    for _ in range(12):
        for _ in range(20):
            env._step_physics(env.data_action(rng))
        state = env.get_state()
        actions = [np.tile(state[2:4], 5)] * 2   # drive at the block
        first = [env.step(a)[4]["state"] for a in actions]
        contacts += not np.allclose(first[-1][2:5], state[2:5])
        env.set_state(state)
        np.testing.assert_array_equal(env.get_state(), state)
        np.testing.assert_array_equal([env.step(a)[4]["state"] for a in actions], first)
    assert contacts >= 3


def test_success_thresholds_on_block_pose(env):
    goal = env.reset(seed=2)[1]["goal_state"]
    moved = goal.copy()
    moved[[0, 1, 5]] += 100.0   # the agent's pose and velocity do not count
    moved[2:5] += [12.0, 15.0, ANGLE_TOLERANCE - 0.01]
    assert env.is_success(moved, goal) and env.distance(moved, goal) == pytest.approx(19.209373, rel=1e-6)
    assert not env.is_success(goal + [0, 0, 12.0, 17.0, 0, 0, 0, 0, 0, 0], goal)                 # 20.8 px
    assert not env.is_success(goal + [0, 0, 0, 0, ANGLE_TOLERANCE + 0.01, 0, 0, 0, 0, 0], goal)
    across = goal.copy()
    across[4], goal[4] = -np.pi + 0.1, np.pi - 0.1   # 0.2 rad apart across the wrap
    assert env.is_success(across, goal)
    assert POS_TOLERANCE == 20.0


def test_frame_shows_agent_and_block_without_the_fixed_target():
    env = envs.make("pusht")
    env.reset(seed=0)
    state = np.zeros(10)
    state[:5] = [100.0, 400.0, 320.0, 200.0, 0.3]
    env.set_state(state)
    frame = env.render()
    r, g, b = (frame[..., i].astype(int) for i in range(3))
    agent = (b > 190) & (r < 110)                                 # royal blue disc
    block = (abs(r - 119) < 25) & (abs(g - 136) < 25) & (b > 120) & (b < 190)   # slate grey T
    target = (g > 200) & (r < 180) & (b < 180)                    # gym-pusht's light green goal T
    assert agent.sum() >= 4 and block.sum() >= 40 and target.sum() == 0
    rows, cols = np.nonzero(agent)
    assert abs(cols.mean() - 100 / 8) < 1.5 and abs(rows.mean() - 400 / 8) < 1.5   # 8 table px per image px
    env.close()


def test_sampled_states_keep_agent_off_the_block_and_block_off_the_walls():
    env = envs.make("pusht", obs_type="state")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(100):
        env.set_state(env.sample_state(rng))
        agent = tuple(env.get_state()[:2])
        assert min(shape.point_query(agent).distance for shape in env._sim.block.shapes) > AGENT_RADIUS
        corners = env._sim.get_keypoints(env._sim.block.shapes)
        assert corners.min() > 5 and corners.max() < 507
    env.close()


def test_data_policy_moves_the_block():
    env = envs.make("pusht", obs_type="state")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    moved, turned = [], []
    for _ in range(6):
        start = env.sample_state(rng)
        env.set_state(start)
        for _ in range(150):   # 30 planner steps
            env._step_physics(env.data_action(rng))
        end = env.get_state()
        moved.append(env.distance(end, start))
        turned.append(abs((end[4] - start[4] + np.pi) % (2 * np.pi) - np.pi))
    assert np.mean(moved) > 100 and min(moved) > 20 and np.mean(turned) > 0.3
    env.close()


def test_bad_state_or_option_raises_env_error(env):
    env.reset(seed=0)
    with pytest.raises(envs.EnvError, match="state"):
        env.set_state(np.zeros(5))
    with pytest.raises(envs.EnvError, match="option"):
        envs.make("pusht", options={"legacy": True})
