import numpy as np
import pytest

import envs
from envs.wall import AGENT_RADIUS, SUCCESS_DISTANCE, WALL_HALF, WALL_X

LEFT_FACE, RIGHT_FACE = WALL_X - WALL_HALF - AGENT_RADIUS, WALL_X + WALL_HALF + AGENT_RADIUS   # 28, 36


@pytest.fixture(params=["pixels", "state"])
def env(request):
    return envs.make("wall", obs_type=request.param)


def test_render_state_draws_without_moving_the_point(env):
    obs, info = env.reset(seed=1)
    goal, start = info["goal_state"], env.get_state()
    frame = env.render_state(goal)
    np.testing.assert_array_equal(env.get_state(), start)
    if env.cfg.obs_type == "pixels":
        np.testing.assert_array_equal(frame, info["goal_obs"])
    env.set_state(goal)
    np.testing.assert_array_equal(env.render(), frame)


def test_success_distance():
    env = envs.make("wall")
    assert env.distance(np.array([10.0, 10.0]), np.array([13.0, 14.0])) == pytest.approx(5.0)
    assert env.is_success(np.array([10.0, 10.0]), np.array([13.0, 12.0]))       # 3.6 < 4.5
    assert not env.is_success(np.array([10.0, 10.0]), np.array([13.0, 13.5])) and SUCCESS_DISTANCE == 4.5


def test_pinned_start_and_goal_give_success_after_reaching():
    env = envs.make("wall", obs_type="state", action_block=1)
    obs, info = env.reset(seed=0, options={"start_state": [20.0, 20.0], "goal_state": [26.0, 20.0]})
    np.testing.assert_allclose(obs, [20, 20])
    assert not info["success"]
    for _ in range(2):
        _, _, _, _, info = env.step(np.array([1.0, 0.0], np.float32))
    assert info["success"] and info["state"] == pytest.approx([24.0, 20.0])


def test_wall_stops_the_point_outside_the_door():
    env = envs.make("wall", obs_type="state", action_block=1)
    env.reset(seed=0, options={"start_state": [20.0, 10.0], "goal_state": [50.0, 10.0]})
    for _ in range(20):
        obs, *_ = env.step(np.array([1.0, 0.0], np.float32))
    np.testing.assert_allclose(obs, [LEFT_FACE, 10.0])
    env.set_state(np.array([50.0, 55.0]))
    for _ in range(20):
        env.step(np.array([-1.0, 0.0], np.float32))
    np.testing.assert_allclose(env.get_state(), [RIGHT_FACE, 55.0])


def test_point_passes_through_the_door():
    env = envs.make("wall", obs_type="state", action_block=1)
    env.reset(seed=0, options={"start_state": [20.0, 32.0], "goal_state": [50.0, 32.0]})
    for _ in range(15):
        _, _, _, _, info = env.step(np.array([1.0, 0.0], np.float32))
    np.testing.assert_allclose(info["state"], [50.0, 32.0])
    assert info["success"]


def test_large_moves_do_not_tunnel_and_slide_along_the_wall():
    """The sweep, not a check of the end point, stops the move: a 50-px step would jump the 8-px band."""
    env = envs.make("wall")
    np.testing.assert_allclose(env.move(np.array([10.0, 10.0]), np.array([50.0, 0.0])), [LEFT_FACE, 10.0])
    np.testing.assert_allclose(env.move(np.array([26.0, 10.0]), np.array([4.0, 3.0])), [LEFT_FACE, 13.0])
    np.testing.assert_allclose(env.move(np.array([10.0, 32.0]), np.array([60.0, 0.0])), [62.0, 32.0])  # door, arena
    np.testing.assert_allclose(env.move(np.array([32.0, 32.0]), np.array([0.0, -20.0])), [32.0, 26.0 + 2.0])


