"""The JEPA world model: planner interface shapes, gradient routing, learning, anti-collapse."""
import numpy as np
import pytest
import torch

from worldmodels import (JEPA, CheckpointError, Ensemble, ModelConfig, ModelError, build_model, latent_health,
                         load_checkpoint, save_checkpoint, sigreg, vicreg)
from worldmodels.checkpoint import PRETRAINED
from worldmodels.model import episode_windows, frame_windows

A, OBS_DIM = 4, 6


def state_model(latent_dim=8, seed=0) -> JEPA:
    torch.manual_seed(seed)
    model = JEPA(ModelConfig("state", (OBS_DIM,), A, latent_dim=latent_dim, hidden=32, action_embed=8,
                             predictor_hidden=32))
    model.set_normalization(np.zeros(A), np.ones(A), -np.ones(A), np.ones(A), np.zeros(OBS_DIM), np.ones(OBS_DIM))
    return model


def linear_episodes(n=64, T=8, seed=0):
    """Observations of a 2-D point moved by the first two action components (the rest is noise), embedded
    linearly in OBS_DIM dims: obs (n, T+1, OBS_DIM), actions (n, T, A)."""
    g = torch.Generator().manual_seed(seed)
    actions = torch.randn(n, T, A, generator=g)
    xy = torch.cat([torch.randn(n, 1, 2, generator=g), 0.3 * actions[..., :2]], 1).cumsum(1)  # (n, T+1, 2)
    mixing = torch.randn(2, OBS_DIM, generator=g)
    return xy @ mixing, actions


def train(model, obs, actions, reg_weight, steps=150, seq_len=4, batch=32):
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        ep = torch.randint(0, len(obs), (batch, 1), generator=g)
        frames = torch.randint(0, obs.shape[1] - seq_len + 1, (batch, 1), generator=g) + torch.arange(seq_len)
        z, pred_loss, *_ = model(obs[ep, frames], actions[ep, frames[:, :-1]])
        loss = pred_loss + reg_weight * sigreg(z.flatten(0, 1), 64, torch.Generator().manual_seed(0))
        opt.zero_grad()
        loss.backward()
        opt.step()


def one_step_relative_error(model, obs, actions) -> float:
    with torch.no_grad():
        z = model.encode(obs)
        pred = model.predict(z[:, :-1], actions)
        return ((pred - z[:, 1:]).pow(2).sum(-1).mean() / (z[:, :-1] - z[:, 1:]).pow(2).sum(-1).mean()).item()


def test_planner_interface_shapes_pixels():
    model = JEPA(ModelConfig("pixels", (16, 16, 3), A, latent_dim=8, channels=(4, 8), hidden=16))
    assert (model.latent_dim, model.action_dim, model.device) == (8, A, torch.device("cpu"))
    obs = torch.randint(0, 256, (5, 16, 16, 3), dtype=torch.uint8)
    s = model.encode(obs)
    assert s.shape == (5, 8)
    assert model.encode(obs.reshape(1, 5, 16, 16, 3)).shape == (1, 5, 8)   # any leading axes
    assert torch.equal(model.encode(obs[:, None]), s)                       # (N, 1, ...): windows of one frame
    assert model.predict(s, torch.zeros(5, A)).shape == (5, 8)
    assert model.rollout(s, torch.zeros(5, 7, A)).shape == (5, 7, 8)
    assert model.action_low.shape == model.action_high.shape == (A,)
    with pytest.raises(ModelError, match=r"does not end in \(16, 16, 3\)") as err:
        model.encode(torch.zeros(5, 32, 32, 3, dtype=torch.uint8))
    assert not isinstance(err.value, CheckpointError)  # a bad observation is not a checkpoint error


