import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import evaluate
from agent.logging import EvalLogger
from configs import main
from conftest import save_tiny_checkpoint
from envs import env_config
from envs.data import collect
from worldmodels import provenance

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


def test_git_commit_is_taken_when_the_run_starts(checkpoints, tmp_path, monkeypatch):
    # the tree changes while the run goes (e.g. a file is edited, then committed): the record keeps the start's
    answers = iter(["aaa", "bbb (with uncommitted changes)"])
    monkeypatch.setattr(evaluate.provenance, "git_commit", lambda: next(answers, "ccc"))
    assert evaluate_in_process([f"checkpoint={checkpoints['pixels']}", f"logdir={tmp_path / 'run'}", *FAST]) == 0
    assert results_of(tmp_path / "run")["git_commit"] == "aaa"


def test_results_json_schema_and_event_file(checkpoints, tmp_path, capsys):
    logdir = tmp_path / "run"
    assert evaluate_in_process([f"checkpoint={checkpoints['pixels']}", f"logdir={logdir}", *FAST]) == 0
    res = results_of(logdir)
    assert {"env", "planner", "checkpoint", "seed", "episodes", "success_rate", "successes", "success_final_rate",
            "excluded_trivial", "median_time_to_success_s", "mean_plan_time_s", "per_episode", "config",
            "versions", "git_commit", "checkpoint_sha256"} <= set(res)
    assert res["checkpoint_sha256"] == provenance.file_sha256(checkpoints["pixels"])
    assert (res["env"], res["planner"], res["episodes"], res["seed"]) == ("wall", "grasp", 3, 0)
    counted = [e for e in res["per_episode"] if not e["trivial"]]
    assert len(res["per_episode"]) == 3 and res["success_rate"] == res["successes"] / len(counted)
    assert res["successes"] == sum(e["success"] for e in counted) and res["excluded_trivial"] == 3 - len(counted)
    for e in res["per_episode"]:
        assert {"success", "steps", "final_distance", "plan_time_s"} <= set(e) and 1 <= e["steps"] <= 3
        assert e["final_distance"] == e["distances"][-1] and len(e["distances"]) == e["steps"] + 1
    assert res["config"]["mpc"]["horizon"] == 4 and res["config"]["logdir"] == str(logdir)
    assert set(res["versions"]) >= {"python", "torch", "numpy", "torch_cpu_capability"}
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


def test_episodes_are_on_disk_while_the_run_goes(checkpoints, tmp_path, monkeypatch):
    """evaluate.py used to write TensorBoard only after the last episode: nothing to watch during a run. Each
    episode's curve, GIF and plan picture must be readable from the event file as soon as it ends, under its
    global episode index, and the run's eval/ numbers must be there at the end."""
    logdir, seen = tmp_path / "live", []
    log_episode = EvalLogger.episode

    def checked(self, index, ep):
        log_episode(self, index, ep)
        acc = EventAccumulator(str(logdir), size_guidance={"images": 0, "scalars": 0}).Reload()
        seen.append(index)
        assert {f"trajectory/{i:04d}/distance" for i in seen} <= set(acc.Tags()["scalars"])
        if index == 0:  # the recorded episode
            assert {"trajectory/0000/video", "plan/picture/0000"} <= set(acc.Tags()["images"])
            picture = Image.open(io.BytesIO(acc.Images("plan/picture/0000")[0].encoded_image_string))
            assert picture.height == 64 * 4 + 22  # 64-px frames at 4x above the legend
        assert "eval/mean_steps" not in acc.Tags()["scalars"]  # the run's numbers come at the end

    monkeypatch.setattr(EvalLogger, "episode", checked)
    assert evaluate_in_process([f"checkpoint={checkpoints['pixels']}", f"logdir={logdir}", *FAST]) == 0
    assert sorted(seen) == [0, 1, 2]
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0}).Reload()
    assert {f"eval/{k}" for k in ("success_rate", "mean_plan_time_s", "mean_steps")} <= set(acc.Tags()["scalars"])


def interrupted_after(n: int, monkeypatch):
    """Makes the n-th logged episode raise KeyboardInterrupt, as Ctrl-C at that moment would."""
    calls, log_episode = [], EvalLogger.episode

    def episode(self, index, ep):
        calls.append(index)
        if len(calls) == n:
            raise KeyboardInterrupt
        log_episode(self, index, ep)
    monkeypatch.setattr(EvalLogger, "episode", episode)


