"""worldmodels/training.py: the schedule, deterministic batches sliced across ranks, dataset and resume checks.
train.py's end-to-end runs (outputs, exact resume, DDP) are in tests/test_train.py."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from envs import EnvConfig
from envs.data import collect
from worldmodels.training import (Episodes, TrainConfig, TrainingError, check_resume, dataset_path, open_dataset,
                                  train_step)

CONFIG = dict(steps=10, batch_size=4, seq_len=3, lr=1e-3, warmup=2, weight_decay=0.0, grad_clip=1.0,
              regularizer="sigreg", reg_weight=0.1, state_weight=1.0, sigreg_projections=8, eval_episodes=2,
              ckpt_every=5, eval_every=5, log_every=5)
ENV = EnvConfig(name="wall", obs_type="state", options={"door_y": 32.0, "door_width": 12.0})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return open_dataset(collect(ENV, tmp_path_factory.mktemp("data") / "wall", episodes=6, episode_len=4, seed=0),
                        ENV)


def test_lr_warms_up_linearly_then_decays_to_a_tenth():
    tc = TrainConfig(**CONFIG)
    assert [tc.lr_at(s) for s in (0, 1)] == [5e-4, 1e-3] and tc.lr_at(2) == pytest.approx(1e-3)
    assert tc.lr_at(10) == pytest.approx(1e-4)
    with pytest.raises(TrainingError, match="choose one of: sigreg, vicreg"):
        TrainConfig(**{**CONFIG, "regularizer": "ica"})


def test_batches_depend_on_seed_and_step_alone_and_ranks_split_the_global_batch(dataset):
    episodes = Episodes(dataset, eval_episodes=2, seq_len=3)
    obs, actions, _ = episodes.batch(seed=0, step=3, batch_size=4, rank=0, world=1)
    assert obs.shape == (4, 3, *dataset.meta["obs_shape"]) and actions.shape == (4, 2, dataset.meta["action_dim"])
    again = episodes.batch(0, 3, 4, 0, 1)[0]
    halves = [episodes.batch(0, 3, 4, rank, 2)[0] for rank in (0, 1)]
    assert torch.equal(obs, again) and torch.equal(torch.cat(halves), obs)
    assert not torch.equal(episodes.batch(0, 4, 4, 0, 1)[0], obs)
    assert len(episodes.held_out()[0]) == 2
    with pytest.raises(TrainingError, match="the dataset has only 6 episodes"):
        Episodes(dataset, eval_episodes=6, seq_len=3)


def test_a_dataset_from_another_env_config_or_path_is_refused(dataset, tmp_path):
    assert dataset_path(ENV, {"path": str(dataset.path)}) == dataset.path.resolve()
    with pytest.raises(TrainingError, match="no dataset there"):
        dataset_path(ENV, {"path": str(tmp_path)})
    with pytest.raises(TrainingError, match="collected with env.action_block=5, but env.action_block=2"):
        open_dataset(dataset.path, replace(ENV, action_block=2))


def test_resume_may_change_only_resume_device_and_logdir():
    saved = {"resume": False, "device": "cpu", "logdir": "a", "train": {"lr": 0.001}}
    check_resume(saved, {**saved, "resume": True, "device": "cuda", "logdir": "b"})
    with pytest.raises(TrainingError, match="train.lr=0.002 differs from the checkpoint's 0.001"):
        check_resume(saved, {**saved, "train": {"lr": 0.002}})


class HandMadeDataset:
    """`n` episodes of `T` steps whose 1-d observation is first + 100 * episode + frame and action
    first + 100 * episode + step, so every batch entry says where it came from."""

    def __init__(self, n=5, T=6, first=0):
        self.n, self.first, self.meta, self.path = n, first, {"episode_len": T}, f"hand-made-{first}"

    def __len__(self):
        return self.n

    def load_all(self):
        e, t = np.arange(self.n)[:, None], np.arange(self.meta["episode_len"] + 1)
        obs = (self.first + 100 * e + t).astype(np.float32)[..., None]          # (n, T+1, 1)
        return {"obs": obs, "actions": obs[:, :-1].repeat(2, -1), "states": obs}


def test_extra_datasets_are_trained_on_and_never_held_out():
    """5 data-policy episodes (1 held out) + 3 extra ones (e.g. planner-in-the-loop): 7 training episodes; the
    held-out one is still the data policy's last; the action statistics cover every episode."""
    extra = HandMadeDataset(n=3, first=10000)
    episodes = Episodes(HandMadeDataset(), eval_episodes=1, seq_len=3, extra=[extra])
    assert episodes.n_train == 7
    held_obs, _, _ = episodes.held_out()
    assert held_obs[:, 0, 0].tolist() == [400.0]
    seen = set()
    for step in range(50):
        obs = episodes.batch(seed=0, step=step, batch_size=8, rank=0, world=1)[0]
        seen |= {int(v) // 100 for v in obs[:, 0, 0]}
    assert seen == {0, 1, 2, 3, 100, 101, 102}                                # never episode 4, the held-out one
    every = np.concatenate([HandMadeDataset().load_all()["actions"], extra.load_all()["actions"]]).reshape(-1, 2)
    mean, std = episodes.action_stats()
    assert mean.dtype == np.float32 and mean.shape == (2,)
    np.testing.assert_allclose(mean, every.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, every.std(0), rtol=1e-5)
    with pytest.raises(TrainingError, match="data.extra 'hand-made-7' has episodes of 4 steps, data.path's have 6"):
        Episodes(HandMadeDataset(), eval_episodes=1, seq_len=3, extra=[HandMadeDataset(T=4, first=7)])


def test_batches_carry_history_context_with_the_first_frame_repeated_before_an_episode():
    seq_len, k = 3, 3
    plain = Episodes(HandMadeDataset(), eval_episodes=1, seq_len=seq_len)
    episodes = Episodes(HandMadeDataset(), eval_episodes=1, seq_len=seq_len, history=k)
    padded = 0
    for step in range(20):
        obs, actions, _ = episodes.batch(seed=0, step=step, batch_size=8, rank=0, world=1)
        assert obs.shape == (8, k - 1 + seq_len, 1) and actions.shape == (8, seq_len - 1, 2)
        first = obs[:, k - 1, 0].long()                                         # the sequence's first frame
        ep, t0 = first // 100, first % 100
        offsets = torch.arange(1 - k, seq_len)
        assert torch.equal(obs[..., 0].long(), 100 * ep[:, None] + (t0[:, None] + offsets).clamp_min(0))
        assert torch.equal(actions[..., 0].long(), 100 * ep[:, None] + t0[:, None] + torch.arange(seq_len - 1))
        padded += int((t0 < k - 1).sum())
        # the same draws with and without history (resume and old runs unchanged): k only adds the context
        old_obs, old_actions, _ = plain.batch(0, step, 8, 0, 1)
        assert torch.equal(obs[:, k - 1:], old_obs) and torch.equal(actions, old_actions)
    assert padded > 0                                                            # episode starts were drawn


def test_the_data_cache_is_keyed_by_the_data_policy_revision(monkeypatch):
    """A changed data policy must not reuse the datasets its predecessor collected."""
    from envs.wall import WallEnv
    spec = {"episodes": 6, "episode_len": 4, "seed": 0}
    before = dataset_path(ENV, spec, is_main=False)
    assert dataset_path(ENV, spec, is_main=False) == before
    monkeypatch.setattr(WallEnv, "data_policy_revision", WallEnv.data_policy_revision + 1)
    assert dataset_path(ENV, spec, is_main=False) != before


def test_an_ensembles_train_step_reports_losses_per_member():
    """train/ losses are the members' mean, so curves of ensembles and single models compare; the gradient is the
    sum's (each member's own)."""
    from worldmodels import ModelConfig, build_model
    tc = TrainConfig(**CONFIG)
    torch.manual_seed(0)
    model = build_model(ModelConfig("state", (6,), 4, latent_dim=8, hidden=16, action_embed=8, predictor_hidden=16,
                                    ensemble=2))
    model.set_normalization(np.zeros(4), np.ones(4), -np.ones(4), np.ones(4), np.zeros(6), np.ones(6))
    obs, actions = torch.randn(4, 3, 6), torch.randn(4, 2, 4)
    with torch.no_grad():
        member_losses = [m(obs, actions)[1].item() for m in model.members]
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr)
    losses, z_all = train_step(model, model, optimizer, tc, obs, actions, seed=0, step=0)
    assert member_losses[0] != pytest.approx(member_losses[1])
    assert losses.pred_loss.item() == pytest.approx(sum(member_losses) / 2, rel=1e-6)
    assert z_all.shape == (12, 16)


