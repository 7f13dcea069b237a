"""The GoalEnv contract every environment keeps, for pixels and state observations. Env-specific behaviour
(physics, rendering, thresholds, data policies) is tested in test_env_<name>.py."""
import envs  # noqa: I001  (first: sets MUJOCO_GL before MuJoCo loads)

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

STATE_OBS_DIM = {"wall": 2, "pointmaze": 4, "reacher": 6, "pusht": 8}   # obs_type=state
STATE_DIM = {"wall": 2, "pointmaze": 4, "reacher": 4, "pusht": 10}      # get_state()


@pytest.fixture(scope="module", params=[(name, obs) for name in envs.ENVS for obs in ("pixels", "state")],
                ids=lambda p: "-".join(p))
def env(request):
    name, obs_type = request.param
    env = envs.make(name, obs_type=obs_type)
    yield env
    env.close()


def random_actions(env, n, seed=0):
    space = env.action_space
    return np.random.default_rng(seed).uniform(space.low, space.high, (n, *space.shape)).astype(np.float32)


def test_reset_and_step_shapes_and_dtypes(env):
    obs, info = env.reset(seed=0)
    expected = ((64, 64, 3), np.uint8) if env.cfg.obs_type == "pixels" else ((STATE_OBS_DIM[env.cfg.name],),
                                                                             np.float32)
    assert (obs.shape, obs.dtype) == expected and env.observation_space.shape == expected[0]
    assert env.action_space.shape == (10,) and env.action_space.dtype == np.float32   # action_block 5 x 2-D
    assert info["state"].shape == (STATE_DIM[env.cfg.name],) and info["state"].dtype == np.float64
    assert info["goal_obs"].shape == obs.shape and not info["success"]
    obs, reward, terminated, truncated, info = env.step(random_actions(env, 1)[0])
    assert (obs.shape, obs.dtype) == expected
    assert reward == pytest.approx(-info["distance"]) and not terminated and not truncated


def test_same_seed_same_task_and_trajectory(env):
    actions = random_actions(env, 5)
    runs = []
    for _ in range(2):
        obs, info = env.reset(seed=7)
        runs.append([obs, info["goal_state"]] + [env.step(a)[0] for a in actions])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(env.reset(seed=8)[1]["goal_state"], runs[0][1])


@pytest.mark.parametrize("name", list(envs.ENVS))
def test_a_pinned_start_without_a_goal_gets_the_data_policy_goal_from_that_start(name):
    """goal_mode=trajectory with only the start pinned: the goal is the data policy run goal_steps native steps from
    THAT start with the reset's generator (planner-in-the-loop data chains tasks this way)."""
    env = envs.make(name, obs_type="state", goal_mode="trajectory", goal_steps=25)
    start = env.sample_state(np.random.default_rng(3))
    _, info = env.reset(seed=11, options={"start_state": start})
    np.testing.assert_array_equal(info["state"], start)
    rng = np.random.default_rng(11)   # what gymnasium seeds env.np_random with
    env.set_state(start)
    for _ in range(25):
        env._step_physics(np.clip(env.data_action(rng), env.action_low, env.action_high))
    np.testing.assert_allclose(info["goal_state"], env.get_state())
    env.close()


def test_set_state_round_trip_and_goal_observation(env):
    obs, info = env.reset(seed=2)
    goal, start = info["goal_state"], info["state"]
    np.testing.assert_array_equal(info["goal_obs"], env.observe_state(goal))
    assert not np.array_equal(info["goal_obs"], obs)
    np.testing.assert_array_equal(env.get_state(), start)   # observing the goal left the env alone
    assert env.is_success(goal, goal) and not env.is_success(start, goal)
    env.set_state(goal)
    np.testing.assert_array_equal(env.get_state(), goal)
    np.testing.assert_array_equal(env.observe(), info["goal_obs"])


@pytest.mark.filterwarnings("ignore:.*Box observation space m")   # state obs are unbounded on purpose
@pytest.mark.filterwarnings("ignore:.*recommend using a symmetric and normalized space")
def test_passes_gymnasium_env_checker(env):
    check_env(env, skip_render_check=True)


def test_bad_actions_raise_one_line_env_errors(env):
    env.reset(seed=0)
    for action, needle in [(np.zeros(2), "action shape"), (np.full(10, np.nan), "NaN")]:
        with pytest.raises(envs.EnvError, match=needle) as err:
            env.step(action)
        assert "\n" not in str(err.value)