def test_random_motion_never_enters_the_wall_or_crosses_outside_the_door():
    env = envs.make("wall", obs_type="state", action_block=1)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    door_lo, door_hi = 26.0 + AGENT_RADIUS, 38.0 - AGENT_RADIUS
    crossings = 0
    for _ in range(200):
        env.set_state(env.sample_state(rng))
        for _ in range(30):
            p = env.get_state()
            env.step(rng.uniform(-1, 1, 2).astype(np.float32))
            q = env.get_state()
            assert env.in_free_space(q) and np.all((q >= AGENT_RADIUS) & (q <= 64 - AGENT_RADIUS))
            if (p[0] - WALL_X) * (q[0] - WALL_X) < 0:
                crossings += 1
                y = p[1] + (WALL_X - p[0]) / (q[0] - p[0]) * (q[1] - p[1])
                assert door_lo <= y <= door_hi, (p, q)
    assert crossings > 0


def test_sample_state_is_in_free_space_on_both_sides():
    env = envs.make("wall")
    states = np.array([env.sample_state(np.random.default_rng(i)) for i in range(300)])
    assert all(env.in_free_space(s) for s in states)
    assert (states[:, 0] < LEFT_FACE).mean() > 0.3 and (states[:, 0] > RIGHT_FACE).mean() > 0.3


def test_data_policy_crosses_the_door_often():
    env = envs.make("wall", obs_type="state")
    rng = np.random.default_rng(0)
    crossed = 0
    for _ in range(100):
        env.set_state(env.sample_state(rng))
        side = env.get_state()[0] < WALL_X
        for _ in range(80):
            env._step_physics(np.clip(env.data_action(rng), -1, 1))
            if (env.get_state()[0] < WALL_X) != side:
                crossed += 1
                break
    assert 20 <= crossed <= 90


def test_pixels_show_wall_and_subpixel_moves():
    env = envs.make("wall", image_size=32)
    frame = env.render_state(np.array([10.0, 10.0]))
    assert frame.shape == (32, 32, 3)
    assert (frame[2, 16] > 100).all() and (frame[16, 16] == 0).all()     # wall above the door, door open
    assert frame[5, 5, 0] > 200                                          # agent
    assert not np.array_equal(frame, env.render_state(np.array([10.3, 10.0])))


def test_goal_mode_trajectory_is_reachable_by_data_policy():
    env = envs.make("wall", obs_type="state", goal_mode="trajectory", goal_steps=25)
    _, info = env.reset(seed=3)
    assert env.distance(info["state"], info["goal_state"]) <= 25 * 2 * np.sqrt(2)
    assert env.in_free_space(info["goal_state"])


def reset_wall():
    env = envs.make("wall")
    env.reset(seed=0)
    return env


@pytest.mark.parametrize("make_bad, needle", [
    (lambda: reset_wall().step(np.zeros(4, np.float32)), "(4,)"),
    (lambda: reset_wall().step(np.r_[np.nan, np.linspace(-0.123456, 0.987654, 9)].astype(np.float32)), "NaN"),
    (lambda: envs.make("wall").set_state(np.linspace(0.123456, 9.87654, 30)), "state"),
    (lambda: envs.make("hallway"), "'hallway'"),
    (lambda: envs.make("wall", image_size=8), "image_size=8"),
    (lambda: envs.make("wall", obs_type="depth"), "'depth'"),
    (lambda: envs.make("wall", options={"door": 3}), "door"),
    (lambda: envs.make("wall", options={"door_width": 2}), "door_width=2"),
    (lambda: envs.make("wall", options={"door_y": 70}), "door_y=70"),
    (lambda: envs.make("wall").set_state(np.zeros(3)), "state"),
    (lambda: envs.make("wall").step(np.zeros(10, np.float32)), "before reset"),
])
def test_user_errors_are_one_line_env_errors(make_bad, needle):
    with pytest.raises(envs.EnvError) as err:
        make_bad()
    assert needle in str(err.value) and "\n" not in str(err.value)




def test_coverage_counts_cells_and_door_crossings():
    env = envs.make("wall", obs_type="state")
    crossing = [[20.0, 32.0], [40.0, 32.0]]
    staying = [[10.0, 10.0], [11.0, 10.0]]   # one 4x4 cell
    cov = env.coverage(np.array([crossing, staying]))
    assert cov["crossing_share"] == 0.5 and cov["cells_visited"] == pytest.approx(3 / 256)
    assert not env.hold_action().any()