def test_action_normalisation_round_trip_and_bounds():
    model = state_model()
    mean, std = np.array([1.0, 0, 0, -2]), np.array([2.0, 1, 0.5, 4])
    model.set_normalization(mean, std, -np.ones(A), np.ones(A), np.zeros(OBS_DIM), np.ones(OBS_DIM))
    a = torch.randn(3, 5, A)
    assert torch.allclose(model.denormalize_actions(model.normalize_actions(a)), a, atol=1e-6)
    assert torch.allclose(model.action_low, torch.tensor((-1 - mean) / std, dtype=torch.float32))
    assert torch.allclose(model.action_high, torch.tensor((1 - mean) / std, dtype=torch.float32))


def test_rollout_and_open_loop_agree_with_repeated_predict():
    model = state_model()
    torch.nn.init.normal_(model.predictor[-1].weight, std=0.1)   # not the identity it starts as
    s0, actions = torch.randn(3, 8), torch.randn(3, 4, A)
    s, manual = s0, []
    for t in range(4):
        s = model.predict(s, actions[:, t])
        manual.append(s)
    assert torch.allclose(model.rollout(s0, actions), torch.stack(manual, 1), atol=1e-6)
    z = torch.randn(3, 4, 8)
    for k, pred in enumerate(model.open_loop(z, actions), 1):   # k-step predictions from every start t
        for t in range(4 - k + 1):
            assert torch.allclose(pred[:, t], model.rollout(z[:, t], actions[:, t:t + k])[:, -1], atol=1e-5)


def test_targets_get_no_gradient_contexts_do():
    """Stop-gradient: the last frame is only ever a target, so the prediction loss sends it no gradient."""
    model = state_model()
    torch.nn.init.normal_(model.predictor[-1].weight, std=0.1)
    obs = torch.randn(4, 3, OBS_DIM, requires_grad=True)
    _, loss, *_ = model(obs, torch.randn(4, 2, A))
    loss.backward()
    assert obs.grad[:, -1].abs().max() == 0
    assert obs.grad[:, 0].abs().max() > 0 and obs.grad[:, 1].abs().max() > 0
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, name


def test_training_learns_dynamics_far_better_than_constant_baseline():
    obs, actions = linear_episodes()
    model = state_model()
    before = one_step_relative_error(model, obs, actions)
    train(model, obs, actions, reg_weight=0.09, steps=200)
    after = one_step_relative_error(model, obs, actions)
    assert before == pytest.approx(1.0, abs=1e-5)   # a fresh predictor is the identity
    assert after < 0.4, after


def test_sigreg_prevents_the_collapse_of_plain_mse():
    """Plain MSE (stop-gradient targets only) lets the latent concentrate: after 150 steps its std stays ~0.2 and
    its effective rank falls to ~3 of 8 (on raw wall pixels it sat at std ~1e-3). SIGReg holds it near unit std
    and at a higher rank."""
    obs, actions = linear_episodes()
    stds = {}
    for weight in (0.0, 0.09):
        model = state_model()
        train(model, obs, actions, reg_weight=weight)
        with torch.no_grad():
            stds[weight] = latent_health(model.encode(obs).flatten(0, 1))
    plain, regularised = stds[0.0], stds[0.09]
    assert regularised["latent_std_mean"] > 0.5 and regularised["latent_std_mean"] > 3 * plain["latent_std_mean"]
    assert regularised["effective_rank"] > plain["effective_rank"] + 1.5, stds


def test_regularisers_are_small_for_isotropic_gaussian_and_large_for_collapse():
    g = torch.Generator().manual_seed(0)
    gaussian = torch.randn(512, 16, generator=g)
    collapsed = 0.01 * torch.randn(512, 16, generator=g)
    one_direction = torch.randn(512, 1, generator=g) * torch.ones(16) / 4
    for reg in (lambda z: sigreg(z, 64, torch.Generator().manual_seed(0)), vicreg):
        good = reg(gaussian).item()
        assert reg(collapsed).item() > 5 * good + 0.1
        assert reg(one_direction).item() > 5 * good + 0.1


