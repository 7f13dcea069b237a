"""A JEPA world model: encoder E(obs) -> s (D,), Markov predictor F(s, a) -> s', no decoder.

The surface planners and the MPC agent use (duck-typed; see planners/base.py): `latent_dim`, `action_dim`,
`encode`, `predict`, `rollout`, `normalize_actions`, `denormalize_actions`, `action_low`, `action_high`, `device`;
the agent also reads `history`.

Frame history: the encoder sees a window of the last k = `history` observations (oldest first), stacked along the
channels for pixels (3k input channels) and concatenated for state, so velocity can be in the latent while the
planner still gets one latent per step and F(s, a) stays Markov. A window reaching before an episode's first frame
repeats that frame, in training (`episode_windows`, `Episodes.batch`) and in the agent at reset alike. k = 1 is
the model without history, bit for bit.

Training (worldmodels/training.py) calls `forward(obs, actions, states)`: every frame of a short sequence is
encoded, and from every frame the predictor rolls open loop to the end of the sequence; the loss is the MSE of all
those predictions against the encoded later frames under stop-gradient (without it the latent collapses to a few
directions). The anti-collapse regulariser (worldmodels/regularizers.py) is applied to the latents outside
`forward`, so that under DDP it can see the global batch.

Reachability embedding (`model.reach_dim` = P > 0): the JEPA latent z need not rank how far apart two states are for
the agent. On PointMaze it does not: at rest, the two ends of the U (six cells apart by the route round the wall)
are nearer in the JEPA latent than neighbouring cells (benchmarks/pointmaze_study.py's last table), so a plan
pressed against the wall scores as well as the detour. A head h(z) -> (P,) is trained beside the JEPA, on detached
latents, to the symmetric form of quasimetric RL's objective (Wang et al. 2023): every data transition one planner
step apart must stay within 1 (||h(z_t) - h(z_{t+1})|| <= 1, a squared-hinge penalty of weight REACH_PENALTY), and
subject to that every pair of latents in the batch is pushed apart (-log(1 + ||h(z_i) - h(z_j)||)). The largest
distances the constraints allow are the shortest chains of transitions between the states, so ||h(z_i) - h(z_j)||
approximates the number of planner steps from one to the other (as the data's transitions chain them: never fewer
than the env needs). The planner's latent is then [z, reach_scale * h(z)] (D + P); F predicts z and the head maps
the prediction, so F stays Markov on the planner's latent and a plan's cost is the JEPA distance plus reach_scale^2
times the squared step distance. The JEPA trains exactly as without the head (detached inputs, its own gradient
clip).

Ensembles (`model.ensemble` = K > 1, `Ensemble`): K JEPAs with their own weights, initialised differently and
trained on the same batches. The planner's latent is their K latents side by side (K * D), so its cost is the sum
of the members' squared distances to their goal latents: a plan must reach the goal in every member. Where the data
say little, the members' prediction errors differ, and a plan that exploits one member's errors is costed by the
others (on Push-T, GRASP's plans are predicted to end far closer to the goal than they do: README, study table).

Proprioception beside pixels (`model.proprio`: state variables of the env, e.g. reacher's joint angles, as DINO-WM
feeds the agent's own state): a pixel model may also read those columns of the env's state at the newest frame of
each window. Angles enter as (cos, sin), everything is z-scored by the training states' statistics, and a small
MLP's output is added to the pixel encoder's: z = E(pixels) + P(proprio). The planner and the predictor do not
change; whoever encodes (training, the agent, probes) passes the env states beside the frames.

State targets (`model.state_targets`: env state variables, e.g. Push-T's block pose): a linear head reads the JEPA
latent z of every training frame and is trained to those variables (z-scored by the training states, angles as
(cos, sin)), with weight `train.state_weight` beside the prediction loss. Its gradient reaches the encoder, so z is
made to hold them linearly where the JEPA objective alone leaves them out (on Push-T's pixels, the block's angle).
The head is read in training only: encode, predict and the planner never use it, and it needs the env's states as
labels.

Normalisation lives in buffers, so a checkpoint carries it: actions are z-scored by the dataset's mean/std, and
`action_low/high` are the env's native bounds in those units. Observations are z-scored per element (per pixel
and channel for images) by the dataset's mean/std. For pixels this matters: a small agent on a fixed background
changes few pixels, so on raw [0, 1] images a fresh encoder maps every frame to nearly the same latent (std
~1e-3), where SIGReg's gradient (proportional to the latent) vanishes and training stays collapsed; per-pixel
z-scoring makes the moving parts dominate the input (latent std ~0.05 at init, ~1 after 20 steps). The std
is floored (PIXEL_STD_FLOOR, in uint8 units) so a pixel that almost never changes is not blown up.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

OBS_TYPES = ("pixels", "state")
PIXEL_STD_FLOOR, STATE_STD_FLOOR = 8.0, 1e-6
STATE_FEATURE_STD_FLOOR = 1e-2  # a proprio feature or state target (cos, sin, column) barely varying: not blown up
REACH_PENALTY = 100.0  # weight of the reach head's one-step constraint (squared hinge) against its spreading term


class ModelError(ValueError):
    """A bad model setting (ModelConfig) or a bad input to a model, e.g. an observation of the wrong shape; the
    message is one line for the user. Bad checkpoint files raise its subclass `worldmodels.CheckpointError`."""


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a JEPA. `obs_shape` is (S, S, 3) for pixels (S divisible by 16) or (state_obs_dim,) for state;
    `action_dim` is the planner action size (action_block * env action_dim)."""

    obs_type: str
    obs_shape: tuple[int, ...]
    action_dim: int
    history: int = 1                                # k: observations per encoder input (1 = no history)
    latent_dim: int = 64
    channels: tuple[int, ...] = (16, 32, 32, 32)   # conv encoder, each layer halves the image
    hidden: int = 256                               # state-encoder MLP and projector width
    action_embed: int = 64
    predictor_hidden: int = 512
    predictor_layers: int = 3
    ensemble: int = 1                               # K members (1: a single JEPA), see `Ensemble`
    reach_dim: int = 0                              # P: reachability embedding appended to the latent (0: none)
    reach_scale: float = 3.0                        # its weight in the planner's latent, [z, reach_scale * h(z)]
    proprio_index: tuple[int, ...] = ()             # env-state columns read beside pixels (empty: none)
    proprio_angles: tuple[int, ...] = ()            # those of them that are angles (read as cos, sin)
    state_target_index: tuple[int, ...] = ()        # env-state columns the latent is trained to hold (empty: none)
    state_target_angles: tuple[int, ...] = ()       # those of them that are angles (targets cos, sin)

    def __post_init__(self):
        object.__setattr__(self, "obs_shape", tuple(int(n) for n in self.obs_shape))
        object.__setattr__(self, "channels", tuple(int(n) for n in self.channels))
        for key in ("proprio_index", "proprio_angles", "state_target_index", "state_target_angles"):
            object.__setattr__(self, key, tuple(int(n) for n in getattr(self, key)))
        if self.obs_type not in OBS_TYPES:
            raise ModelError(f"unknown obs_type {self.obs_type!r}; choose one of: {', '.join(OBS_TYPES)}")
        if self.obs_type == "pixels":
            size = self.obs_shape[0]
            down = 2 ** len(self.channels)
            if len(self.obs_shape) != 3 or self.obs_shape != (size, size, 3) or size % down or not self.channels:
                raise ModelError(f"pixel obs_shape {self.obs_shape}: expected (S, S, 3) with S divisible by "
                                 f"2**len(channels) = {down}")
        elif len(self.obs_shape) != 1:
            raise ModelError(f"state obs_shape {self.obs_shape}: expected (state_obs_dim,)")
        for key in ("action_dim", "history", "latent_dim", "hidden", "action_embed", "predictor_hidden", "ensemble"):
            if getattr(self, key) < 1:
                raise ModelError(f"model.{key}={getattr(self, key)}: must be >= 1")
        if self.reach_dim < 0 or not self.reach_scale > 0:
            raise ModelError(f"model.reach_dim={self.reach_dim}, model.reach_scale={self.reach_scale}: need "
                             f"reach_dim >= 0 (0: no reachability embedding) and reach_scale > 0")
        if self.predictor_layers < 2:
            raise ModelError(f"model.predictor_layers={self.predictor_layers}: must be >= 2")
        if self.proprio_index and self.obs_type != "pixels":
            raise ModelError("model.proprio: proprioception is read beside pixels; a state model already sees it")
        for name in ("proprio", "state_target"):
            index, angles = getattr(self, f"{name}_index"), getattr(self, f"{name}_angles")
            if not set(angles) <= set(index) or min(index, default=0) < 0:
                raise ModelError(f"{name}_angles {angles} must be among {name}_index {index} (state columns >= 0)")

    @property
    def proprio_dim(self) -> int:
        """Features the proprioception MLP reads: one per column, two (cos, sin) per angle."""
        return len(self.proprio_index) + len(self.proprio_angles)

    @property
    def state_target_dim(self) -> int:
        """Targets the state head predicts: one per column, two (cos, sin) per angle."""
        return len(self.state_target_index) + len(self.state_target_angles)

    def to_dict(self) -> dict:
        """Plain lists and numbers only, so a checkpoint loads with torch.load(weights_only=True)."""
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


