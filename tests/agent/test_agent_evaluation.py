"""agent/evaluation.py: the one results summary (and its Wilson intervals), the writer, episode seeds, the check
that a model fits the run's env, the reference frames of plan pictures."""
import json

import pytest
import torch
from conftest import save_tiny_checkpoint

from agent.evaluation import (check_model_fits_env, episode_seeds, load_world_model, reference_frames,
                              shipped_checkpoint, summarize, wilson, write_json)
from agent.mpc import AgentError, Episode, PlanRecord
from envs import env_config, make
from envs.data import collect
from worldmodels import load_checkpoint


def test_wilson_interval_matches_the_known_values():
    lo, hi = wilson(50, 100)
    assert (round(lo, 4), round(hi, 4)) == (0.4038, 0.5962)  # the ±10 points the default episode count is for
    assert wilson(0, 10)[0] == 0 and wilson(10, 10)[1] == pytest.approx(1) and wilson(0, 0) is None


def row(success: bool, trivial: bool = False, steps: int = 4, time: float | None = None) -> dict:
    ep = Episode(seed=0, trivial=trivial, distances=[2.0, 1.0], success=success, success_final=success,
                 steps=steps, time_to_success_s=time)
    return ep.summary()


def record(seconds: float, iters: int) -> PlanRecord:
    return PlanRecord(0, [0], False, seconds, iters, cost=None, diagnostics={})


def test_summary_excludes_trivial_episodes_and_counts_them():
    out = summarize([row(True, time=2.0), row(False), row(True, time=4.0), row(True, trivial=True, steps=0)],
                    [record(1.0, 10), record(3.0, 30)])
    assert (out["episodes"], out["excluded_trivial"], out["successes"]) == (4, 1, 2)
    assert out["success_rate"] == out["success_final_rate"] == 2 / 3 and out["success_ci95"] == wilson(2, 3)
    assert out["median_time_to_success_s"] == 3.0 and out["mean_plan_time_s"] == 2.0
    assert (out["plan_calls"], out["mean_iters_per_call"], out["mean_steps"]) == (2, 20, 4)


def test_an_empty_cell_is_none_everywhere_not_zero():
    """evaluate.py used to write 0.0 where the benchmark wrote None for the same empty cell."""
    out = summarize([row(True, trivial=True, steps=0)], [])
    for key in ("success_rate", "success_ci95", "success_final_rate", "success_final_ci95",
                "median_time_to_success_s", "mean_plan_time_s", "mean_iters_per_call", "mean_steps",
                "mean_final_distance"):
        assert out[key] is None, key
    assert summarize([row(False)], [record(1.0, 5)])["median_time_to_success_s"] is None  # no success: no median


def test_write_json_is_atomic_and_makes_the_folder(tmp_path):
    path = tmp_path / "a" / "results.json"
    write_json(path, {"x": None})
    assert json.loads(path.read_text()) == {"x": None} and not list(path.parent.glob("*.tmp"))


def test_episode_seeds_are_a_prefix_stable_function_of_the_run_seed():
    assert episode_seeds(0, 3) == episode_seeds(0, 10)[:3] and episode_seeds(0, 3) != episode_seeds(1, 3)
    assert episode_seeds(0, 2) == [2968811710, 3677149159]


def test_load_world_model_warns_about_a_model_unusable_for_planning(tmp_path, tiny_checkpoint, capsys):
    path = tiny_checkpoint(tmp_path / "wall.pt", "state")
    load_world_model(env_config("wall", obs_type="state"), str(path))
    assert "WARNING" not in capsys.readouterr().err          # no metrics stored: nothing to warn about
    payload = torch.load(path, weights_only=True)
    payload["meta"]["metrics"] = {"eval/rel_err_k1": 1.5, "eval/dist_spearman": -0.2}   # keys from before model/
    torch.save(payload, path)
    load_world_model(env_config("wall", obs_type="state"), str(path))
    err = capsys.readouterr().err
    assert err.startswith(f"WARNING: {path}:") and "model/rel_err_k1=1.5 >= 1" in err and "Train longer" in err
    assert err.count("\n") == 1


def env_meta(name: str, **fields) -> dict:
    return {"env": {"name": name, "obs_type": "state", "image_size": 64, "action_block": 5, "goal_mode": "random",
                    "goal_steps": 25, "options": {}, **fields}}