# ---- frame history ------------------------------------------------------------------------------------------------
def history_model(obs_type: str, k: int) -> JEPA:
    torch.manual_seed(0)
    shape = (16, 16, 3) if obs_type == "pixels" else (OBS_DIM,)
    model = JEPA(ModelConfig(obs_type, shape, A, history=k, latent_dim=8, channels=(4, 8), hidden=16))
    mean, std = (np.full(shape, 100.0), np.full(shape, 50.0)) if obs_type == "pixels" else \
        (np.arange(OBS_DIM), np.arange(1, OBS_DIM + 1))
    model.set_normalization(np.zeros(A), np.ones(A), -np.ones(A), np.ones(A), mean, std)
    return model


def raw(obs_type: str, *lead) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    if obs_type == "pixels":
        return torch.randint(0, 256, (*lead, 16, 16, 3), dtype=torch.uint8, generator=g)
    return torch.randn(*lead, OBS_DIM, generator=g)


@pytest.mark.parametrize("obs_type", ["pixels", "state"])
@pytest.mark.parametrize("k", [1, 3])
def test_encode_takes_windows_of_k_frames_normalised_per_frame_then_stacked(obs_type, k):
    model = history_model(obs_type, k)
    windows = raw(obs_type, 5, k)                                           # (N, k, *obs_shape)
    z = model.encode(windows)
    assert z.shape == (5, 8)
    assert model.encode(windows.reshape(1, 5, k, *windows.shape[2:])).shape == (1, 5, 8)
    # known answer: each frame normalised by the single-frame statistics, then concatenated along the last axis
    # (pixels: channels [frame 0 RGB, frame 1 RGB, ...], the oldest first)
    frames = [(windows[:, i].float() - model.obs_mean) / model.obs_std for i in range(k)]
    assert torch.allclose(z, model.encoder(torch.cat(frames, -1)), atol=1e-6)
    oldest_changed = windows.clone()
    oldest_changed[:, 0] = raw(obs_type, 5, 1)[:, 0] // 2 if obs_type == "pixels" else 0
    assert not torch.allclose(model.encode(oldest_changed), z)              # every frame of the window counts
    first_layer = next(model.encoder.parameters())                          # conv (C, 3k, 4, 4) or linear (H, k*d)
    assert first_layer.shape[1] == (3 * k if obs_type == "pixels" else OBS_DIM * k)


@pytest.mark.parametrize("obs_type", ["pixels", "state"])
def test_a_window_of_the_wrong_length_is_a_one_line_error_naming_k(obs_type):
    model = history_model(obs_type, 3)
    for bad in (raw(obs_type, 5, 2), raw(obs_type, 5)):                     # 2 frames; no window axis
        with pytest.raises(ModelError, match="not a window of history k=3 frames") as err:
            model.encode(bad)
        assert "\n" not in str(err.value)
    with pytest.raises(ModelError, match="model.history=0: must be >= 1"):
        ModelConfig("state", (OBS_DIM,), A, history=0)


def test_k1_batch_of_one_is_one_observation_not_a_window():
    """Pins a bug of this change's first version: a k=1 batch of one observation (1, *obs_shape) - the agent's
    last running episode - was read as one window and encoded to (D,), so planning failed on a shape check."""
    model = history_model("state", 1)
    obs = raw("state", 1)
    assert model.encode(obs).shape == (1, 8) and model.encode(obs[0]).shape == (8,)


def test_windows_slide_over_time_and_repeat_the_first_frame_before_an_episode():
    frames = torch.arange(5.0).view(1, 5, 1)                                # one episode, 5 frames, 1-d obs
    assert frame_windows(frames, 2)[0, :, :, 0].tolist() == [[0, 1], [1, 2], [2, 3], [3, 4]]
    assert episode_windows(frames, 3)[0, :, :, 0].tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 2], [1, 2, 3],
                                                              [2, 3, 4]]
    assert torch.equal(episode_windows(frames, 1)[:, :, 0], frames)


