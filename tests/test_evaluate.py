import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import evaluate
from configs import main
from conftest import save_tiny_checkpoint
from envs import env_config
from envs.data import collect

REPO = Path(__file__).resolve().parents[1]
FAST = ["episodes=3", "batch=2", "log_videos=1", "mpc.horizon=4", "mpc.budget=3", "planner.iters=8",
        "planner.iters_warm=4", "planner.sync_every=4"]
TIMING = ("median_time_to_success_s", "mean_plan_time_s", "plan_time_s", "time_to_success_s")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Untrained tiny wall models (random predictor output layer, so plans move) saved as checkpoints: pixels
    (the default obs type; its meta points to a tiny collected dataset for plan pictures) and state."""
    out = tmp_path_factory.mktemp("ckpt")
    data = collect(env_config("wall"), out / "data", episodes=2, episode_len=4, seed=0)
    return {obs_type: save_tiny_checkpoint(out / f"wall-{obs_type}.pt", obs_type, data) for obs_type in ("pixels",
                                                                                                   "state")}


def evaluate_in_process(argv, capsys=None) -> int:
    return main(evaluate.run, "evaluate", argv, user_errors=evaluate.USER_ERRORS)


def results_of(logdir: Path) -> dict:
    return json.loads((logdir / "results.json").read_text())


def test_results_json_schema_and_event_file(checkpoints, tmp_path, capsys):
    logdir = tmp_path / "run"
    assert evaluate_in_process([f"checkpoint={checkpoints['pixels']}", f"logdir={logdir}", *FAST]) == 0
    res = results_of(logdir)
    assert {"env", "planner", "checkpoint", "seed", "episodes", "success_rate", "successes", "success_final_rate",
            "excluded_trivial", "median_time_to_success_s", "mean_plan_time_s", "per_episode", "config",
            "versions", "git_commit"} <= set(res)
    assert (res["env"], res["planner"], res["episodes"], res["seed"]) == ("wall", "grasp", 3, 0)
    counted = [e for e in res["per_episode"] if not e["trivial"]]
    assert len(res["per_episode"]) == 3 and res["success_rate"] == res["successes"] / len(counted)
    assert res["successes"] == sum(e["success"] for e in counted) and res["excluded_trivial"] == 3 - len(counted)
    for e in res["per_episode"]:
        assert {"success", "steps", "final_distance", "plan_time_s"} <= set(e) and 1 <= e["steps"] <= 3
        assert e["final_distance"] == e["distances"][-1] and len(e["distances"]) == e["steps"] + 1
    assert res["config"]["mpc"]["horizon"] == 4 and res["config"]["logdir"] == str(logdir)
    assert set(res["versions"]) >= {"python", "torch", "numpy"}
    assert not list(logdir.glob("*.tmp"))
    out = capsys.readouterr().out
    assert f"tensorboard --logdir {logdir}" in out and "success" in out
    acc = EventAccumulator(str(logdir), size_guidance={"images": 0, "scalars": 0}).Reload()
    assert {"eval/success_rate", "perf/plan_time_s", "plan/cold/dyn_loss", "plan/warm/dyn_loss",
            "trajectory/0000/distance"} <= set(acc.Tags()["scalars"])
    assert {"trajectory/0000/video", "plan/picture/0000"} <= set(acc.Tags()["images"])


def test_plan_pictures_without_the_training_data_use_a_fresh_reference_set(tmp_path):
    """A shipped checkpoint on a new machine has no dataset beside it: plan pictures must still be drawn."""
    ckpt = save_tiny_checkpoint(tmp_path / "wall.pt", "pixels", data=tmp_path / "not-here")
    logdir = tmp_path / "run"
    assert evaluate_in_process([f"checkpoint={ckpt}", f"logdir={logdir}", *FAST]) == 0
    acc = EventAccumulator(str(logdir), size_guidance={"images": 0}).Reload()
    assert "plan/picture/0000" in acc.Tags()["images"]


def strip_timings(x):
    if isinstance(x, dict):
        return {k: strip_timings(v) for k, v in x.items() if k not in TIMING and k != "logdir"}
    if isinstance(x, list):
        return [strip_timings(v) for v in x]
    return x


def test_same_seed_and_config_give_identical_results(checkpoints, tmp_path):
    runs = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        argv = [f"checkpoint={checkpoints['state']}", "env.obs_type=state", f"seed={seed}",
                f"logdir={tmp_path / name}", "log_videos=0", *FAST]
        assert evaluate_in_process(argv) == 0
        runs.append(strip_timings(results_of(tmp_path / name)))
    assert runs[0] == runs[1]
    assert runs[0]["per_episode"] != runs[2]["per_episode"]  # the seed matters


def test_cli_end_to_end_on_a_tiny_checkpoint(checkpoints, tmp_path):
    logdir = tmp_path / "cli"
    proc = subprocess.run([sys.executable, "evaluate.py", f"checkpoint={checkpoints['pixels']}",
                           f"logdir={logdir}", *FAST], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert results_of(logdir)["episodes"] == 3 and "tensorboard --logdir" in proc.stdout


@pytest.mark.parametrize("make_argv, words", [
    (lambda c, d: ["env=nope"], ["unknown env 'nope'", "wall"]),
    (lambda c, d: ["planner=nope"], ["unknown planner 'nope'", "grasp"]),
    (lambda c, d: [f"checkpoint={d / 'missing.pt'}"], ["missing.pt"]),
    (lambda c, d: [f"checkpoint={corrupt(d)}"], ["corrupt.pt"]),
    (lambda c, d: [f"checkpoint={c['state']}"], ["obs_type"]),
    (lambda c, d: [f"checkpoint={c['pixels']}", "env=pointmaze"], ["wall"]),
    (lambda c, d: [f"checkpoint={c['pixels']}", "env.action_block=2"], ["action_block"]),
    (lambda c, d: [f"checkpoint={c['pixels']}", "env.options.door_y=12.0"], ["env.options.door_y=32.0"]),
    (lambda c, d: [f"checkpoint={c['pixels']}", "mpc.horizon=0"], ["mpc.horizon=0"]),
    (lambda c, d: [f"checkpoint={c['pixels']}", "mpc.budget=-1"], ["mpc.budget=-1"]),
    (lambda c, d: [f"checkpoint={c['pixels']}", "episodes=0"], ["episodes=0"]),
    (lambda c, d: [f"checkpoint={c['pixels']}", "threads=0"], ["threads=0"]),
    (lambda c, d: [f"checkpoint={c['pixels']}", "planner.iters=-5"], ["planner.iters=-5"]),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(checkpoints, tmp_path, capsys, make_argv, words):
    logdir = tmp_path / "never"
    assert evaluate_in_process([*make_argv(checkpoints, tmp_path), f"logdir={logdir}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    for word in words:
        assert word in err[0]
    assert not logdir.exists()


def corrupt(d: Path) -> Path:
    path = d / "corrupt.pt"
    path.write_bytes(b"not a checkpoint at all")
    return path


def test_a_finished_logdir_is_not_overwritten(checkpoints, tmp_path, capsys):
    logdir = tmp_path / "done"
    logdir.mkdir()
    (logdir / "results.json").write_text("{}")
    assert evaluate_in_process([f"checkpoint={checkpoints['pixels']}", f"logdir={logdir}", *FAST]) == 2
    assert "already holds" in capsys.readouterr().err and (logdir / "results.json").read_text() == "{}"
