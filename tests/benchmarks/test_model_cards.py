"""benchmarks/model_cards.py: rows from stored metrics (old `eval/` and new `model/` keys) and re-measured ones."""
import pytest
import torch

from benchmarks import model_cards
from conftest import save_tiny_checkpoint

OLD_METRICS = {"perf/steps_per_s": 20.0, "eval/rel_err_k1": 0.25, "eval/rel_err_k5": 0.5, "eval/rel_err_k6": 0.75,
               "eval/probe_r2": 0.07, "eval/dist_spearman": 0.33}   # as checkpoints before the model/ rename


def checkpoint(path, metrics, **meta):
    """A tiny wall (state) checkpoint with a full training meta: 16 episodes of 6 steps, 4 held out."""
    save_tiny_checkpoint(path, "state")
    payload = torch.load(path, weights_only=True)
    payload["meta"].update(step=10, git_commit="0123456789abcdef", metrics=metrics,
                           data={"path": "gone", "episodes": 16, "episode_len": 6},
                           config={"train": {"eval_episodes": 4}}, **meta)
    torch.save(payload, path)
    return path


def cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip("|").split("|")]


def test_card_reads_old_eval_keys_but_not_the_old_raw_angle_probe(tmp_path):
    row = cells(model_cards.card(checkpoint(tmp_path / "old.pt", OLD_METRICS)))
    header = cells(model_cards.HEADER.splitlines()[0])
    got = dict(zip(header, row))
    assert got["rel. err k=1"] == "0.250" and got["k=5"] == "0.500" and got["k=episode"] == "0.750 (H=6)"
    assert got["dist. Spearman"] == "0.33" and got["k=plan"] == "- (H=32 > 6)"   # wall plans 32 steps ahead
    assert got["probe R² (task)"] == "-" and got["train time"] == "-"              # not recorded then
    assert got["train data (episodes / transitions)"] == "12 / 72" and got["commit"] == "0123456789"


def test_card_prefers_model_keys_and_shows_time_and_every_probe_variable(tmp_path):
    new = {**OLD_METRICS, "model/rel_err_k1": 0.125, "model/probe_r2": 0.99, "model/probe_r2/xy": 0.99}
    got = dict(zip(cells(model_cards.HEADER.splitlines()[0]),
                   cells(model_cards.card(checkpoint(tmp_path / "new.pt", new, train_time_s=90.0)))))
    assert got["rel. err k=1"] == "0.125" and got["probe R² (task)"] == "0.990"
    assert got["probe R² per variable"] == "xy 0.990" and got["train time"] == "1.5 min"


def test_card_names_what_a_pixel_model_reads_and_was_trained_to_hold(tmp_path):
    path = checkpoint(tmp_path / "m.pt", OLD_METRICS)
    payload = torch.load(path, weights_only=True)
    payload["meta"]["config"]["model"] = {"proprio": ["agent_xy"], "state_targets": ["block_xy", "block_angle"]}
    payload["meta"]["env"]["obs_type"] = "pixels"
    torch.save(payload, path)
    got = dict(zip(cells(model_cards.HEADER.splitlines()[0]), cells(model_cards.card(path))))
    assert got["obs"] == "pixels + agent_xy (trained to hold block_xy, block_angle)"


def test_remeasure_replaces_the_stored_model_metrics(tmp_path, capsys):
    path = checkpoint(tmp_path / "old.pt", OLD_METRICS)
    model_cards.main([str(path), "remeasure=true", "episodes=4", "seed=3"])
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3    # header, rule, one row: collection progress goes to stderr
    got = dict(zip(cells(out[0]), cells(out[2])))
    assert got["probe R² per variable"].startswith("xy ") and got["probe R² (task)"] != "-"
    assert got["rel. err k=1"] != "0.250"   # measured, not the stored number


@pytest.mark.parametrize("arg", ["remeasure=yes", "episodes=1", "seed=x", "colour=red"])
def test_bad_arguments_are_one_line_errors(arg):
    with pytest.raises(SystemExit, match="error: "):
        model_cards.main([arg])