def test_history_model_trains_on_sequences_after_their_context_frames():
    model = history_model("state", 2)
    obs = raw("state", 4, 1 + 3)                                            # k-1 context frames + L = 3
    z, loss, *_ = model(obs, torch.randn(4, 2, A))
    assert z.shape == (4, 3, 8) and loss.isfinite()
    assert torch.equal(z, model.encode(frame_windows(obs, 2)))


@pytest.mark.parametrize("env", ["wall", "pointmaze"])
def test_k1_latents_of_shipped_checkpoints_are_bit_identical_to_the_code_before_history(env):
    """Shipped checkpoints have no `history` (k = 1); their latents must not change by a bit. The reference is the
    encoder's forward pass as written before frame history (normalise, NHWC->NCHW, convs, projector)."""
    model, _ = load_checkpoint(PRETRAINED / f"{env}.pt")
    assert model.history == 1
    shape = model.cfg.obs_shape
    g = torch.Generator().manual_seed(0)
    obs = torch.randint(0, 256, (6, *shape), dtype=torch.uint8, generator=g) if len(shape) == 3 else \
        torch.randn(6, *shape, generator=g)
    with torch.no_grad():
        x = (obs.float() - model.obs_mean) / model.obs_std
        enc = model.encoder
        before = enc.projector(enc.convs(x.permute(0, 3, 1, 2)).flatten(1)) if len(shape) == 3 else enc.net(x)
        assert torch.equal(model.embed(obs), before)
        assert torch.equal(model.embed(obs[:, None]), before)               # a window of one frame
        assert torch.equal(model.encode(obs)[:, :before.shape[1]], before)  # pointmaze's reach part follows
        z, *_ = model(obs.view(2, 3, *shape), torch.zeros(2, 2, model.action_dim))
        assert torch.equal(z, before.view(2, 3, -1))                        # training encodes the same


def ensemble_model(K: int, latent_dim=8, seed=0):
    torch.manual_seed(seed)
    model = build_model(ModelConfig("state", (OBS_DIM,), A, latent_dim=latent_dim, hidden=32, action_embed=8,
                                    predictor_hidden=32, ensemble=K))
    model.set_normalization(np.zeros(A), np.ones(A), -np.ones(A), np.ones(A), np.zeros(OBS_DIM), np.ones(OBS_DIM))
    return model


def test_an_ensemble_plans_with_its_members_latents_side_by_side():
    model, single = ensemble_model(3), state_model()
    assert isinstance(model, Ensemble) and model.latent_dim == 24 and len(model.members) == 3
    # member 0 is the single model of the same seed; the others are initialised differently
    for k, v in single.state_dict().items():
        assert torch.equal(model.members[0].state_dict()[k], v), k
    assert not torch.equal(model.members[1].encoder.net[0].weight, model.members[0].encoder.net[0].weight)
    obs, actions = linear_episodes(n=4, T=5)
    actions = actions * 0.5
    with torch.no_grad():
        z = model.encode(obs)                                                          # (4, 6, 24)
        assert torch.equal(z, torch.cat([m.encode(obs) for m in model.members], -1))
        s, a = z[:, 0], actions[:, 0]
        assert torch.equal(model.predict(s, a), torch.cat([m.predict(s[:, 8 * i:8 * (i + 1)], a)
                                                           for i, m in enumerate(model.members)], -1))
        assert torch.allclose(model.rollout(s, actions)[:, 1], model.predict(model.predict(s, a), actions[:, 1]),
                              atol=1e-5)
        for k, pred in enumerate(model.open_loop(z[:, :-1], actions), 1):
            assert pred.shape == (4, 6 - k, 24)
            assert torch.allclose(pred[:, 0], model.rollout(z[:, 0], actions)[:, k - 1], atol=1e-5)
        z_seq, loss, *_ = model(obs, actions)
        assert torch.allclose(loss, sum(m(obs, actions)[1] for m in model.members))
    assert torch.equal(model.action_low, model.members[0].action_low)
    with pytest.raises(ModelError, match="model.ensemble=0: must be >= 1"):
        ModelConfig("state", (OBS_DIM,), A, ensemble=0)
    with pytest.raises(ModelError, match="build_model"):
        JEPA(ModelConfig("state", (OBS_DIM,), A, ensemble=2))