def state_features(states: torch.Tensor, index: tuple[int, ...], angles: tuple[int, ...], key: str) -> torch.Tensor:
    """Env states (..., S) -> their `index` columns (..., len(index) + len(angles)): the values of the columns that
    are not `angles`, then the cos and sin of those that are. `key` names the setting in an error."""
    if states.shape[-1] <= max(index):
        raise ModelError(f"env states of shape {tuple(states.shape)} lack column {max(index)} of {key} "
                         f"(columns {list(index)})")
    states = states.float()
    values = states[..., [i for i in index if i not in angles]]
    return torch.cat([values, states[..., list(angles)].cos(), states[..., list(angles)].sin()], -1)


def frame_windows(frames: torch.Tensor, k: int) -> torch.Tensor:
    """Sliding windows of k frames along time: (B, T+k-1, *obs_shape) -> (B, T, k, *obs_shape), oldest first
    (a view, no copy)."""
    return frames.unfold(1, k, 1).movedim(-1, 2)


def episode_windows(frames: torch.Tensor, k: int) -> torch.Tensor:
    """Every frame's window of the last k frames of its episode: (B, T, *obs_shape) -> (B, T, k, *obs_shape);
    frames before the first one repeat it, as the agent's window at reset does (a view of a padded copy)."""
    first = frames[:, :1].expand(-1, k - 1, *frames.shape[2:])
    return frame_windows(torch.cat([first, frames], 1), k)