def test_ctrl_c_keeps_finished_episodes_and_resume_ends_as_an_uninterrupted_run(checkpoints, tmp_path, monkeypatch,
                                                                                capsys):
    model = tmp_path / "model.pt"
    shutil.copyfile(checkpoints["state"], model)
    argv = [f"checkpoint={model}", "env.obs_type=state", "log_videos=0", *FAST, "episodes=5"]
    assert evaluate_in_process([*argv, f"logdir={tmp_path / 'whole'}"]) == 0
    whole = results_of(tmp_path / "whole")
    logdir = tmp_path / "cut"
    with monkeypatch.context() as patch:
        interrupted_after(4, patch)  # chunk 0 (episodes 0, 1) finished, chunk 1 (2, 3) cut after one episode
        assert evaluate_in_process([*argv, f"logdir={logdir}"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("interrupted after 3 of 5 episodes") and "resume=true" in err[-1]
    partial = results_of(logdir)
    assert partial["complete"] is False and [c["chunk"] for c in partial["finished_chunks"]] == [0]
    assert len(partial["per_episode"]) == partial["episodes"] == 3
    assert strip_timings(partial["per_episode"]) == strip_timings(whole["per_episode"])[:3]

    assert evaluate_in_process([*argv, f"logdir={logdir}"]) == 2  # not without resume=true
    assert "resume=true" in capsys.readouterr().err
    assert evaluate_in_process([*argv, f"logdir={logdir}", "resume=true", "seed=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "seed=3" in err[0]
    save_tiny_checkpoint(model, "state", tmp_path / "other-data")  # another model retrained to the same path
    assert evaluate_in_process([*argv, f"logdir={logdir}", "resume=true"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has changed since the interrupted run" in err[0]
    shutil.copyfile(checkpoints["state"], model)
    assert evaluate_in_process([*argv, f"logdir={logdir}", "resume=true", "threads=2"]) == 0
    resumed = results_of(logdir)
    assert resumed["complete"] is True and "finished_chunks" not in resumed
    assert strip_timings({k: v for k, v in resumed.items() if k != "config"}) == \
        strip_timings({k: v for k, v in whole.items() if k != "config"})
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0}).Reload()
    assert {f"trajectory/{i:04d}/distance" for i in range(5)} <= set(acc.Tags()["scalars"])
    assert [len(acc.Scalars(f"trajectory/{i:04d}/distance")) for i in range(5)] == \
        [len(e["distances"]) for e in whole["per_episode"]]  # each episode logged once across the two runs
    assert evaluate_in_process([*argv, f"logdir={logdir}", "resume=true"]) == 2  # finished now


@pytest.mark.slow
def test_sigint_writes_partial_results_and_exits_130(checkpoints, tmp_path):
    """Ctrl-C used to print a 54-line traceback and leave nothing. Now: one line, exit 130, a partial
    results.json (complete: false) that `resume=true` finishes with an uninterrupted run's per-episode results."""
    argv = [f"checkpoint={checkpoints['state']}", "env.obs_type=state", "log_videos=0", *FAST, "episodes=12",
            "mpc.budget=6", "planner.iters=30", "planner.iters_warm=15"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    logdir = tmp_path / "cut"
    # a launcher that ignores SIGINT (a backgrounded CI script) passes that on, and Python then never raises
    # KeyboardInterrupt: give the run the default disposition a terminal's Ctrl-C meets
    proc = subprocess.Popen([sys.executable, "evaluate.py", *argv, f"logdir={logdir}"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    err_chunks = []  # the progress bar: its `episodes=1/12` comes once an episode is in the results
    reader = threading.Thread(target=lambda: err_chunks.extend(iter(lambda: proc.stderr.read(1), "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while "episodes=" not in "".join(err_chunks):
        assert proc.poll() is None and time.monotonic() < deadline, "no episode finished"
        time.sleep(0.05)
    assert "trajectory/0000/distance" in EventAccumulator(str(logdir)).Reload().Tags()["scalars"]  # flushed
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    reader.join(timeout=10)
    err = "".join(err_chunks)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted after ") and "Traceback" not in err
    partial = results_of(logdir)
    assert partial["complete"] is False and 0 < len(partial["per_episode"]) < 12
    done = subprocess.run([sys.executable, "evaluate.py", *argv, f"logdir={logdir}", "resume=true"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert evaluate_in_process([*argv, f"logdir={tmp_path / 'whole'}"]) == 0
    assert strip_timings(results_of(logdir)["per_episode"]) == strip_timings(results_of(tmp_path / "whole")[
        "per_episode"])