def test_an_ensemble_checkpoint_round_trips(tmp_path):
    model = ensemble_model(2)
    save_checkpoint(tmp_path / "m.pt", model, {"env": {"name": "wall", "obs_type": "state"}})
    loaded, _ = load_checkpoint(tmp_path / "m.pt")
    assert isinstance(loaded, Ensemble) and loaded.cfg == model.cfg
    obs = linear_episodes(n=2, T=1)[0]
    assert torch.equal(loaded.encode(obs), model.encode(obs))


def reach_model(reach_dim=3, ensemble=1, seed=0):
    torch.manual_seed(seed)
    model = build_model(ModelConfig("state", (OBS_DIM,), A, latent_dim=8, hidden=32, action_embed=8,
                                    predictor_hidden=32, ensemble=ensemble, reach_dim=reach_dim, reach_scale=2.0))
    model.set_normalization(np.zeros(A), np.ones(A), -np.ones(A), np.ones(A), np.zeros(OBS_DIM), np.ones(OBS_DIM))
    return model


def test_a_reach_head_appends_its_scaled_embedding_to_the_planners_latent():
    model, plain = reach_model(), state_model()
    assert model.latent_dim == 8 + 3 and model.cfg.latent_dim == 8
    for k, v in plain.state_dict().items():                  # the head is built last: the JEPA's weights are unchanged
        assert torch.equal(model.state_dict()[k], v), k
    torch.nn.init.normal_(model.predictor[-1].weight, std=0.1)
    obs, actions = linear_episodes(n=4, T=5)
    with torch.no_grad():
        z = model.embed(obs)                                                             # (4, 6, 8)
        s = model.encode(obs)                                                            # (4, 6, 11)
        assert torch.equal(s, torch.cat([z, 2.0 * model.reach(z)], -1))
        step = model.step(z[:, 0], actions[:, 0])
        assert torch.equal(model.predict(s[:, 0], actions[:, 0]), torch.cat([step, 2.0 * model.reach(step)], -1))
        moved = s[:, 0].clone()
        moved[:, 8:] += 5.0                                   # F reads only the JEPA part of a free latent
        assert torch.equal(model.predict(moved, actions[:, 0]), model.predict(s[:, 0], actions[:, 0]))
        traj = model.rollout(s[:, 0], actions)                                           # (4, 5, 11)
        assert traj.shape == (4, 5, 11)
        assert torch.allclose(traj[:, 1], model.predict(model.predict(s[:, 0], actions[:, 0]), actions[:, 1]),
                              atol=1e-5)
        for k, pred in enumerate(model.open_loop(s[:, :-1], actions), 1):
            assert pred.shape == (4, 6 - k, 11)
            assert torch.allclose(pred[:, 0], traj[:, k - 1], atol=1e-5)
        z_train, pred_loss, reach_loss, _ = model(obs, actions)
        assert torch.equal(z_train, z) and reach_loss.isfinite()
        assert torch.equal(pred_loss, plain_loss(model, obs, actions))
    ensemble = reach_model(ensemble=2)
    assert ensemble.latent_dim == 2 * 11
    with torch.no_grad():
        assert torch.equal(ensemble.encode(obs), torch.cat([m.encode(obs) for m in ensemble.members], -1))
    assert state_model().reach is None and state_model()(obs, actions)[2].item() == 0
    with pytest.raises(ModelError, match="model.reach_dim=-1"):
        ModelConfig("state", (OBS_DIM,), A, reach_dim=-1)


