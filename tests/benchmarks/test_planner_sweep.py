"""benchmarks/planner_sweep.py on a tiny untrained wall model: outputs, resume, variants, errors, torchrun sharding."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from benchmarks import planner_sweep as bench
from conftest import save_tiny_checkpoint

REPO = Path(__file__).resolve().parents[2]

TINY = ["planners=[grasp,cem]", "horizons=[2,3]", "episodes=4", "batch=2"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "wall.pt")


def timeless(x):
    """Results without wall-clock values (and the launch command)."""
    if isinstance(x, dict):
        return {k: timeless(v) for k, v in x.items()
                if not k.endswith("_s") and k not in ("sec_per_iter", "command", "processes", "config")}
    if isinstance(x, list):
        return [timeless(v) for v in x]
    return x


def cells(logdir: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((logdir / "cells").glob("*.json"))}


def test_tiny_sweep_writes_results_and_a_rerun_skips_finished_cells(checkpoint, tmp_path, capsys):
    logdir = tmp_path / "run"
    argv = [f"checkpoint={checkpoint}", f"logdir={logdir}", *TINY]
    assert bench.main(argv) == 0
    res = json.loads((logdir / "results.json").read_text())
    assert [(r["planner"], r["horizon"]) for r in res["rows"]] == [("grasp", 2), ("cem", 2), ("grasp", 3), ("cem", 3)]
    for r in res["rows"]:
        assert r["mode"] == "open_loop" and r["episodes"] == 4 and r["excluded_trivial"] == 0
        assert r["success_rate"] == r["successes"] / 4 and r["plan_calls"] == 2  # one plan per batch of 2
        lo, hi = r["success_ci95"]
        assert 0 <= lo <= r["success_rate"] <= hi <= 1
        assert (r["iters"], r["iters_warm"]) == ((300, 100) if r["planner"] == "grasp" else (30, 30))
        assert r["mean_plan_time_s"] > 0 and (r["median_time_to_success_s"] is None) == (r["successes"] == 0)
    per_episode = cells(logdir)["grasp-H3-open_loop"]["per_episode"]
    assert [e["index"] for e in per_episode] == [0, 1, 2, 3] and all(e["steps"] == 3 for e in per_episode)
    assert res["git_commit"] and res["command"].startswith("python -m benchmarks.planner_sweep checkpoint=")
    md = (logdir / "results.md").read_text()
    assert "| H | grasp | cem |" in md and res["command"] in md and res["git_commit"] in md
    first = next(r for r in res["rows"] if r["planner"] == "grasp" and r["horizon"] == 2)
    assert f"| 2 | {100 * first['success_rate']:.1f} / " in md
    assert (logdir / "results.png").stat().st_size > 1000
    acc = EventAccumulator(str(logdir / "tb" / "cem-H3-open_loop")).Reload()
    assert {"eval/success_rate", "perf/plan_time_s", "plan/cold/best_cost"} <= set(acc.Tags()["scalars"])
    start = plugin_data_pb2.HParamsPluginData.FromString(
        acc.SummaryMetadata("_hparams_/session_start_info").plugin_data.content).session_start_info
    assert start.hparams["planner"].string_value == "cem" and start.hparams["horizon"].number_value == 3

    capsys.readouterr()
    before = {p.name: p.stat().st_mtime_ns for p in (logdir / "cells").iterdir()}
    (logdir / "cells" / "cem-H3-open_loop.json").unlink()
    assert bench.main(argv) == 0
    assert "3 of 4 cells done" in capsys.readouterr().out
    after = {p.name: p.stat().st_mtime_ns for p in (logdir / "cells").iterdir()}
    assert {k for k in before if before[k] != after[k]} == {"cem-H3-open_loop.json"}
    assert timeless(json.loads((logdir / "results.json").read_text())) == timeless(res)  # same tasks, same plans


def test_changed_settings_in_a_used_logdir_are_refused(checkpoint, tmp_path, capsys):
    logdir = tmp_path / "run"
    argv = [f"checkpoint={checkpoint}", f"logdir={logdir}", "planners=[cem]", "horizons=[2]", "episodes=2",
            "batch=2"]
    assert bench.main(argv) == 0
    capsys.readouterr()
    assert bench.main([*argv[:-1], "batch=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cem-H2-open_loop.json was made with other settings" in err[0]


def test_mpc_mode_equal_time_and_a_variant(checkpoint, tmp_path):
    logdir = tmp_path / "mpc"
    argv = [f"checkpoint={checkpoint}", f"logdir={logdir}", "mode=mpc", "budget=equal_time", "time_per_plan=0.02",
            "planners=[grasp_nosync,gd]", "horizons=[2]", "episodes=2", "batch=2", "mpc.budget_factor=3"]
    assert bench.main(argv) == 0
    got = cells(logdir)
    nosync, gd = got["grasp_nosync-H2-mpc"], got["gd-H2-mpc"]
    assert nosync["key"]["planner"]["sync"] == "none" and nosync["key"]["planner"]["name"] == "grasp"
    assert nosync["key"]["mpc"]["budget"] == 6 and nosync["key"]["mpc"]["stop_on_success"]
    budgets = json.loads((logdir / "budgets.json").read_text())["entries"]
    for name, cell in (("grasp_nosync", nosync), ("gd", gd)):
        b = budgets[f"{name}-H2"]
        assert b["iters"] == b["iters_warm"] == cell["row"]["iters"] == max(1, int(0.02 / b["sec_per_iter"]))
        for e in cell["per_episode"]:
            assert 1 <= e["steps"] <= 6 and e["iters"] == b["iters"] * e["control_steps"]
            assert e["success"] == (e["steps"] < 6 or e["success_final"])
    assert "equal time: 0.02 s per plan call" in (logdir / "results.md").read_text()


@pytest.mark.parametrize("arg, words", [
    ("planners=[grasp,nope]", ["unknown planner 'nope'", "grasp_nosync"]),
    ("mode=closed", ["mode='closed'", "open_loop, mpc"]),
    ("budget=equal", ["budget='equal'", "equal_time"]),
    ("horizons=[0]", ["horizons=[0]"]),
    ("variants.grasp_nosync.sync=nope", ["sync='nope'"]),
])
def test_bad_input_is_one_line_and_exit_2(checkpoint, tmp_path, capsys, arg, words):
    argv = [f"checkpoint={checkpoint}", f"logdir={tmp_path / 'never'}", *TINY,
            "planners=[grasp_nosync]" if arg.startswith("variants") else "episodes=2", arg]
    assert bench.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and all(w in err[0] for w in words), err
    assert not (tmp_path / "never").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_merge_into_the_single_process_results(checkpoint, tmp_path):
    args = [f"checkpoint={checkpoint}", *TINY]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "benchmarks.planner_sweep", f"logdir={tmp_path / 'one'}", *args],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          f"--master_port={free_port()}", "-m", "benchmarks.planner_sweep", f"logdir={tmp_path / 'two'}",
                          *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr
    one_res, two_res = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("one", "two"))
    assert two_res["processes"] == 2 and two_res["command"].startswith("torchrun --nproc_per_node=2 -m benchmarks.planner_sweep ")
    assert timeless(two_res) == timeless(one_res)
    assert timeless(cells(tmp_path / "two")) == timeless(cells(tmp_path / "one"))
