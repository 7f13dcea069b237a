import os

# Headless MuJoCo rendering must be chosen before mujoco, dm_control or gymnasium are imported anywhere.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
# Tiny tensors gain nothing from intra-op threads, and on a loaded 2-core machine spinning worker threads made
# training and planning tests ~20x slower. Set before torch is imported; subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import dataclasses
from pathlib import Path

import numpy as np
import pytest


def save_tiny_checkpoint(path: Path, obs_type: str = "pixels", data: Path | None = None, history: int = 1) -> Path:
    """An untrained tiny wall JEPA saved as a real checkpoint. Its predictor output layer is random (a fresh one
    starts at zero, i.e. the identity), so plans move and differ by planner. `data` is recorded as its dataset."""
    import torch

    from envs import env_config, make
    from worldmodels import JEPA, ModelConfig, save_checkpoint

    env_cfg = env_config("wall", obs_type=obs_type)
    env = make(env_cfg)
    shape = env.observation_space.shape
    torch.manual_seed(0)
    model = JEPA(ModelConfig(obs_type, shape, action_dim=10, history=history, latent_dim=8, channels=(4,) * 4,
                             hidden=16, action_embed=8, predictor_hidden=16, predictor_layers=2))
    torch.nn.init.normal_(model.predictor[-1].weight, std=0.1)
    obs_mean, obs_std = (np.zeros(shape), np.full(shape, 64.0)) if obs_type == "pixels" else \
        (np.full(shape, 32.0), np.full(shape, 16.0))
    model.set_normalization(np.zeros(10), np.ones(10), np.tile(env.action_low, 5), np.tile(env.action_high, 5),
                            obs_mean, obs_std)
    meta = {"env": dataclasses.asdict(env_cfg)}
    if data is not None:
        meta["data"] = {"path": str(data)}
    save_checkpoint(path, model, meta)
    return Path(path)


def trained_checkpoint(tmp_path: Path, obs_type: str = "state", history: int = 1) -> Path:
    """A tiny untrained checkpoint with train.py's record of its dataset: 6 wall episodes of 4 steps collected
    under tmp_path, the last 2 held out (train.eval_episodes)."""
    import torch

    from envs import env_config
    from envs.data import collect

    data = collect(env_config("wall", obs_type=obs_type), tmp_path / "data", episodes=6, episode_len=4, seed=0)
    path = save_tiny_checkpoint(tmp_path / "model.pt", obs_type, data=data, history=history)
    payload = torch.load(path, weights_only=True)
    payload["meta"]["config"] = {"train": {"eval_episodes": 2}}
    torch.save(payload, path)
    return path


@pytest.fixture
def tiny_checkpoint():
    return save_tiny_checkpoint
