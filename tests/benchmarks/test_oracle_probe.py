"""benchmarks/oracle_probe.py: the oracle (the data policy's own actions) replays onto its goal exactly, and the
summary's columns are the medians and shares of hand-made rows."""
import numpy as np
import pytest

import envs
from benchmarks import oracle_probe
from conftest import save_tiny_checkpoint


@pytest.mark.parametrize("name", ["wall", "pointmaze"])
def test_the_data_policys_actions_reach_the_goal_they_drew(name):
    env = envs.make(name, obs_type="state")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    start, goal, native = oracle_probe.draw_task(env, rng, native_steps=4 * env.cfg.action_block)
    assert native.shape == (4 * env.cfg.action_block, env.action_dim) and env.distance(start, goal) > 0
    hit, final, states = oracle_probe.execute(env, start, goal, native.reshape(4, -1))
    assert hit and final == pytest.approx(0.0, abs=1e-9)
    assert states.shape == (5, len(start)) and np.array_equal(states[0], start) and np.array_equal(states[-1], goal)
    still = np.zeros((4, env.cfg.action_block * env.action_dim), dtype=np.float32)
    if name == "wall":   # zero moves hold the agent where it starts
        assert oracle_probe.execute(env, start, goal, still)[1] == pytest.approx(env.distance(start, goal))
    env.close()


def test_last_window_pads_with_the_first_state_like_the_agents_first_window():
    states = np.arange(6.0).reshape(3, 2)                          # start, after block 1, after block 2
    assert np.array_equal(oracle_probe.last_window(states, 1), states[2:])
    assert np.array_equal(oracle_probe.last_window(states, 2), states[1:])
    assert np.array_equal(oracle_probe.last_window(states[:1], 3), np.repeat(states[:1], 3, axis=0))
    assert np.array_equal(oracle_probe.last_window(states[:2], 3), states[[0, 0, 1]])


def test_oracle_realised_error_is_zero_for_a_one_frame_model(tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "wall.pt", "state")
    result = oracle_probe.probe("wall", str(checkpoint), "gd", tasks=2, seed=0,
                                overrides=("env.obs_type=state", "planner.iters=2"))
    for row in result["rows"]:
        assert row["oracle"][0] and row["oracle_realised"] == 0.0 and row["start"] > 0
        assert row["realised_err"] >= 0 and np.isfinite(row["plan_err"])


def test_realised_errors_encode_the_last_k_states_not_the_final_one_repeated(tmp_path):
    """With k = 2 the oracle's real window is (state after block H-1, goal), which differs from the goal latent
    (the goal repeated) wherever the agent moved in the last block; repeating the final state would give 0."""
    checkpoint = save_tiny_checkpoint(tmp_path / "wall.pt", "state", history=2)
    result = oracle_probe.probe("wall", str(checkpoint), "gd", tasks=2, seed=0,
                                overrides=("env.obs_type=state", "planner.iters=2"))
    assert all(row["oracle"][0] and row["oracle_realised"] > 0 for row in result["rows"])


def test_summary_reports_relative_medians_and_shares():
    rows = [{"start": 2.0, "oracle_err": 0.2, "oracle_realised": 0.0, "plan_err": 0.4, "realised_err": 1.0,
             "oracle": (True, 0.0), "plan": (False, 3.0)},
            {"start": 4.0, "oracle_err": 0.8, "oracle_realised": 0.4, "plan_err": 0.4, "realised_err": 1.2,
             "oracle": (True, 0.0), "plan": (True, 1.0)}]
    row = oracle_probe.summary("wall", "grasp", {"rows": rows, "horizon": 3})
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["wall", "grasp", "2", "3", "0.15", "0.05", "0.15", "0.40", "0.50", "1.00", "0.50", "2"]


def test_planner_overrides_reach_the_config_loader_and_a_bad_key_is_one_line(capsys):
    with pytest.raises(SystemExit, match="unknown config key 'planner.sigmaa'"):
        oracle_probe.main(["env=wall", "planner.sigmaa=0", "tasks=1"])
    with pytest.raises(SystemExit, match="bad argument 'horizon=3'"):
        oracle_probe.main(["env=wall", "horizon=3"])


def test_env_overrides_are_checked_too():
    with pytest.raises(SystemExit, match="env.obs_typ"):
        oracle_probe.main(["env=wall", "env.obs_typ=pixels", "tasks=1"])


def test_a_rows_planner_names_every_setting_not_the_planner_files_own():
    import configs
    label = lambda *argv: oracle_probe.planner_label(configs.load_config("evaluate", list(argv)).planner)  # noqa: E731
    assert label("env=wall") == "grasp"
    assert label("env=pusht") == "grasp sync_steps=30 lr_sync=0.1"  # pusht's planner_settings
    assert label("env=reacher", "planner.gamma=0.1") == "grasp"  # the command line undoes reacher's
    assert label("env=wall", "planner=cem", "planner.samples=10") == "cem samples=10"