def test_hold_action_brings_the_agent_to_rest_and_keeps_it_there(env):
    """The agent's fallback when a plan is unusable: from a moving state, a few held blocks leave the agent at rest
    near where it was; hold_action itself leaves the env untouched."""
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(4):   # get moving with the data policy
        env.step(np.concatenate([env.data_action(rng) for _ in range(env.cfg.action_block)]))
    before = env.get_state()
    hold = env.hold_action()
    assert hold.shape == env.action_space.shape and hold.dtype == np.float32 and env.action_space.contains(hold)
    np.testing.assert_array_equal(env.get_state(), before)
    for _ in range(4):
        env.step(env.hold_action())
    rest = env.get_state()
    for _ in range(2):
        env.step(env.hold_action())
    position = {"wall": slice(0, 2), "pointmaze": slice(0, 2), "reacher": slice(0, 2), "pusht": slice(0, 2)}
    velocity = {"wall": slice(0, 0), "pointmaze": slice(2, 4), "reacher": slice(2, 4), "pusht": slice(5, 7)}
    name = env.cfg.name   # (Push-T's block may still finish sliding from its last push: only the agent is held)
    np.testing.assert_allclose(env.get_state()[position[name]], rest[position[name]], atol=0.5 if name == "pusht"
                               else 1e-2)
    assert np.all(np.abs(env.get_state()[velocity[name]]) < (1.0 if name == "pusht" else 0.05))


def test_batch_hold_actions_stack_the_envs_hold_actions():
    batch = envs.EnvBatch("reacher", 2)
    batch.reset([0, 1])
    holds = batch.hold_actions()
    assert holds.shape == (2, 10)
    for env, hold in zip(batch.envs, holds):
        np.testing.assert_array_equal(hold, env.hold_action())
    batch.close()


# the agent's (reacher: the fingertip's) colour, how far a pixel of it may stray from that colour (the reacher's
# arm is a lighter orange), and the tolerance in px between its drawn centroid and pixel_xy (the finger is partly
# hidden under the hand, so its visible pixels lean away from its centre)
PIXEL_XY = {"wall": ((255, 60, 30), 60, 0.5), "pointmaze": ((255, 217, 25), 60, 0.8),
            "pusht": ((65, 105, 225), 60, 0.5), "reacher": ((255, 155, 78), 15, 1.0)}


@pytest.mark.parametrize("name", list(envs.ENVS))
def test_pixel_xy_marks_the_agent_where_the_frame_draws_it(name):
    """Plan pictures place states on frames with `pixel_xy`; an env without it says so via `has_pixel_xy`."""
    env = envs.make(name)
    try:
        assert env.has_pixel_xy == (name in PIXEL_XY)
        if name not in PIXEL_XY:
            return
        env.reset(seed=0)
        color, color_tol, tol = PIXEL_XY[name]
        states = np.stack([env.sample_state(np.random.default_rng(k)) for k in range(4)])
        xy = env.pixel_xy(states)
        assert xy.shape == (4, 2)
        for s, (x, y) in zip(states, xy):
            frame = env.render_state(s).astype(int)
            ys, xs = np.nonzero((np.abs(frame - color) < color_tol).all(-1))
            assert abs(xs.mean() + 0.5 - x) < tol and abs(ys.mean() + 0.5 - y) < tol
        env.close()  # evaluate.py keeps the bound method of a closed probe env
        np.testing.assert_array_equal(env.pixel_xy(states), xy)
    finally:
        env.close()


def test_state_variables_cover_the_state_and_name_what_success_depends_on(env):
    """Every column of get_state() belongs to exactly one declared variable, and the task variables are exactly the
    ones the task distance reads: moving a task variable changes the distance, moving the others does not."""
    columns = [i for v in env.state_variables for i in v.index]
    assert sorted(columns) == list(range(STATE_DIM[env.cfg.name]))
    assert all(v.kind in envs.base.STATE_KINDS and (v.kind != "angle" or len(v.index) == 1)
               for v in env.state_variables)
    goal = env.reset(seed=3)[1]["goal_state"]
    for v in env.state_variables:
        moved = goal.copy()
        moved[list(v.index)] += 0.3
        assert (env.distance(moved, goal) > 0) == v.task, v.name
