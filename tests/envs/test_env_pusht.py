import envs  # noqa: I001

import numpy as np
import pytest

from envs.data import _episode
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


def test_success_is_the_fields_joint_agent_and_block_criterion():
    """stable-worldmodel / DINO-WM eval_state: ||state[:4] - goal[:4]|| < 20 over agent xy and block xy jointly, and
    wrapped block angle error < pi/9; distance = max(position error px, angle error deg), success <=> distance < 20."""
    env = envs.make("pusht", obs_type="state")
    goal = np.array([200.0, 150.0, 250.0, 300.0, 0.5, 0, 0, 0, 0, 0])

    def at(dxy=(0, 0, 0, 0), dangle=0.0, dvel=(0, 0, 0, 0, 0)):
        return goal + np.array([*dxy, dangle, *dvel])

    assert POS_TOLERANCE == 20.0 and ANGLE_TOLERANCE == pytest.approx(np.pi / 9)
    # 12, 15 split between the agent and the block: sqrt(144 + 225) = 19.21 < 20 jointly
    assert env.is_success(at((12.0, 0, 0, 15.0)), goal)
    assert env.distance(at((12.0, 0, 0, 15.0)), goal) == pytest.approx(np.sqrt(369.0))
    assert not env.is_success(at((12.0, 0, 0, 16.1)), goal)                 # 20.01 jointly, each part < 20
    assert not env.is_success(at((19.99, 0, 0, 0), ANGLE_TOLERANCE + 1e-3), goal)   # position in, angle out
    assert env.is_success(at((19.9, 0, 0, 0), ANGLE_TOLERANCE - 1e-3, (50, 50, 9, 9, 3)), goal)   # velocities free
    assert not env.is_success(at((100.0, 0, 0, 0)), goal)                   # the agent counts now
    assert env.distance(at(dangle=np.deg2rad(30.0)), goal) == pytest.approx(30.0)   # 1 deg counts as 1 px
    assert env.distance(at((3.0, 4.0, 0, 0), np.deg2rad(2.0)), goal) == pytest.approx(5.0)
    for state in (at((12.0, 0, 0, 15.0)), at((0, 0, 19.0, 0), 0.3), at((0, 20.5, 0, 0)), at(dangle=0.4)):
        assert env.is_success(state, goal) == (env.distance(state, goal) < POS_TOLERANCE)
    # the angle wraps: 0.2 rad apart across +-pi, and whole turns apart
    across, goal_across = goal.copy(), goal.copy()
    across[4], goal_across[4] = -np.pi + 0.1, np.pi - 0.1
    assert env.is_success(across, goal_across) and env.distance(across, goal_across) == pytest.approx(np.rad2deg(0.2))
    assert env.is_success(at(dangle=4 * np.pi + 0.1), goal)
    env.close()


def test_block_only_criterion_is_reported_as_an_info_key():
    env = envs.make("pusht", obs_type="state")
    goal = np.array([200.0, 150.0, 250.0, 300.0, 0.5, 0, 0, 0, 0, 0])
    agent_away = goal + [150.0, 0, 5.0, 0, 0.1, 0, 0, 0, 0, 0]
    _, info = env.reset(seed=0, options={"start_state": agent_away, "goal_state": goal})
    assert info["block_success"] and not info["success"]
    assert env.task_info(goal + [0, 0, 25.0, 0, 0, 0, 0, 0, 0, 0], goal) == {"block_success": False}
    env.close()


def test_trajectory_goals_are_25_native_data_steps_ahead_and_never_trivial():
    env = envs.make("pusht", obs_type="state", goal_mode="trajectory", goal_steps=25)
    block_moved = 0
    for seed in range(8):
        _, info = env.reset(seed=seed)
        assert not info["success"] and info["distance"] >= POS_TOLERANCE
        block_moved += not info["block_success"]
    assert block_moved >= 4   # the pusher is at the block most of the time, so most goals move the block
    env.close()


