"""benchmarks/planner_sweep.py on a tiny untrained wall model: outputs, resume, variants, errors, torchrun sharding."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

import configs
from agent.evaluation import wilson
from agent.mpc import PlanRecord
from benchmarks import planner_sweep as bench
from conftest import save_tiny_checkpoint
from worldmodels import provenance

REPO = Path(__file__).resolve().parents[2]

TINY = ["planners=[grasp,cem]", "horizons=[2,3]", "episodes=4", "batch=2"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "wall.pt")


def timeless(x):
    """Results without wall-clock values, the launch command and the machine's state."""
    if isinstance(x, dict):
        return {k: timeless(v) for k, v in x.items() if not k.endswith("_s") and k not in
                ("sec_per_iter", "command", "processes", "config", "machine", "load_1min")}
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
        assert r["success_ci95"] == wilson(r["successes"], 4)
        assert (r["iters"], r["iters_warm"]) == ((300, 100) if r["planner"] == "grasp" else (30, 30))
        assert r["mean_plan_time_s"] > 0 and (r["median_time_to_success_s"] is None) == (r["successes"] == 0)
        assert r["median_cold_plan_cost"] >= 0
    per_episode = cells(logdir)["grasp-H3-open_loop"]["per_episode"]
    assert [e["index"] for e in per_episode] == [0, 1, 2, 3] and all(e["steps"] == 3 for e in per_episode)
    assert res["git_commit"] and res["command"].startswith("python -m benchmarks.planner_sweep checkpoint=")
    md = (logdir / "results.md").read_text()
    assert "## Cold plans in the model" in md
    assert "| H | grasp | cem |" in md and res["command"] in md and res["git_commit"] in md
    first = next(r for r in res["rows"] if r["planner"] == "grasp" and r["horizon"] == 2)
    assert f"| 2 | {100 * first['success_rate']:.1f} / " in md
    cem = next(r for r in res["rows"] if r["planner"] == "cem" and r["horizon"] == 2)
    assert f"| 2 | {first['median_cold_plan_cost']:.3g} | {cem['median_cold_plan_cost']:.3g} |" in md
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


def test_cells_record_the_commit_the_sweep_started_at(checkpoint, tmp_path, monkeypatch):
    # the tree changes while cells run (a file edited, then committed), and the sweep is resumed at a later commit:
    # each cell keeps the commit its run started at, and results.json lists both
    logdir = tmp_path / "run"
    argv = [f"checkpoint={checkpoint}", f"logdir={logdir}", "planners=[cem]", "horizons=[2,3]", "episodes=2",
            "batch=2"]
    answers = iter(["aaa", "bbb (with uncommitted changes)"])
    monkeypatch.setattr(bench.provenance, "git_commit", lambda: next(answers, "ccc"))
    assert bench.main(argv) == 0
    assert {c["row"]["git_commit"] for c in cells(logdir).values()} == {"aaa"}
    assert json.loads((logdir / "results.json").read_text())["git_commit"] == "aaa"
    (logdir / "cells" / "cem-H3-open_loop.json").unlink()
    answers = iter(["ddd"])
    assert bench.main(argv) == 0
    assert {k: c["row"]["git_commit"] for k, c in cells(logdir).items()} == {"cem-H2-open_loop": "aaa",
                                                                           "cem-H3-open_loop": "ddd"}
    assert json.loads((logdir / "results.json").read_text())["git_commit"] == "aaa, ddd"
    assert "Git commit: `aaa, ddd`" in (logdir / "results.md").read_text()


