import envs  # noqa: I001  (first: sets MUJOCO_GL before MuJoCo loads)

import numpy as np
import pytest

from envs.data import _episode
from envs.reacher import SUCCESS_TOLERANCE, wrap


@pytest.fixture(scope="module", params=["pixels", "state"])
def env(request):
    env = envs.make("reacher", obs_type=request.param)
    yield env
    env.close()


def test_state_observation_is_angles_as_cos_sin_and_velocities():
    env = envs.make("reacher", obs_type="state")
    env.reset(seed=0)
    obs, _, _, _, info = env.step(env.action_space.sample())
    q, dq = info["state"][:2], info["state"][2:]
    np.testing.assert_allclose(obs, np.concatenate([np.cos(q), np.sin(q), dq]), rtol=1e-5, atol=1e-6)
    env.close()


def test_set_state_round_trip_mid_trajectory(env):
    """Restoring a state taken mid-swing, some at the wrist's joint limit, repeats the next steps exactly (pins a
    real bug: MuJoCo's warm-started constraint solver remembered the previous step, off by ~1e-15)."""
    env.reset(seed=1)
    rng = np.random.default_rng(0)
    at_limit = 0
    for _ in range(40):
        env.step(np.concatenate([env.data_action(rng) for _ in range(5)]))
        state, limited = env.get_state(), env.physics.data.nefc > 0
        actions = [np.concatenate([env.data_action(rng) for _ in range(5)]) for _ in range(2)]
        first = [env.step(a)[4]["state"] for a in actions]
        env.set_state(state)
        np.testing.assert_array_equal(env.get_state(), state)
        np.testing.assert_array_equal([env.step(a)[4]["state"] for a in actions], first)
        at_limit += limited
    assert at_limit >= 1


def test_success_threshold_on_joint_angles(env):
    goal = env.reset(seed=2)[1]["goal_state"]
    inside = SUCCESS_TOLERANCE - 0.01
    assert env.is_success(goal + [inside, -inside, 3.0, 3.0], goal)            # velocities do not matter
    assert not env.is_success(goal + [0.0, SUCCESS_TOLERANCE + 0.01, 0.0, 0.0], goal)
    assert env.distance(goal + [0.03, 0.04, 0.0, 0.0], goal) == pytest.approx(0.05)


def test_angles_wrap_around():
    env = envs.make("reacher", obs_type="state")
    goal = np.array([np.pi - 0.02, 0.5, 0.0, 0.0])
    state = np.array([-np.pi + 0.02 + 4 * np.pi, 0.5, 0.0, 0.0])   # 0.04 rad away, two turns later
    assert env.is_success(state, goal) and env.distance(state, goal) == pytest.approx(0.04)
    assert wrap(3 * np.pi / 2) == pytest.approx(-np.pi / 2)
    env.close()


def test_frame_shows_the_arm_where_it_points():
    """The camera looks straight down on the whole reach: the finger's bright pixels sit where the arm points."""
    env = envs.make("reacher")
    env.reset(seed=0)
    frames = []
    for shoulder in (0.0, np.pi / 2, np.pi):
        env.set_state(np.array([shoulder, 0.0, 0.0, 0.0]))   # arm stretched out
        frames.append(env.render().astype(float))
    background = np.median(np.stack(frames), axis=0)
    for frame, (dx, dy) in zip(frames, [(1, 0), (0, 1), (-1, 0)]):
        rows, cols = np.nonzero(np.abs(frame - background).sum(-1) > 100)
        assert len(rows) >= 20   # a stretched arm covers a few dozen pixels at 64x64
        centre_col, centre_row = cols.mean() - 31.5, 31.5 - rows.mean()   # image y grows downwards
        assert centre_col * dx + centre_row * dy > 8 and abs(centre_col * dy - centre_row * dx) < 3
    env.close()


def test_data_policy_covers_the_configuration_space():
    env = envs.make("reacher", obs_type="state")
    rng = np.random.default_rng(0)
    shoulder, wrist, travelled = [], [], []
    for _ in range(40):
        start = env.sample_state(rng)
        env.set_state(start)
        for _ in range(250):
            env._step_physics(env.data_action(rng))
            shoulder.append(env.get_state()[0])
            wrist.append(env.get_state()[1])
        travelled.append(env.distance(env.get_state(), start))
    shoulder_bins = np.histogram(wrap(np.array(shoulder)), bins=8, range=(-np.pi, np.pi))[0]
    wrist_bins = np.histogram(wrist, bins=8, range=tuple(env.wrist_range))[0]
    assert shoulder_bins.min() > 0.04 * len(shoulder) and wrist_bins.min() > 0.04 * len(wrist)
    assert np.median(travelled) > 1.0   # rad, after 50 planner steps
    env.close()


def test_bad_state_or_option_raises_env_error(env):
    env.reset(seed=0)
    with pytest.raises(envs.EnvError, match="state"):
        env.set_state(np.array([0.0, np.inf, 0.0, 0.0]))
    with pytest.raises(envs.EnvError, match="option"):
        envs.make("reacher", options={"target": 1})


def test_coverage_statistics_and_the_data_policy_stopping_everywhere():
    env = envs.make("reacher", obs_type="state")
    lo, hi = env.wrist_range
    hand = np.array([[[0.0, 0.0, 0.0, 0.0], [0.01, 0.0, 0.4, -0.4], [3.0, hi - 0.01, 2.0, 0.0]]])
    cov = env.coverage(hand)
    assert cov["joint_cells"] == pytest.approx(2 / 256) and cov["slow_share"] == pytest.approx(2 / 3)
    assert cov["slow_joint_cells"] == pytest.approx(1 / 256)
    rng = np.random.default_rng(0)
    cov = env.coverage(np.stack([_episode(env, rng, 50)["states"] for _ in range(10)]))
    # measured 0.93 / 0.27 / 0.41 on 40 episodes; the old held-torque policy: 0.97 / 0.04 / 0.24
    assert cov["joint_cells"] > 0.5 and cov["slow_share"] > 0.12 and cov["slow_joint_cells"] > 0.1
    env.close()