def plain_loss(model, obs, actions):
    """The prediction loss of the same weights without the head."""
    plain = JEPA(ModelConfig(**{**model.cfg.to_dict(), "reach_dim": 0}))
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("reach.")})
    return plain(obs, actions)[1]


def test_the_reach_head_learns_step_counts_where_the_latent_folds_a_path():
    """Known answer: 16 states on a path folded into a U, so its two ends are 0.5 apart in z but 15 steps apart
    along it. Trained on walks along the path, the head's distance between the ends approaches the step count,
    and neighbours stay within one step."""
    torch.manual_seed(0)
    model = JEPA(ModelConfig("state", (OBS_DIM,), A, latent_dim=2, hidden=64, reach_dim=4))
    arm = torch.arange(8.0)
    path = torch.cat([torch.stack([arm, torch.zeros(8)], -1), torch.stack([arm.flip(0), torch.full((8,), 0.5)], -1)])
    walks = torch.stack([path[i:i + 4] for i in range(13)] + [path.flip(0)[i:i + 4] for i in range(13)])  # (26, 4, 2)
    optimizer = torch.optim.Adam(model.reach.parameters(), lr=3e-3)
    for _ in range(1500):
        loss = model.reach_loss(walks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        h = model.reach(path)
    steps = (h[1:] - h[:-1]).norm(dim=-1)
    assert steps.max() < 1.1
    assert (h[0] - h[-1]).norm() > 12        # 15 steps apart; z puts the ends 0.5 apart, nearer than neighbours
    assert (path[0] - path[-1]).norm() < (path[0] - path[1]).norm()


def test_the_jepa_trains_the_same_with_a_reach_head():
    """The head reads detached latents and has its own gradient clip: with a binding clip, the JEPA's weights after
    some steps equal those of the same run without a head, bit for bit."""
    from worldmodels.training import TrainConfig, train_step
    tc = TrainConfig(steps=5, batch_size=4, seq_len=3, lr=1e-2, warmup=0, weight_decay=0.0, grad_clip=1e-3,
                     regularizer="sigreg", reg_weight=0.1, state_weight=1.0, sigreg_projections=8, eval_episodes=1,
                     ckpt_every=5, eval_every=5, log_every=5)
    obs, actions = linear_episodes(n=4, T=2)
    runs = []
    for reach_dim in (0, 3):
        model = reach_model(reach_dim)
        optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr)
        for step in range(5):
            losses, _ = train_step(model, model, optimizer, tc, obs, actions, seed=0, step=step)
        runs.append((model, losses))
    (plain, plain_losses), (with_head, head_losses) = runs
    assert plain_losses.reach_loss.item() == 0 and head_losses.reach_loss.item() != 0
    assert torch.equal(plain_losses.loss, head_losses.loss)
    for k, v in plain.state_dict().items():
        assert torch.equal(with_head.state_dict()[k], v), k


def test_a_reach_checkpoint_round_trips(tmp_path):
    model = reach_model()
    save_checkpoint(tmp_path / "m.pt", model, {"env": {"name": "wall", "obs_type": "state"}})
    loaded, _ = load_checkpoint(tmp_path / "m.pt")
    assert loaded.cfg == model.cfg and loaded.latent_dim == 11
    obs = linear_episodes(n=2, T=1)[0]
    assert torch.equal(loaded.encode(obs), model.encode(obs))


def proprio_model(index=(0, 1, 2), angles=(1,), seed=0) -> JEPA:
    """A tiny pixel JEPA that also reads state columns 0-2 (column 1 an angle) of 4-column env states."""
    torch.manual_seed(seed)
    return JEPA(ModelConfig("pixels", (16, 16, 3), A, latent_dim=8, channels=(4, 8), hidden=16, action_embed=8,
                            predictor_hidden=16, proprio_index=index, proprio_angles=angles)).eval()


def pixels_and_states(n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, 16, 16, 3), dtype=torch.uint8, generator=g),
            torch.randn(n, 4, generator=g, dtype=torch.float64))