def test_relative_actions_offset_the_agent_and_zero_holds():
    absolute = envs.make("pusht", obs_type="state")
    relative = envs.make("pusht", obs_type="state", options={"relative_actions": True})
    assert relative.action_space.low.min() == -100 and relative.action_space.high.max() == 100
    state = np.array([100.0, 400.0, 320.0, 200.0, 0.3, 40.0, -30.0, 0, 0, 0])   # agent moving, far from the block
    for env in (absolute, relative):
        env.reset(seed=0, options={"start_state": state, "goal_state": state + 50})
    offsets = np.random.default_rng(0).uniform(-60, 60, (4, 2))
    for offset in offsets:   # the same targets, expressed both ways, give the same physics
        target = absolute.get_state()[:2] + offset
        absolute._step_physics(target)
        relative._step_physics(offset)
        np.testing.assert_allclose(relative.get_state(), absolute.get_state(), atol=1e-9)
    for env in (absolute, relative):   # holding brings the agent to rest where it is and leaves the block alone
        before = env.get_state()
        hold = env.hold_action()
        assert hold.shape == (10,) and hold.dtype == np.float32
        np.testing.assert_array_equal(env.get_state(), before)   # hold_action left the env where it was
        for _ in range(4):
            env.step(env.hold_action())
        after = env.get_state()
        assert np.linalg.norm(after[:2] - before[:2]) < 15 and np.linalg.norm(after[5:7]) < 1.0
        np.testing.assert_allclose(after[2:5], before[2:5])
    np.testing.assert_array_equal(relative.hold_action(), np.zeros(10, np.float32))
    with pytest.raises(envs.EnvError, match="relative_actions"):
        envs.make("pusht", options={"relative_actions": "yes"})
    absolute.close()
    relative.close()


def test_data_policy_is_the_same_in_both_action_conventions():
    runs = []
    for relative in (False, True):
        env = envs.make("pusht", obs_type="state", options={"relative_actions": relative})
        rng = np.random.default_rng(3)
        env.set_state(env.sample_state(rng))
        for _ in range(60):
            env._step_physics(np.clip(env.data_action(rng), env.action_low, env.action_high))
        runs.append(env.get_state())
        env.close()
    np.testing.assert_allclose(runs[0], runs[1], atol=1e-6)


def test_coverage_counts_contact_block_motion_and_pose_spread():
    env = envs.make("pusht", obs_type="state")
    # hand-made: the agent touching the bar's long side (bar spans local y in [0, 30]: agent 15 px below y = 0)
    touching = np.array([250.0, 300.0 - 16.0, 250.0, 300.0, 0.0, 0, 0, 0, 0, 0])
    away = touching + [0, -40.0, 0, 0, 0, 0, 0, 0, 0, 0]
    pushed = touching + [0, 5.0, 0, 5.0, 0, 0, 0, 0, 0, 0]
    cov = env.coverage(np.stack([touching, away, pushed])[None])
    assert cov["contact_share"] == pytest.approx(2 / 3) and cov["block_moving_share"] == pytest.approx(0.5)
    assert cov["block_pose_cells"] == pytest.approx(1 / 288)
    # the data policy on a short rollout: mostly touching the block, moving it, poses spread out
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    cov = env.coverage(np.stack([_episode(env, rng, 30)["states"] for _ in range(6)]))
    assert cov["contact_share"] > 0.3 and cov["block_moving_share"] > 0.4 and cov["block_pose_cells"] > 0.1
    env.close()


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
        moved.append(np.linalg.norm(end[2:4] - start[2:4]))
        turned.append(abs((end[4] - start[4] + np.pi) % (2 * np.pi) - np.pi))
    assert np.mean(moved) > 100 and min(moved) > 20 and np.mean(turned) > 0.3
    env.close()


def test_bad_state_or_option_raises_env_error(env):
    env.reset(seed=0)
    with pytest.raises(envs.EnvError, match="state"):
        env.set_state(np.zeros(5))
    with pytest.raises(envs.EnvError, match="option.*relative_actions"):
        envs.make("pusht", options={"legacy": True})
