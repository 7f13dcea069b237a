import envs  # noqa: I001  (first: sets MUJOCO_GL before MuJoCo loads)

import numpy as np
import pytest

from envs.pointmaze import SUCCESS_RADIUS


@pytest.fixture(scope="module", params=["pixels", "state"])
def env(request):
    env = envs.make("pointmaze", obs_type=request.param)
    yield env
    env.close()


def test_state_observation_is_position_and_velocity():
    env = envs.make("pointmaze", obs_type="state")
    env.reset(seed=0)
    obs, _, _, _, info = env.step(env.action_space.sample())
    np.testing.assert_allclose(obs, info["state"], rtol=1e-6)
    env.close()


def test_set_state_round_trip_mid_trajectory(env):
    """Restoring a state taken while the ball slides along a wall repeats the next steps exactly (pins a real
    bug: MuJoCo's warm-started contact solver remembered the previous step, off by ~1e-19)."""
    env.reset(seed=1)
    env.set_state(np.array([-1.0, 1.0, 0.0, 0.0]))   # UMaze top corridor, just below its upper wall
    along_the_wall = np.tile([0.3, 1.0], 5)
    for _ in range(6):
        env.step(along_the_wall)
    assert env.data.ncon > 0
    state = env.get_state()
    first = [env.step(along_the_wall)[4]["state"] for _ in range(2)]
    env.set_state(state)
    np.testing.assert_array_equal(env.get_state(), state)
    np.testing.assert_array_equal([env.step(along_the_wall)[4]["state"] for _ in range(2)], first)


def test_success_radius_on_position(env):
    goal = env.reset(seed=2)[1]["goal_state"]
    assert SUCCESS_RADIUS == 0.5
    near, far = goal + [0.3, 0.35, 1.0, 0.0], goal + [0.3, 0.45, 0.0, 0.0]   # 0.46 and 0.54 away
    assert env.is_success(near, goal) and not env.is_success(far, goal)
    assert env.distance(far, goal) == pytest.approx(np.hypot(0.3, 0.45))


def test_top_down_camera_shows_the_ball_where_it_is():
    env = envs.make("pointmaze", options={"layout": "Medium"})
    env.reset(seed=0)
    cells = env.grid.shape[0]   # the 8x8 maze fills the 64x64 frame: 8 px per cell
    for xy in ([-2.5, 2.5], [1.5, -0.5], [2.5, -2.5]):
        env.set_state(np.array([*xy, 0.0, 0.0]))
        frame = env.render()
        ball = (frame[..., 0] > 150) & (frame[..., 2] < 60)   # the yellow ball (walls and floor have blue > 90)
        assert ball.sum() >= 8
        rows, cols = np.nonzero(ball)
        expected_col, expected_row = (xy[0] + cells / 2) * 64 / cells, (cells / 2 - xy[1]) * 64 / cells
        assert abs(cols.mean() - expected_col) < 1.5 and abs(rows.mean() - expected_row) < 1.5
    env.close()


@pytest.mark.parametrize("layout", ["UMaze", "Medium"])
def test_data_policy_visits_every_free_cell(layout):
    env = envs.make("pointmaze", obs_type="state", options={"layout": layout})
    rng = np.random.default_rng(0)
    visited = set()
    for _ in range(40):
        env.set_state(env.sample_state(rng))
        for _ in range(500):
            env._step_physics(env.data_action(rng))
            visited.add(env.xy_cell(env.get_state()[:2]))
    assert visited == {tuple(cell) for cell in env.free_cells}
    env.close()


def test_data_policy_stops_and_rests_all_over_the_maze():
    """Goals are states at rest anywhere in a cell: the data must hold slow motion and rest, off the cell centres."""
    env = envs.make("pointmaze", obs_type="state")
    rng = np.random.default_rng(0)
    states = []
    for _ in range(10):
        env.set_state(env.sample_state(rng))
        for _ in range(250):
            env._step_physics(env.data_action(rng))
            states.append(env.get_state())
    states = np.array(states)
    cov = env.coverage(states[None])
    assert cov["cells_visited"] == 1.0 and cov["slow_share"] > 0.1   # the policy before stops: 0.04
    slow = states[np.linalg.norm(states[:, 2:], axis=1) < 0.3]
    offsets = np.abs(slow[:, :2] - np.array([env.cell_xy(env.xy_cell(xy)) for xy in slow[:, :2]]))
    assert offsets.mean() > 0.08 and offsets.max() > 0.2     # stops spread over the cells, not at their centres
    env.close()


def test_line_blocked_knows_the_umaze_middle_wall():
    env = envs.make("pointmaze", obs_type="state")   # UMaze rows: wall / 3 free / wall + 1 free / 3 free / wall
    top_left, top_right, bottom_left = env.cell_xy((1, 1)), env.cell_xy((1, 3)), env.cell_xy((3, 1))
    assert not env.line_blocked(top_left, top_right)          # along the top corridor
    assert env.line_blocked(top_left, bottom_left)            # through the middle wall block
    assert not env.line_blocked(top_right, env.cell_xy((3, 3)))   # down the right-hand corridor
    env.close()


def test_sampled_states_lie_in_free_cells_at_rest():
    env = envs.make("pointmaze", obs_type="state", options={"layout": "Medium"})
    rng = np.random.default_rng(0)
    for _ in range(200):
        state = env.sample_state(rng)
        assert not env.grid[env.xy_cell(state[:2])] and np.array_equal(state[2:], [0.0, 0.0])
    env.close()


def test_bad_state_or_option_raises_env_error(env):
    env.reset(seed=0)
    with pytest.raises(envs.EnvError, match="state"):
        env.set_state(np.zeros(3))
    with pytest.raises(envs.EnvError, match="UMaze, Medium"):
        envs.make("pointmaze", options={"layout": "Large"})
    with pytest.raises(envs.EnvError, match="layout"):
        envs.make("pointmaze", options={"maze": "UMaze"})


def test_tasks_that_are_always_trivial_are_an_env_error_naming_the_cause():
    # a ball at rest moves far less than the success radius in 2 native steps: every trajectory task is trivial
    env = envs.make("pointmaze", obs_type="state", goal_mode="trajectory", goal_steps=2)
    env.max_task_tries = 5
    with pytest.raises(envs.EnvError, match=r"goal_mode=trajectory.*a goal 2 native steps ahead \(goal_steps\)"):
        env.reset(seed=0)
    env.close()
    # a random goal drawn for a start on top of every goal there is: the start given is named
    env = envs.make("pointmaze", obs_type="state")
    env.max_task_tries, env.is_success = 3, lambda start, goal: True
    with pytest.raises(envs.EnvError, match="goal_mode=random.*the start given"):
        env.reset(seed=0, options={"start_state": env.sample_state(np.random.default_rng(0))})
    env.close()


def test_coverage_counts_free_cells():
    env = envs.make("pointmaze", obs_type="state")   # UMaze: 7 free cells
    cells = [env.cell_xy(c) for c in env.free_cells]
    states = np.array([[[*cells[0], 0.0, 0.0], [*cells[0], 1.0, 0.0], [*cells[1], 0.1, 0.1]]])
    cov = env.coverage(states)
    assert cov["cells_visited"] == pytest.approx(2 / len(cells)) and cov["least_cell_share"] == 0.0
    assert cov["slow_share"] == pytest.approx(2 / 3)
    everywhere = np.array([[[*xy, 0.0, 0.0] for xy in cells]])
    assert env.coverage(everywhere)["cells_visited"] == 1.0 and env.coverage(everywhere)["least_cell_share"] == 1.0
    env.close()