def test_proprioception_adds_its_mlp_to_the_pixel_latent_with_angles_as_cos_sin():
    model = proprio_model()
    fit = torch.randn(200, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model.set_state_normalization(fit)
    features = lambda s: torch.stack([s[:, 0], s[:, 2], s[:, 1].cos(), s[:, 1].sin()], -1).float()  # noqa: E731
    torch.testing.assert_close(model.proprio_mean, features(fit).mean(0))
    torch.testing.assert_close(model.proprio_std, features(fit).std(0))   # all above the floor here
    obs, states = pixels_and_states()
    z = model.embed(obs, states)
    pixels = model.encoder((obs.float() - model.obs_mean) / model.obs_std)
    torch.testing.assert_close(z, pixels + model.proprio((features(states) - model.proprio_mean) / model.proprio_std))
    turned, unread, moved = states.clone(), states.clone(), states.clone()
    turned[:, 1] += 2 * np.pi   # the same angle a turn later
    unread[:, 3] += 5.0         # a column the model does not read
    moved[:, 2] += 1.0
    torch.testing.assert_close(model.embed(obs, turned), z, rtol=0, atol=1e-5)
    assert torch.equal(model.embed(obs, unread), z) and not torch.allclose(model.embed(obs, moved), z)


def test_proprio_inputs_are_checked_and_a_plain_model_is_the_same_model_without_them():
    model, (obs, states) = proprio_model(), pixels_and_states()
    with pytest.raises(ModelError, match=r"reads proprioception \(model.proprio\).*\(5, S\); got none$"):
        model.encode(obs)
    with pytest.raises(ModelError, match=r"got shape \(3, 4\)$"):
        model.encode(obs, states[:3])
    with pytest.raises(ModelError, match="lack column 2 of model.proprio"):
        model.encode(obs, states[:, :2])
    plain = proprio_model(index=(), angles=())
    assert plain.proprio is None and torch.equal(plain.encode(obs), plain.encode(obs, states))
    weights = dict(model.named_parameters())  # the same seed: everything but the proprio MLP is the plain model's
    for name, p in plain.named_parameters():
        assert torch.equal(p, weights[name]), name
    with pytest.raises(ModelError, match="beside pixels"):
        ModelConfig("state", (OBS_DIM,), A, proprio_index=(0,))
    with pytest.raises(ModelError, match=r"proprio_angles \(3,\) must be among proprio_index \(0, 1\)"):
        ModelConfig("pixels", (16, 16, 3), A, channels=(4, 8), proprio_index=(0, 1), proprio_angles=(3,))


def test_a_proprio_checkpoint_round_trips(tmp_path):
    model, (obs, states) = proprio_model(), pixels_and_states()
    model.set_state_normalization(states)
    save_checkpoint(tmp_path / "m.pt", model, {"env": {"name": "reacher", "obs_type": "pixels"}})
    loaded, _ = load_checkpoint(tmp_path / "m.pt")
    assert loaded.cfg == model.cfg and loaded.cfg.proprio_dim == 4
    assert torch.equal(loaded.encode(obs, states), model.encode(obs, states))


def state_target_model(index=(1,), angles=(1,), seed=0) -> JEPA:
    """A tiny state JEPA with a state head for column 1 (an angle) of 2-column env states."""
    torch.manual_seed(seed)
    model = JEPA(ModelConfig("state", (OBS_DIM,), A, latent_dim=8, hidden=32, action_embed=8, predictor_hidden=32,
                             state_target_index=index, state_target_angles=angles))
    model.set_normalization(np.zeros(A), np.ones(A), -np.ones(A), np.ones(A), np.zeros(OBS_DIM), np.ones(OBS_DIM))
    return model


def test_a_state_head_trains_the_latent_to_hold_what_a_plain_jepa_leaves_nonlinear():
    """Known answer: the observations hold x linearly; the target, the wrapping angle 4x / std(x) as (cos, sin), is
    nonlinear in them. After the same training, a linear fit reads it from held-out latents of the model with the
    state head, not from the plain JEPA's."""
    from worldmodels.training import TrainConfig, train_step
    tc = TrainConfig(steps=300, batch_size=64, seq_len=9, lr=3e-3, warmup=0, weight_decay=0.0, grad_clip=1.0,
                     regularizer="sigreg", reg_weight=0.1, state_weight=1.0, sigreg_projections=16, eval_episodes=1,
                     ckpt_every=300, eval_every=300, log_every=300)
    obs, actions = linear_episodes(n=96, T=8)
    angle = 4 * obs[..., :1] / obs[..., 0].std()
    states = torch.cat([obs[..., :1], angle], -1)                           # (96, 9, 2): x, then the angle
    target = torch.cat([angle.cos(), angle.sin()], -1)[64:].flatten(0, 1)  # held out: (32 * 9, 2)
    r2 = {}
    for index in ((), (1,)):
        model = state_target_model(index=index, angles=index)
        model.set_state_normalization(states[:64].flatten(0, 1))
        optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr)
        for step in range(tc.steps):
            train_step(model, model, optimizer, tc, obs[:64], actions[:64], seed=0, step=step, states=states[:64])
        with torch.no_grad():
            z = model.encode(obs[64:]).flatten(0, 1)                      # (32 * 9, D)
        design = torch.cat([z, torch.ones(len(z), 1)], -1)
        fit = design @ torch.linalg.lstsq(design, target).solution
        r2[index] = 1 - float((fit - target).square().sum() / (target - target.mean(0)).square().sum())
    assert r2[(1,)] > 0.7 and r2[()] < 0.5, r2   # measured: 0.77 and 0.39


