"""benchmarks/latent_probe.py: linear and kNN probes on latents whose content is known, and the command."""
import math

import pytest
import torch

from benchmarks import latent_probe
from conftest import save_tiny_checkpoint, trained_checkpoint
from envs.base import StateVariable

VARIABLES = (StateVariable("xy", (0, 1), "position", task=True), StateVariable("heading", (2,), "angle", task=True))


def states(episodes=60, steps=20, seed=0):
    """(E, T, 3): xy drawn afresh every frame, a heading that stays put within each episode."""
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(episodes, steps, 2, generator=gen, dtype=torch.float64)
    heading = (torch.rand(episodes, 1, 1, generator=gen, dtype=torch.float64) * 2 - 1) * math.pi
    return torch.cat([xy, heading.expand(-1, steps, -1)], -1)


def test_a_latent_holding_every_variable_linearly_scores_about_one_on_every_probe():
    s = states()
    z = torch.cat([s[..., :2], s[..., 2:].cos(), s[..., 2:].sin()], -1) @ torch.randn(4, 8, dtype=torch.float64)
    probes = latent_probe.latent_probe(z, s, VARIABLES, n_fit=50, k=5)
    for linear, knn, reference in probes.values():
        assert linear > 0.999 and knn > 0.9 and reference > 0.9


def test_a_raw_wrapping_angle_is_found_by_knn_but_not_by_the_linear_map():
    # the known answer: cos and sin of a uniform angle from the angle itself, linearly, R^2 = 0.5 * 6 / pi^2 ~ 0.30
    s = states(episodes=400)
    probes = latent_probe.latent_probe(s.clone(), s, VARIABLES, n_fit=300, k=5)
    linear, knn, reference = probes["heading"]
    assert linear == pytest.approx(3 / math.pi ** 2, abs=0.05) and knn > 0.95 and reference > 0.95


def test_a_variable_the_latent_lacks_scores_about_zero_on_both_probes():
    s = states()
    z = torch.cat([s[..., :2], torch.randn(*s.shape[:2], 6, dtype=torch.float64)], -1)   # xy, noise; no heading
    probes = latent_probe.latent_probe(z, s, VARIABLES, n_fit=50, k=10)
    assert probes["xy"][0] > 0.99
    linear, knn, reference = probes["heading"]
    assert linear < 0.1 and knn < 0.1 and reference > 0.9


def test_both_probes_score_on_held_out_episodes_only():
    # a 40-d latent of per-frame noise beside per-frame noise targets: scored on the 200 fitted frames themselves,
    # the nearest neighbour (each frame's own) would give 1 and the 41-weight linear map about 0.2
    gen = torch.Generator().manual_seed(1)
    s = torch.rand(30, 10, 3, generator=gen, dtype=torch.float64)
    z = torch.randn(30, 10, 40, generator=gen, dtype=torch.float64)
    for linear, knn, _ in latent_probe.latent_probe(z, s, VARIABLES, n_fit=20, k=1).values():
        assert linear < 0.1 and knn < 0.1


@pytest.mark.parametrize("obs_type, history", [("state", 1), ("pixels", 2)])
def test_the_command_probes_a_checkpoint_on_its_own_dataset(tmp_path, capsys, obs_type, history):
    path = trained_checkpoint(tmp_path, obs_type, history)
    latent_probe.main([str(path), "k=3"])
    out = capsys.readouterr().out
    assert "fit on 4 episodes, scored on 2, k = 3" in out
    row = next(line for line in out.splitlines() if line.startswith("| xy |"))
    assert all(math.isfinite(float(c)) for c in row.strip("|").split("|")[1:])


def test_a_checkpoint_without_its_training_record_is_a_one_line_error(tmp_path):
    path = save_tiny_checkpoint(tmp_path / "model.pt", "state")      # no data.path, no train.eval_episodes
    with pytest.raises(SystemExit, match="records no train.py dataset"):
        latent_probe.main([str(path)])


@pytest.mark.parametrize("argv", [[], ["a.pt", "b.pt"], ["a.pt", "k=0"], ["a.pt", "colour=red"]])
def test_bad_arguments_are_one_line_errors(argv):
    with pytest.raises(SystemExit, match="error: "):
        latent_probe.main(argv)