@pytest.mark.parametrize("name, trained, run, words", [
    # pins a bug: each of these ran silently with a model of another env variant
    ("pointmaze", {}, {"options": {"layout": "Medium"}}, ["env.options.layout=UMaze", "env.options.layout=Medium"]),
    ("wall", {"options": {"door_y": 32.0}}, {"options": {"door_y": 12.0}}, ["env.options.door_y=32.0"]),
    ("pusht", {}, {"options": {"relative_actions": True}}, ["pass env.options.relative_actions=false"]),
    ("wall", {"obs_type": "pixels"}, {"obs_type": "pixels", "image_size": 32}, ["env.image_size=64"]),
    ("wall", {}, {"action_block": 2}, ["env.action_block=5", "env.action_block=2"]),
])
def test_a_run_env_other_than_the_trained_one_is_refused_naming_the_keys(name, trained, run, words):
    run_cfg = env_config({**env_meta(name, **trained)["env"], **run})
    with pytest.raises(AgentError) as err:
        check_model_fits_env(env_meta(name, **trained), run_cfg, make(run_cfg).default_options)
    assert "\n" not in str(err.value)
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize("name, trained, run", [
    ("pointmaze", {}, {"options": {"layout": "UMaze"}}),       # an old checkpoint's {} means the defaults
    ("pusht", {}, {"options": {"relative_actions": False}}),
    ("wall", {"options": {"door_y": 32.0, "door_width": 12.0}}, {}),
    ("wall", {}, {"goal_mode": "trajectory", "goal_steps": 40}),  # task sampling is free
    ("wall", {}, {"image_size": 32}),  # state observations: image_size only sizes rendered frames
])
def test_the_same_env_at_its_effective_values_is_accepted(name, trained, run):
    run_cfg = env_config({**env_meta(name, **trained)["env"], **run})
    check_model_fits_env(env_meta(name, **trained), run_cfg, make(run_cfg).default_options)


def test_reference_frames_fall_back_to_fresh_ones_for_an_incomplete_dataset(tmp_path, capsys):
    """Pins a bug: an incomplete dataset beside the checkpoint stopped the run with nothing written."""
    data = collect(env_config("wall", obs_type="state"), tmp_path / "data", episodes=2, episode_len=4, seed=0)
    meta = json.loads((data / "meta.json").read_text())
    meta["episodes"] += 1  # one shard short: an interrupted collection
    (data / "meta.json").write_text(json.dumps(meta))
    model, _ = load_checkpoint(save_tiny_checkpoint(tmp_path / "m.pt", "state", data))
    frames = reference_frames(model, {"data": {"path": str(data)}}, env_config("wall", obs_type="state"), seed=0)
    out = capsys.readouterr().out
    assert len(frames.latents) == 512 and "incomplete dataset" in out and out.count("plan pictures") == 1


def test_fresh_reference_frames_are_announced_before_they_are_collected(tmp_path, capsys, monkeypatch):
    """A shipped checkpoint on a new machine has no training data beside it: the collection of fresh frames is a
    pause before the first episode, which used to pass without a word."""
    import envs.data
    model, _ = load_checkpoint(save_tiny_checkpoint(tmp_path / "m.pt", "state", tmp_path / "not-here"))
    collect, said = envs.data.collect, []

    def announced_collect(*args, **kwargs):
        said.append(capsys.readouterr().out)  # what was printed before the collection started
        return collect(*args, **kwargs)
    monkeypatch.setattr(envs.data, "collect", announced_collect)
    reference_frames(model, {"data": {"path": str(tmp_path / "not-here")}}, env_config("wall", obs_type="state"), 0)
    assert said == ["plan pictures: 576 fresh reference frames from the env's data policy (training data not on this "
                    "machine)\n"]


def test_the_shipped_checkpoint_is_the_one_for_the_observation_type():
    """pointmaze and pusht ship a state model (their default) and a 2-frame pixel model; other envs one file for
    both."""
    assert shipped_checkpoint(env_config("pointmaze", obs_type="state")).name == "pointmaze.pt"
    assert shipped_checkpoint(env_config("pointmaze", obs_type="pixels")).name == "pointmaze-pixels.pt"
    assert shipped_checkpoint(env_config("pusht", obs_type="state")).name == "pusht.pt"
    assert shipped_checkpoint(env_config("pusht", obs_type="pixels")).name == "pusht-pixels.pt"
    assert shipped_checkpoint(env_config("wall", obs_type="state")).name == "wall.pt"
    model, meta, path = load_world_model(env_config("pointmaze", obs_type="pixels"))
    assert path.name == "pointmaze-pixels.pt" and model.history == 2 and meta["env"]["obs_type"] == "pixels"
