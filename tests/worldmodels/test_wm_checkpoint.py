"""Checkpoints: round trip, and a one-line CheckpointError for every kind of bad file."""
import pickle

import numpy as np
import pytest
import torch

from worldmodels import (FORMAT_VERSION, JEPA, CheckpointError, ModelConfig, ModelError, load_checkpoint,
                         save_checkpoint)

A = 4


def make_model(history: int = 1) -> JEPA:
    torch.manual_seed(0)
    model = JEPA(ModelConfig("pixels", (16, 16, 3), A, history=history, latent_dim=8, channels=(4, 8), hidden=16,
                             action_embed=8, predictor_hidden=16))
    model.set_normalization(np.arange(A), np.ones(A) * 2, -np.ones(A), np.ones(A),
                            np.full((16, 16, 3), 30.0), np.full((16, 16, 3), 20.0))
    torch.nn.init.normal_(model.predictor[-1].weight, std=0.1)
    return model


META = {"env": {"name": "wall", "obs_type": "pixels", "action_block": 2}, "config": {"train": {"lr": 0.001}},
        "git_commit": None, "metrics": {"model/rel_err_k1": 0.1}, "step": 7}


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, make_model(), META, training={"optimizer": {}, "step": 7})
    return path


def test_round_trip_restores_outputs_buffers_and_meta(saved):
    original = make_model()
    model, meta = load_checkpoint(saved, env="wall", obs_type="pixels")
    assert meta == META and not model.training
    obs = torch.randint(0, 256, (3, 16, 16, 3), dtype=torch.uint8)
    a = torch.randn(3, 5, A)
    assert torch.equal(model.rollout(model.encode(obs), a), original.rollout(original.encode(obs), a))
    for name in ("action_mean", "action_std", "action_low", "action_high", "obs_mean", "obs_std"):
        assert torch.equal(getattr(model, name), getattr(original, name)), name
    assert not list(saved.parent.glob("*.tmp"))


def expect_error(path, match, **kwargs):
    with pytest.raises(CheckpointError, match=match) as err:
        load_checkpoint(path, **kwargs)
    assert "\n" not in str(err.value)


def test_missing_file(tmp_path):
    expect_error(tmp_path / "nope.pt", "not found")


def test_truncated_file(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[:len(data) // 2])
    expect_error(saved, "truncated or corrupt")


def test_garbage_file(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"this is not a checkpoint at all" * 10)
    expect_error(path, "truncated or corrupt")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_foreign_files(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, plain)
    expect_error(plain, "not a grasp-wm world-model checkpoint")
    pickled = tmp_path / "pickled.pt"
    with open(pickled, "wb") as f:
        pickle.dump(np.random.default_rng(0), f)   # an arbitrary object: refused by weights_only, never run
    expect_error(pickled, "not a grasp-wm world-model checkpoint|truncated or corrupt")
    module = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), module)
    expect_error(module, "not a grasp-wm world-model checkpoint")


def test_unknown_format_version(saved):
    payload = torch.load(saved, weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, saved)
    expect_error(saved, f"format_version {FORMAT_VERSION + 1}; this code reads {FORMAT_VERSION}")


def test_other_env_or_obs_type_names_both(saved):
    expect_error(saved, r"trained for env 'wall' \(pixels observations\), not 'reacher'", env="reacher")
    expect_error(saved, r"trained for env 'wall' \(pixels observations\), not state observations",
                 env="wall", obs_type="state")


def test_history_round_trips_and_checkpoints_without_it_load_as_k1(tmp_path, saved):
    path = tmp_path / "k2.pt"
    save_checkpoint(path, make_model(history=2), META)
    model, _ = load_checkpoint(path)
    assert model.history == 2 and model.encode(torch.zeros(3, 2, 16, 16, 3, dtype=torch.uint8)).shape == (3, 8)
    payload = torch.load(saved, weights_only=True)
    del payload["model_config"]["history"]                  # a checkpoint written before frame history
    torch.save(payload, saved)
    old, _ = load_checkpoint(saved)
    obs = torch.randint(0, 256, (3, 16, 16, 3), dtype=torch.uint8)
    assert old.history == 1 and torch.equal(old.encode(obs), make_model().encode(obs))


def test_a_checkpoint_with_another_history_does_not_fit_one_line(tmp_path):
    path = tmp_path / "k2.pt"
    save_checkpoint(path, make_model(history=2), META)
    model, _ = load_checkpoint(path)
    with pytest.raises(ModelError, match="not a window of history k=2 frames") as err:
        model.encode(torch.zeros(3, 16, 16, 3, dtype=torch.uint8))          # single frames for a k=2 model
    assert "\n" not in str(err.value)
    payload = torch.load(path, weights_only=True)
    payload["model_config"]["history"] = 3                  # k=2 weights under a k=3 config
    torch.save(payload, path)
    expect_error(path, "weights do not match its model config")