def test_the_state_head_reads_z_linearly_against_z_scored_targets_and_its_gradient_reaches_the_encoder():
    model, (obs, actions) = state_target_model(), linear_episodes(n=4, T=2)
    states = torch.randn(4, 3, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model.set_state_normalization(states.flatten(0, 1))
    targets = torch.stack([states[..., 1].cos(), states[..., 1].sin()], -1).float()   # (4, 3, 2): cos, sin
    torch.testing.assert_close(model.state_target_mean, targets.flatten(0, 1).mean(0))
    torch.testing.assert_close(model.state_target_std, targets.flatten(0, 1).std(0))
    z, pred_loss, reach_loss, state_loss = model(obs, model.normalize_actions(actions), states)
    expected = (model.state_head(z) - (targets - model.state_target_mean) / model.state_target_std).square().mean()
    torch.testing.assert_close(state_loss, expected)
    turned = states.clone()
    turned[..., 1] += 2 * np.pi   # the same angle a turn later
    torch.testing.assert_close(model(obs, model.normalize_actions(actions), turned)[3], state_loss)
    state_loss.backward()
    assert model.encoder.net[0].weight.grad.abs().sum() > 0 and model.predictor[0].weight.grad is None
    with pytest.raises(ModelError, match=r"model.state_targets\): pass the env states of the frames$"):
        model(obs, model.normalize_actions(actions))
    with pytest.raises(ModelError, match="lack column 1 of model.state_targets"):
        model(obs, model.normalize_actions(actions), states[..., :1])
    plain = state_target_model(index=(), angles=())
    assert plain.state_head is None and plain(obs, actions)[3].item() == 0
    weights = dict(model.named_parameters())  # the same seed: everything but the state head is the plain model's
    for name, p in plain.named_parameters():
        assert torch.equal(p, weights[name]), name
    assert torch.equal(model.encode(obs), plain.encode(obs))   # planning never reads the head
    with pytest.raises(ModelError, match=r"state_target_angles \(3,\) must be among state_target_index \(0, 1\)"):
        ModelConfig("state", (OBS_DIM,), A, state_target_index=(0, 1), state_target_angles=(3,))