class PixelEncoder(nn.Module):
    """Strided convs (each halves the image) -> flatten -> projector MLP -> D."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        convs, c_in = [], 3 * cfg.history
        for c_out in cfg.channels:
            convs += [nn.Conv2d(c_in, c_out, kernel_size=4, stride=2, padding=1), nn.GELU()]
            c_in = c_out
        self.convs = nn.Sequential(*convs)
        side = cfg.obs_shape[0] // 2 ** len(cfg.channels)
        self.projector = nn.Sequential(nn.Linear(c_in * side * side, cfg.hidden), nn.LayerNorm(cfg.hidden),
                                       nn.GELU(), nn.Linear(cfg.hidden, cfg.latent_dim))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised images with the window's frames stacked along the channels (N, S, S, 3k) -> (N, D)."""
        return self.projector(self.convs(pixels.permute(0, 3, 1, 2)).flatten(1))


class StateEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cfg.obs_shape[0] * cfg.history, cfg.hidden), nn.GELU(),
                                 nn.Linear(cfg.hidden, cfg.hidden), nn.LayerNorm(cfg.hidden), nn.GELU(),
                                 nn.Linear(cfg.hidden, cfg.latent_dim))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Normalised windows, frames concatenated (N, k * state_obs_dim) -> (N, D)."""
        return self.net(obs)


def build_model(cfg: ModelConfig) -> JEPA | Ensemble:
    """A fresh model for `cfg`: one JEPA, or an `Ensemble` of `cfg.ensemble` of them (drawn in turn from torch's
    global RNG, so member 0 has the weights a single JEPA would get from the same seed)."""
    return JEPA(cfg) if cfg.ensemble == 1 else Ensemble(cfg)


class JEPA(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.ensemble != 1:
            raise ModelError(f"JEPA is one model; model.ensemble={cfg.ensemble} is built by build_model")
        self.cfg = cfg
        # the planner's latent: the JEPA's D dimensions, then the reach embedding's P
        self.latent_dim, self.action_dim, self.history = cfg.latent_dim + cfg.reach_dim, cfg.action_dim, cfg.history
        self.encoder = PixelEncoder(cfg) if cfg.obs_type == "pixels" else StateEncoder(cfg)
        self.action_encoder = mlp([cfg.action_dim, cfg.action_embed, cfg.action_embed])
        hidden = [cfg.predictor_hidden] * (cfg.predictor_layers - 1)
        self.predictor = mlp([cfg.latent_dim + cfg.action_embed, *hidden, cfg.latent_dim])
        # the residual branch starts at zero: an untrained predictor is the identity (the constant baseline)
        nn.init.zeros_(self.predictor[-1].weight)
        nn.init.zeros_(self.predictor[-1].bias)
        # built after the encoder and predictor, so their weights are those a pixels-only model gets from the seed
        self.proprio = mlp([cfg.proprio_dim, cfg.hidden, cfg.latent_dim]) if cfg.proprio_index else None
        if self.proprio is not None:
            self.register_buffer("proprio_mean", torch.zeros(cfg.proprio_dim))
            self.register_buffer("proprio_std", torch.ones(cfg.proprio_dim))
        # built last, so the JEPA's weights are those it gets without a head from the same seed
        self.reach = mlp([cfg.latent_dim, cfg.hidden, cfg.hidden, cfg.reach_dim]) if cfg.reach_dim else None
        # after the reach head, for the same reason; linear, so the targets must be linear in z (and in its distance)
        self.state_head = nn.Linear(cfg.latent_dim, cfg.state_target_dim) if cfg.state_target_index else None
        if self.state_head is not None:
            self.register_buffer("state_target_mean", torch.zeros(cfg.state_target_dim))
            self.register_buffer("state_target_std", torch.ones(cfg.state_target_dim))
        A = cfg.action_dim
        self.register_buffer("action_mean", torch.zeros(A))
        self.register_buffer("action_std", torch.ones(A))
        self.register_buffer("action_low", torch.full((A,), -float("inf")))
        self.register_buffer("action_high", torch.full((A,), float("inf")))
        self.register_buffer("obs_mean", torch.zeros(cfg.obs_shape))
        self.register_buffer("obs_std", torch.ones(cfg.obs_shape))

    @torch.no_grad()
    def set_normalization(self, action_mean, action_std, native_low, native_high, obs_mean, obs_std):
        """Dataset action stats (A,), the env's native action bounds (A,) and observation stats (obs_shape)."""
        def as_buffer(x, like: torch.Tensor) -> torch.Tensor:
            return torch.as_tensor(x, dtype=like.dtype).to(like.device)

        self.action_mean.copy_(as_buffer(action_mean, self.action_mean))
        self.action_std.copy_(as_buffer(action_std, self.action_std))
        self.action_low.copy_(self.normalize_actions(as_buffer(native_low, self.action_low)))
        self.action_high.copy_(self.normalize_actions(as_buffer(native_high, self.action_high)))
        floor = PIXEL_STD_FLOOR if self.cfg.obs_type == "pixels" else STATE_STD_FLOOR
        self.obs_mean.copy_(as_buffer(obs_mean, self.obs_mean))
        self.obs_std.copy_(as_buffer(obs_std, self.obs_std).clamp_min(floor))

    @torch.no_grad()
    def set_state_normalization(self, states: torch.Tensor) -> None:
        """z-scoring of the proprioception features and of the state head's targets from env states (N, S) of the
        training frames."""
        if self.proprio is not None:
            features = self._proprio_features(states.to(self.device))
            self.proprio_mean.copy_(features.mean(0))
            self.proprio_std.copy_(features.std(0).clamp_min(STATE_FEATURE_STD_FLOOR))
        if self.state_head is not None:
            targets = self._state_targets(states.to(self.device))
            self.state_target_mean.copy_(targets.mean(0))
            self.state_target_std.copy_(targets.std(0).clamp_min(STATE_FEATURE_STD_FLOOR))

    def _proprio_features(self, states: torch.Tensor) -> torch.Tensor:
        return state_features(states, self.cfg.proprio_index, self.cfg.proprio_angles, "model.proprio")

    def _state_targets(self, states: torch.Tensor) -> torch.Tensor:
        return state_features(states, self.cfg.state_target_index, self.cfg.state_target_angles, "model.state_targets")

    @property
    def device(self) -> torch.device:
        return self.action_mean.device

    @property
    def members(self) -> tuple[JEPA, ...]:
        """The models that share no weights (trained, clipped and regularised each on its own): this one."""
        return (self,)

    def normalize_actions(self, a: torch.Tensor) -> torch.Tensor:
        return (a - self.action_mean) / self.action_std

    def denormalize_actions(self, a: torch.Tensor) -> torch.Tensor:
        return a * self.action_std + self.action_mean

    @property
    def jepa_parameters(self) -> list[nn.Parameter]:
        """Every parameter but the reach head's (each group gets its own gradient clip)."""
        return [p for name, p in self.named_parameters() if not name.startswith("reach.")]

    def encode(self, obs: torch.Tensor, states: torch.Tensor | None = None) -> torch.Tensor:
        """Planner latents [z, reach_scale * h(z)] (N, ..., D + P) of observations (see `embed`)."""
        return self.with_reach(self.embed(obs, states))

    def with_reach(self, z: torch.Tensor) -> torch.Tensor:
        """JEPA latents (..., D) -> planner latents (..., D + P): z itself without a reach head."""
        return z if self.reach is None else torch.cat([z, self.cfg.reach_scale * self.reach(z)], -1)

    def embed(self, obs: torch.Tensor, states: torch.Tensor | None = None) -> torch.Tensor:
        """Windows of the last k = `history` raw env observations, oldest first, (N, ..., k, S, S, 3) uint8 or
        (N, ..., k, state_obs_dim) float -> JEPA latents z (N, ..., D). A k = 1 model also takes single observations
        with no window axis, (..., S, S, 3) or (..., state_obs_dim), as before frame history existed. Normalisation
        statistics are per frame: each frame is normalised, then the window is stacked. A model with
        proprioception also needs `states`, the env states (N, ..., S) of each window's newest frame."""
        shape, k = self.cfg.obs_shape, self.history
        if tuple(obs.shape[obs.dim() - len(shape):]) != shape:
            raise ModelError(f"encode: observation shape {tuple(obs.shape)} does not end in {shape} "
                             f"({self.cfg.obs_type} model)")
        # the window axis comes after at least one batch axis: a k = 1 batch of one, (1, *shape), is frames
        window = obs.shape[-len(shape) - 1] if obs.dim() >= len(shape) + 2 else None
        if k == 1 and window != 1:
            obs = obs.unsqueeze(-len(shape) - 1)           # single observations: windows of one frame
        elif window != k:
            raise ModelError(f"encode: observation shape {tuple(obs.shape)} is not a window of history k={k} "
                             f"frames; expected (N, ..., {k}, {', '.join(map(str, shape))})")
        lead = obs.shape[:obs.dim() - len(shape) - 1]
        if self.proprio is not None and (states is None or tuple(states.shape[:-1]) != tuple(lead)):
            got = "none" if states is None else f"shape {tuple(states.shape)}"
            raise ModelError(f"encode: this model reads proprioception (model.proprio): pass the env states of the "
                             f"windows' newest frames, shape ({', '.join(map(str, lead))}, S); got {got}")
        obs = (obs.reshape(-1, k, *shape).to(self.device).float() - self.obs_mean) / self.obs_std  # (N, k, *shape)
        stacked = obs.movedim(1, -2).flatten(-2)           # frames along the last axis: (N, S, S, 3k) or (N, k*d)
        z = self.encoder(stacked).reshape(*lead, self.cfg.latent_dim)
        if self.proprio is None:
            return z
        features = (self._proprio_features(states.to(self.device)) - self.proprio_mean) / self.proprio_std
        return z + self.proprio(features)

    def step(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """F on JEPA latents: z (..., D), normalised actions (..., A) -> (..., D)."""
        return z + self.predictor(torch.cat([z, self.action_encoder(a)], dim=-1))

    def predict(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """One step on free planner latents (..., D + P) with normalised actions (..., A) -> (..., D + P): F moves
        the JEPA part; a reach part is the head's image of the prediction (the input's reach part is not read)."""
        return self.with_reach(self.step(s[..., :self.cfg.latent_dim], a))

    def rollout(self, s0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Serial, differentiable: s0 (B, D + P), actions (B, T, A) normalised -> s_1..s_T (B, T, D + P).

        Repeated `predict` (equal up to float rounding), but everything that does not depend on the state runs once
        for all T steps before the loop: the action encoder and the action half of the predictor's first layer
        (its weight split as [W_s | W_a]), so a step is one addmm on the state plus the rest of the predictor.
        Indexing act[:, t] per step would make backward write T full-size zero-padded gradients.
        Planners' syncs and shooting GD spend most of their time in this loop."""
        D = self.cfg.latent_dim
        first, *rest = [m for m in self.predictor if isinstance(m, nn.Linear)]  # mlp(): Linear (GELU Linear)*
        act = F.linear(self.action_encoder(actions), first.weight[:, D:], first.bias)  # (B, T, hidden)
        w_state = first.weight[:, :D].t()
        states, s = [], s0[:, :D]
        for act_t in act.unbind(1):  # unbind: ONE backward node for all steps (act[:, t] would make T of them)
            h = torch.addmm(act_t, s, w_state)
            for layer in rest:
                h = F.linear(F.gelu(h), layer.weight, layer.bias)
            s = s + h
            states.append(s)
        return self.with_reach(torch.stack(states, dim=1))

    def open_loop(self, s: torch.Tensor, actions: torch.Tensor) -> Iterator[torch.Tensor]:
        """From every planner latent s_t (B, T, D + P) at once, roll the predictor open loop with actions a_t..
        (B, T, A). Yields, for k = 1..T, the k-step predictions of s_{t+k} for t = 0..T-k: (B, T-k+1, D + P)."""
        for z in self._open_loop(s[..., :self.cfg.latent_dim], actions):
            yield self.with_reach(z)

    def _open_loop(self, z: torch.Tensor, actions: torch.Tensor) -> Iterator[torch.Tensor]:
        T = z.shape[1]
        for k in range(1, T + 1):
            z = self.step(z[:, :T - k + 1], actions[:, k - 1:])
            yield z

    def reach_loss(self, z: torch.Tensor) -> torch.Tensor:
        """The reach head's loss on detached JEPA latents of sequences z (B, L, D) (see the module docstring):
        REACH_PENALTY * mean over consecutive frames of relu(d - 1)^2, minus the mean over every pair of the
        batch's latents of log(1 + d), d the head's Euclidean distance. 0 without a head. Under DDP each rank
        spreads its own share of the batch (pairs of a smaller batch: the same objective, sampled less)."""
        if self.reach is None:
            return z.new_zeros(())
        h = self.reach(z.detach())                              # (B, L, P)
        step = (h[:, 1:] - h[:, :-1]).norm(dim=-1)              # one planner step apart: (B, L-1)
        flat = h.flatten(0, 1)                                  # (B*L, P)
        pairs = torch.pdist(flat)                               # every pair once: (B*L * (B*L - 1) / 2,)
        return REACH_PENALTY * F.relu(step - 1).square().mean() - torch.log1p(pairs).mean()

    def state_loss(self, z: torch.Tensor, states: torch.Tensor | None) -> torch.Tensor:
        """The state head's loss: MSE of its linear read-out of JEPA latents z (..., D) against the z-scored state
        targets of the same frames, from their env states (..., S). Its gradient reaches the encoder, so z is
        trained to hold the targets linearly. 0 without a head."""
        if self.state_head is None:
            return z.new_zeros(())
        if states is None:
            raise ModelError("this model is trained to hold env state variables (model.state_targets): pass the "
                             "env states of the frames")
        targets = (self._state_targets(states) - self.state_target_mean) / self.state_target_std
        return F.mse_loss(self.state_head(z), targets)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor, states: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """obs (B, L + history - 1, ...) raw frames: a sequence of L frames after the history - 1 frames of its
        first window; actions (B, L-1, A) normalised; states (B, L + history - 1, S) the frames' env states (read
        only with proprioception or state targets) -> JEPA latents z (B, L, D), the prediction loss (MSE of every
        open-loop k-step prediction against the stop-gradient encoded target), the reach head's loss and the
        state head's loss."""
        newest = None if states is None else states[:, self.history - 1:]  # each window's newest frame
        z = self.embed(frame_windows(obs, self.history), newest)  # (B, L, D), each frame from its own window
        target = z[:, 1:].detach()                             # (B, L-1, D)
        errors = [F.mse_loss(pred, target[:, k - 1:], reduction="sum")
                  for k, pred in enumerate(self._open_loop(z[:, :-1], actions), start=1)]
        count = target.shape[0] * target.shape[2] * sum(range(1, target.shape[1] + 1))
        return z, torch.stack(errors).sum() / count, self.reach_loss(z), self.state_loss(z, newest)


class Ensemble(nn.Module):
    """K JEPAs (`members`) as one world model with latents (..., K * D'): member i owns dimensions i*D'..(i+1)*D',
    D' = D + P its planner latent.
    The same surface as a JEPA; actions are normalised by the members' shared dataset statistics (member 0's
    buffers; `set_normalization` gives every member the same ones). Training (`forward`) returns the sums of the
    members' prediction, reach and state losses, so each member gets exactly the gradient it would get alone."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        member_cfg = replace(cfg, ensemble=1)
        self.members = nn.ModuleList(JEPA(member_cfg) for _ in range(cfg.ensemble))
        self.member_dim = self.members[0].latent_dim            # D + P: a member's planner latent
        self.latent_dim, self.action_dim, self.history = cfg.ensemble * self.member_dim, cfg.action_dim, cfg.history

    @torch.no_grad()
    def set_normalization(self, *stats):
        for member in self.members:
            member.set_normalization(*stats)

    def set_state_normalization(self, states: torch.Tensor) -> None:
        for member in self.members:
            member.set_state_normalization(states)

    @property
    def device(self) -> torch.device:
        return self.members[0].device

    @property
    def action_low(self) -> torch.Tensor:
        return self.members[0].action_low

    @property
    def action_high(self) -> torch.Tensor:
        return self.members[0].action_high

    def normalize_actions(self, a: torch.Tensor) -> torch.Tensor:
        return self.members[0].normalize_actions(a)

    def denormalize_actions(self, a: torch.Tensor) -> torch.Tensor:
        return self.members[0].denormalize_actions(a)

    def _split(self, s: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return s.split(self.member_dim, dim=-1)  # (..., K*D') -> K x (..., D')

    def encode(self, obs: torch.Tensor, states: torch.Tensor | None = None) -> torch.Tensor:
        return torch.cat([m.encode(obs, states) for m in self.members], -1)

    def predict(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.predict(s_m, a) for m, s_m in zip(self.members, self._split(s))], -1)

    def rollout(self, s0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.rollout(s_m, actions) for m, s_m in zip(self.members, self._split(s0))], -1)

    def open_loop(self, s: torch.Tensor, actions: torch.Tensor) -> Iterator[torch.Tensor]:
        for preds in zip(*(m.open_loop(s_m, actions) for m, s_m in zip(self.members, self._split(s)))):
            yield torch.cat(preds, -1)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor, states: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        zs, *losses = zip(*(m(obs, actions, states) for m in self.members))
        return torch.cat(zs, -1), *(torch.stack(member_losses).sum() for member_losses in losses)
