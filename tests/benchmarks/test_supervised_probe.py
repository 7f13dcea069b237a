"""benchmarks/supervised_probe.py: an encoder trained supervised reads what its inputs hold, not what they lack."""
import math

import numpy as np
import pytest
import torch

from benchmarks import supervised_probe
from conftest import trained_checkpoint
from envs.base import StateVariable
from worldmodels import JEPA, ModelConfig


VARIABLES = (StateVariable("xy", (0, 1), "position", task=True), StateVariable("u", (2,), "position", task=False))


def observed():
    """states (40, 10, 3): x, y and u; obs (40, 10, 4): x, y and two noise columns, so u is not observed."""
    gen = torch.Generator().manual_seed(0)
    states = torch.rand(40, 10, 3, generator=gen, dtype=torch.float64)
    return torch.cat([states[..., :2], torch.rand(40, 10, 2, generator=gen, dtype=torch.float64)], -1).float(), states


def state_model(seed):
    torch.manual_seed(seed)
    model = JEPA(ModelConfig("state", (4,), action_dim=2, latent_dim=8, hidden=32, action_embed=4,
                             predictor_hidden=16, predictor_layers=2))
    model.set_normalization(np.zeros(2), np.ones(2), -np.ones(2), np.ones(2), np.full(4, 0.5), np.full(4, 0.3))
    return model


def test_the_encoder_learns_a_variable_its_inputs_hold_and_not_one_they_lack():
    obs, states = observed()
    r2 = supervised_probe.supervised_probe(state_model(0), obs, states, VARIABLES, n_fit=30, steps=300, batch=64,
                                           lr=0.01, seed=0)
    assert r2["xy"] > 0.95 and r2["u"] < 0.1


def test_the_encoder_starts_from_fresh_weights_drawn_from_the_seed():
    obs, states = observed()
    runs = [supervised_probe.supervised_probe(state_model(init), obs, states, VARIABLES, n_fit=30, steps=20,
                                              batch=16, lr=0.01, seed=3) for init in (1, 2)]
    assert runs[0] == runs[1]


@pytest.mark.parametrize("obs_type, history", [("state", 1), ("pixels", 2)])
def test_the_command_trains_the_checkpoints_encoder_on_its_own_dataset(tmp_path, capsys, obs_type, history):
    path = trained_checkpoint(tmp_path, obs_type, history)
    supervised_probe.main([str(path), "steps=5", "batch=8"])
    out = capsys.readouterr().out
    assert "trained supervised for 5 steps of 8 frames" in out and "on 4 episodes" in out
    row = next(line for line in out.splitlines() if line.startswith("| xy |"))
    assert math.isfinite(float(row.strip("|").split("|")[1]))


@pytest.mark.parametrize("argv", [[], ["a.pt", "b.pt"], ["a.pt", "steps=0"], ["a.pt", "lr=x"], ["a.pt", "lr=nan"],
                                  ["a.pt", "colour=red"]])
def test_bad_arguments_are_one_line_errors(argv):
    with pytest.raises(SystemExit, match="error: "):
        supervised_probe.main(argv)
