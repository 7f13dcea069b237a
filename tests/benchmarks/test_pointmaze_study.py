"""benchmarks/pointmaze_study.py: its probe controllers do reach the goals they are meant to (the known answer the
study's model-vs-search reading rests on), and it refuses results of another env."""
import json

import numpy as np
import pytest

import envs
from benchmarks import pointmaze_study
from benchmarks.oracle_probe import last_window


@pytest.fixture
def env():
    env = envs.make("pointmaze", obs_type="state")
    yield env
    env.close()


def test_stopping_pd_stops_on_the_goal_within_one_horizon(env):
    goal = np.array([*env.cell_xy((1, 1)), 0.0, 0.0]) + np.array([0.1, -0.15, 0.0, 0.0])
    env.set_state(goal + np.array([0.6, 0.0, 0.0, 0.0]))
    native, visited = pointmaze_study.pd_actions(env, goal[:2], [], steps=25 * env.cfg.action_block)
    assert native.shape == (125, 2) and env.distance(env.get_state(), goal) < 0.1
    assert visited.shape == (125, 4) and np.array_equal(visited[-1], env.get_state())
    assert np.linalg.norm(env.get_state()[2:]) < 0.1


def test_route_pd_goes_round_the_wall_that_blocks_the_straight_line(env):
    start, goal = np.array([*env.cell_xy((1, 1)), 0.0, 0.0]), np.array([*env.cell_xy((3, 1)), 0.0, 0.0])
    assert env.line_blocked(start[:2], goal[:2])
    route = [env.cell_xy(c) for c in env._path((1, 1), (3, 1))[:-1]]
    env.set_state(start)
    pointmaze_study.pd_actions(env, goal[:2], route, steps=60 * env.cfg.action_block)
    assert env.distance(env.get_state(), goal) < 0.5


def test_results_of_another_env_are_refused(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"env": "wall"}))
    with pytest.raises(SystemExit, match="'wall'.*pointmaze"):
        pointmaze_study.main([f"results={path}"])
    with pytest.raises(SystemExit, match="results=''"):
        pointmaze_study.main([])


def test_the_landscape_table_measures_distance_by_route_length(env):
    """Known answer: a latent that is the ball's xy puts UMaze's neighbouring cells 1 apart, and the two ends of
    the U (a 6-cell route round the wall) 2 apart."""
    class XY:
        latent_dim, history = 2, 1

        def encode(self, windows, states=None):
            return windows[:, -1, :2]

    rows = pointmaze_study.landscape(env, XY()).splitlines()
    assert rows[0].startswith("| route length (cells) | pairs | mean planner latent distance |")
    assert "| 1 | 6 | 1.00 |" in rows and "| 6 | 1 | 2.00 |" in rows
    assert sum(int(r.split("|")[2]) for r in rows[2:]) == 7 * 6 // 2


def test_results_whose_checkpoint_has_changed_since_are_refused(tmp_path):
    """A results.json names its checkpoint and its sha256; a shipped file replaced since would silently be another
    model, so the study asks for checkpoint=PATH instead."""
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"not the model that was evaluated")
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"env": "pointmaze", "checkpoint": str(checkpoint), "checkpoint_sha256": "0" * 64}))
    with pytest.raises(SystemExit, match="has changed since that run.*checkpoint=PATH"):
        pointmaze_study.main([f"results={path}"])


def test_a_pixel_model_sees_the_frames_of_the_states_windows():
    """A 2-frame pixel model gets (N, 2, S, S, 3) windows of the env's frames of those states, oldest first, and a
    state at rest is one frame repeated, as the agent's window at reset."""
    env = envs.make("pointmaze", obs_type="pixels")
    seen = []

    class Frames:
        history = 2

        def encode(self, windows, states=None):
            seen.append(windows.numpy())
            return windows.flatten(1).float()

    a, b = np.array([*env.cell_xy((1, 1)), 0.0, 0.0]), np.array([*env.cell_xy((1, 3)), 0.0, 0.0])
    pointmaze_study.encode_states(env, Frames(), np.stack([last_window(a[None], 2), np.stack([a, b])]))
    frames = seen[0]
    assert frames.shape == (2, 2, 64, 64, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames[0, 0], env.observe_state(a)) and np.array_equal(frames[0, 1], frames[0, 0])
    assert np.array_equal(frames[1, 0], frames[0, 0]) and np.array_equal(frames[1, 1], env.observe_state(b))
    assert not np.array_equal(frames[1, 0], frames[1, 1])
    env.close()


def test_the_real_end_window_holds_the_last_planner_steps_oldest_first():
    visited = np.arange(20.0)[:, None].repeat(4, axis=1)          # state i after native step i + 1
    block = 5
    assert last_window(visited[block - 1::block], 2)[:, 0].tolist() == [14.0, 19.0]
    assert last_window(visited[block - 1::block], 1)[:, 0].tolist() == [19.0]
