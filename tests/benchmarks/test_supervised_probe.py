"""benchmarks/supervised_probe.py: an encoder trained supervised reads what its inputs hold, not what they lack."""
import math

import numpy as np
import pytest
import torch

from benchmarks import supervised_probe
from conftest import save_tiny_checkpoint
from envs import env_config
from envs.base import StateVariable
from envs.data import collect
from worldmodels import JEPA, ModelConfig


def test_the_encoder_learns_a_variable_its_inputs_hold_and_not_one_they_lack():
    gen = torch.Generator().manual_seed(0)
    states = torch.rand(40, 10, 3, generator=gen, dtype=torch.float64)          # x, y and u, not observed
    obs = torch.cat([states[..., :2], torch.rand(40, 10, 2, generator=gen, dtype=torch.float64)], -1).float()
    model = JEPA(ModelConfig("state", (4,), action_dim=2, latent_dim=8, hidden=32, action_embed=4,
                             predictor_hidden=16, predictor_layers=2))
    model.set_normalization(np.zeros(2), np.ones(2), -np.ones(2), np.ones(2), np.full(4, 0.5), np.full(4, 0.3))
    variables = (StateVariable("xy", (0, 1), "position", task=True),
                 StateVariable("u", (2,), "position", task=False))
    r2 = supervised_probe.supervised_probe(model, obs, states, variables, n_fit=30, steps=300, batch=64, lr=0.01,
                                           seed=0)
    assert r2["xy"] > 0.95 and r2["u"] < 0.1


def test_the_command_trains_the_checkpoints_encoder_on_its_own_dataset(tmp_path, capsys):
    data = collect(env_config("wall", obs_type="state"), tmp_path / "data", episodes=6, episode_len=4, seed=0)
    path = save_tiny_checkpoint(tmp_path / "model.pt", "state", data=data)
    payload = torch.load(path, weights_only=True)
    payload["meta"]["config"] = {"train": {"eval_episodes": 2}}
    torch.save(payload, path)
    supervised_probe.main([str(path), "steps=5", "batch=8"])
    out = capsys.readouterr().out
    assert "trained supervised for 5 steps of 8 frames" in out and "on 4 episodes" in out
    row = next(line for line in out.splitlines() if line.startswith("| xy |"))
    assert math.isfinite(float(row.strip("|").split("|")[1]))


@pytest.mark.parametrize("argv", [[], ["a.pt", "b.pt"], ["a.pt", "steps=0"], ["a.pt", "lr=x"], ["a.pt", "colour=red"]])
def test_bad_arguments_are_one_line_errors(argv):
    with pytest.raises(SystemExit, match="error: "):
        supervised_probe.main(argv)