def test_model_proprio_and_state_targets_name_state_variables_and_become_their_columns():
    from envs.base import StateVariable
    from worldmodels.training import model_config
    reacher = (StateVariable("shoulder", (0,), "angle", task=True), StateVariable("wrist", (1,), "angle", task=True),
               StateVariable("joint_velocity", (2, 3), "velocity", task=False))
    cfg = model_config("pixels", (16, 16, 3), 10, {"channels": [4, 8], "proprio": ["joint_velocity", "wrist"]},
                       reacher)
    assert (cfg.proprio_index, cfg.proprio_angles, cfg.proprio_dim) == ((2, 3, 1), (1,), 4)
    assert model_config("pixels", (16, 16, 3), 10, {"channels": [4, 8], "proprio": []}, reacher).proprio_index == ()
    with pytest.raises(TrainingError, match=r"model.proprio=\['elbow'\]: unknown state variable\(s\) \['elbow'\]; "
                                            r"choose from: shoulder, wrist, joint_velocity$"):
        model_config("pixels", (16, 16, 3), 10, {"proprio": ["elbow"]}, reacher)
    cfg = model_config("state", (4,), 10, {"state_targets": ["wrist", "joint_velocity"]}, reacher)
    assert (cfg.state_target_index, cfg.state_target_angles, cfg.state_target_dim) == ((1, 2, 3), (1,), 4)
    with pytest.raises(TrainingError, match=r"model.state_targets=\['elbow'\]: unknown state variable\(s\) "
                                            r"\['elbow'\]; choose from: shoulder, wrist, joint_velocity$"):
        model_config("state", (4,), 10, {"state_targets": ["elbow"]}, reacher)