def test_changed_settings_in_a_used_logdir_are_refused(checkpoint, tmp_path, capsys):
    logdir = tmp_path / "run"
    argv = [f"checkpoint={checkpoint}", f"logdir={logdir}", "planners=[cem]", "horizons=[2]", "episodes=2",
            "batch=2"]
    assert bench.main(argv) == 0
    capsys.readouterr()
    assert bench.main([*argv[:-1], "batch=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cem-H2-open_loop.json was made with other settings" in err[0]


def test_a_checkpoint_changed_at_the_same_path_is_refused(tmp_path, capsys):
    path = save_tiny_checkpoint(tmp_path / "wall.pt")
    logdir = tmp_path / "run"
    argv = [f"checkpoint={path}", f"logdir={logdir}", "planners=[cem]", "horizons=[2]", "episodes=2", "batch=2"]
    assert bench.main(argv) == 0
    results = json.loads((logdir / "results.json").read_text())
    assert results["checkpoint_sha256"] == cells(logdir)["cem-H2-open_loop"]["key"]["checkpoint_sha256"] \
        == provenance.file_sha256(path)
    save_tiny_checkpoint(path, data=tmp_path / "other-data")  # other bytes at the same path: a retrained model
    capsys.readouterr()
    assert bench.main(argv) == 2
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
        assert b["iters"] == b["iters_warm"] == cell["row"]["iters"] >= 1
        assert cell["row"]["calibration_plan_time_s"] == b["plan_s"] > 0
        for e in cell["per_episode"]:
            assert 1 <= e["steps"] <= 6 and e["iters"] == b["iters"] * e["control_steps"]
            assert e["success"] == (e["steps"] < 6 or e["success_final"])
    assert "equal time: 0.02 s per plan call" in (logdir / "results.md").read_text()


class ClockPlanner:
    """A plan call takes overhead + iters * per_iter seconds of a fake clock (real sleeps overshoot on a loaded
    machine, which made this test flaky)."""

    def __init__(self, overhead, per_iter):
        self.overhead, self.per_iter, self.now = overhead, per_iter, 0.0

    def perf_counter(self):
        return self.now

    def plan(self, model, start, goal, horizon, iters):
        self.now += self.overhead + iters * self.per_iter


@pytest.mark.parametrize("overhead, per_iter, seconds, iters", [
    (0.02, 0.004, 0.08, 15),  # (0.08 - 0.02) / 0.004
    (0.0, 0.03, 0.05, 2),     # coarse iterations: 2 (0.06 s) is closer than 1 (0.03 s)
])
def test_equal_time_calibration_picks_the_count_whose_call_takes_closest_to_the_budget(
        monkeypatch, overhead, per_iter, seconds, iters):
    """Pins a bug: floor(budget / probed seconds per iteration), with overhead counted as iteration time, gave
    CEM and MPPI at H = 20 one iteration that used 0.4 of a 1 s budget."""
    planner = ClockPlanner(overhead, per_iter)
    monkeypatch.setattr(bench.planners, "make", lambda pcfg: planner)
    monkeypatch.setattr(bench, "time", planner)   # the module's time.perf_counter reads the fake clock
    fit = bench.calibrate(None, {"iters": 30}, 5, None, None, seconds)
    assert fit["iters"] == iters and fit["plan_s"] == pytest.approx(overhead + iters * per_iter)
    assert fit["sec_per_iter"] == pytest.approx(per_iter) and fit["overhead_s"] == pytest.approx(overhead)


@pytest.mark.parametrize("b, c, p", [(0, 0, 1.0), (5, 5, 1.0), (0, 5, 0.0625), (1, 9, 0.021484375),
                                     (2, 10, 0.03857421875), (10, 2, 0.03857421875), (3, 4, 1.0), (0, 1, 1.0)])
def test_exact_mcnemar_matches_the_binomial_test(b, c, p):
    assert bench.mcnemar_exact(b, c) == pytest.approx(p, rel=1e-12)


def test_median_cold_plan_cost_takes_every_episodes_first_plan_and_no_later_one():
    def rec(step, warm, costs):
        return PlanRecord(step, list(range(len(costs))), warm, 0.1, 1, torch.tensor(costs), {})
    records = [rec(0, False, [1.0, 5.0]), rec(1, True, [0.0, 0.0, 0.0]), rec(0, False, [2.0, float("inf")]),
               rec(5, False, [0.0])]   # a later cold re-plan (replan_every = H, or no warm start) is not a first plan
    assert bench.median_cold_plan_cost(records) == 3.5   # median of 1, 2, 5, inf
    assert bench.median_cold_plan_cost([rec(1, True, [1.0])]) is None


def test_paired_counts_tasks_only_one_planner_solved():
    def cell(wins, trivial=()):
        return {"per_episode": [{"index": i, "success": w, "trivial": i in trivial} for i, w in enumerate(wins)]}
    cells = {("grasp", 5): cell([1, 1, 1, 0, 1, 0], trivial=(5,)), ("cem", 5): cell([1, 0, 0, 0, 1, 1], trivial=(5,))}
    (row,) = bench.paired(cells, ["cem", "grasp"], [5])
    assert (row["reference"], row["other"], row["tasks"], row["reference_only"], row["other_only"]) == \
        ("grasp", "cem", 5, 2, 0)
    assert row["p_value"] == bench.mcnemar_exact(2, 0) == 0.5


def test_a_dirty_tree_may_not_write_committed_results_unless_allowed(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(provenance, "uncommitted_changes", lambda repo=None: True)
    argv = [f"checkpoint={checkpoint}", f"logdir={tmp_path / 'wall'}", "planners=[cem]", "horizons=[2]",
            "episodes=2", "batch=2"]
    assert bench.main(argv) == 2
    assert "allow_dirty=true" in capsys.readouterr().err and not (tmp_path / "wall").exists()
    assert bench.main([*argv, "allow_dirty=true"]) == 0
    res = json.loads((tmp_path / "wall" / "results.json").read_text())
    assert res["allow_dirty"] is True and res["rows"][0]["machine"]["allow_dirty"] is True
    assert "(allow_dirty=true)" in (tmp_path / "wall" / "results.md").read_text()


def test_committed_results_name_the_checkpoint_relative_to_the_repo(checkpoint):
    assert provenance.repo_path(REPO / "worldmodels" / "pretrained" / "wall.pt") == "worldmodels/pretrained/wall.pt"
    assert provenance.repo_path(checkpoint) == str(checkpoint)  # outside the repo: as given
    for path in REPO.glob("benchmarks/results/*/results.json"):
        assert not json.loads(path.read_text())["checkpoint"].startswith("/"), path


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


@pytest.mark.slow  # several processes (or a server): the second CI step, `pytest -m slow`
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


@pytest.mark.parametrize("env", ["pusht", "reacher"])
def test_an_env_settings_variant_is_that_env_files_grasp_settings(env):
    variant = dict(OmegaConf.load(configs.CONFIG_DIR / "benchmark.yaml").variants[f"grasp_{env}"])
    assert variant.pop("base") == "grasp"
    assert variant == dict(OmegaConf.load(configs.CONFIG_DIR / "env" / f"{env}.yaml").planner_settings.grasp)
