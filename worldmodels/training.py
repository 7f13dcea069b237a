"""Training a JEPA world model on data-policy episodes: the config, the data, the step, DDP's global batch.

The loop itself is train.py's (the driver). Everything here takes plain Python values, not the YAML config.
  TrainConfig     the `train:` section, validated, with the learning-rate schedule
  dataset_path    where an env's `data:` section lives on disk, collected once (by rank 0) if missing
  open_dataset    a dataset checked to have been collected with the env config being trained
  init_model      a fresh JEPA (or ensemble) for the dataset's shapes, normalised by its statistics
  Episodes        the whole dataset in memory; batches are a function of (seed, step) alone (exact resume)
  train_step      one update: prediction loss + regulariser on the GLOBAL batch of latents (+ a reach head's
                  loss, clipped apart), clip, AdamW (an ensemble's members each regularised and clipped on their own)
  train_scalars   a step's train/ numbers for TensorBoard
  global_batch    all_gather with a gradient that sums every rank's contribution (N ranks = one process)
  init_process_group  this process's device, in the DDP process group under torchrun
  check_resume    a resumed run must keep its config
  checkpoint_meta what a checkpoint records beside the weights
  restore         a resumed run's model, optimizer, step and metrics from its checkpoint
Training needs the env's data (`envs.data`); the model and checkpoints (the rest of `worldmodels`) need only torch.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from envs import EnvConfig, env_class
from envs.data import Dataset, collect
from worldmodels.checkpoint import read_checkpoint
from worldmodels.model import JEPA, Ensemble, ModelConfig, build_model
from worldmodels import provenance
from worldmodels.provenance import config_change
from worldmodels.regularizers import REGULARIZERS, latent_health, regularizer

MIN_LR_FRACTION = 0.1          # cosine decay ends at this fraction of train.lr
CHUNK = 512                    # frames processed at once for the observation statistics (bounds memory)


class TrainingError(ValueError):
    """A bad training setting, or a dataset or resumed run that does not fit it; one line for the user."""


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    batch_size: int            # global batch of sequences (split across DDP ranks)
    seq_len: int               # frames per sequence; the loss predicts 1..seq_len-1 steps ahead
    lr: float
    warmup: int
    weight_decay: float
    grad_clip: float
    regularizer: str
    reg_weight: float
    state_weight: float        # weight of the state head's loss (model.state_targets; nothing without them)
    sigreg_projections: int
    eval_episodes: int         # the dataset's last episodes, held out for model/
    ckpt_every: int
    eval_every: int
    log_every: int

    def __post_init__(self):
        if self.regularizer not in REGULARIZERS:
            raise TrainingError(f"train.regularizer={self.regularizer!r}; choose one of: {', '.join(REGULARIZERS)}")
        for key in ("steps", "batch_size", "sigreg_projections", "eval_episodes", "ckpt_every", "eval_every",
                    "log_every"):
            if getattr(self, key) < 1:
                raise TrainingError(f"train.{key}={getattr(self, key)}: must be >= 1")
        if self.seq_len < 2:
            raise TrainingError(f"train.seq_len={self.seq_len}: must be >= 2 (a context frame and a target)")
        if self.lr <= 0 or self.warmup < 0 or self.weight_decay < 0 or self.grad_clip <= 0 or self.reg_weight < 0 \
                or self.state_weight < 0:
            raise TrainingError(f"train: lr={self.lr}, warmup={self.warmup}, weight_decay={self.weight_decay}, "
                                f"grad_clip={self.grad_clip}, reg_weight={self.reg_weight}, state_weight="
                                f"{self.state_weight}: need lr > 0, grad_clip > 0 and the others >= 0")

    def lr_at(self, step: int) -> float:
        """Linear warmup, then cosine decay to MIN_LR_FRACTION * lr at the last step."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.steps - self.warmup)
        return self.lr * (MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress)))


# ---- data -------------------------------------------------------------------------------------------------------
def dataset_path(env_cfg: EnvConfig, data: dict, is_main: bool = True) -> Path:
    """`data["path"]` when set, else the cache directory data/<env>-<obs_type>-<hash of env + data spec> of the
    env's `data:` section, collected by rank 0 if missing or incomplete (the other ranks wait for it). The path is
    kept as given (the cache one relative to the working directory), so a checkpoint names no machine's absolute
    path."""
    if data.get("path"):
        path = Path(data["path"])
        if not (path / "meta.json").exists():
            raise TrainingError(f"data.path={data['path']!r}: no dataset there (meta.json missing)")
        return path
    spec = {k: v for k, v in data.items() if k not in ("path", "extra")}
    key = {"env": asdict(env_cfg), "data": spec, "data_policy_revision": env_class(env_cfg.name).data_policy_revision}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()
    path = Path("data") / f"{env_cfg.name}-{env_cfg.obs_type}-{digest[:10]}"
    if is_main and not _complete(path):
        collect(env_cfg, path, **spec)
    if dist.is_initialized():
        dist.barrier()
    return path


def _complete(path: Path) -> bool:
    if not (path / "meta.json").exists():
        return False
    meta = json.loads((path / "meta.json").read_text())
    return sum(s["episodes"] for s in meta["shards"]) == meta["episodes"]


def open_dataset(path: str | Path, env_cfg: EnvConfig, key: str = "data.path") -> Dataset:
    """The dataset at `path` (the config's `key`), checked to have been collected with every field of `env_cfg`."""
    dataset = Dataset(path)
    differ = [k for k, v in asdict(env_cfg).items() if dataset.meta["env"].get(k) != v]
    if differ:
        k = differ[0]
        raise TrainingError(f"{key}={str(path)!r} was collected with env.{k}={dataset.meta['env'].get(k)!r}, "
                            f"but env.{k}={getattr(env_cfg, k)!r}; set env.{k} to match or collect new data")
    return dataset


def model_config(obs_type: str, obs_shape, action_dim: int, model: dict, state_variables=()) -> ModelConfig:
    """The ModelConfig of a `model:` section; its `proprio` (read beside pixels) and `state_targets` (held by the
    latent, trained with a state head) name env state variables (`state_variables`, the env's): their state
    columns, and which of them are angles."""
    model = dict(model)
    by_name = {v.name: v for v in state_variables}
    columns = {}
    for key, field in (("proprio", "proprio"), ("state_targets", "state_target")):
        names = list(model.pop(key, None) or [])
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise TrainingError(f"model.{key}={names}: unknown state variable(s) {unknown}; choose from: "
                                f"{', '.join(by_name) or 'none'}")
        columns[f"{field}_index"] = tuple(i for n in names for i in by_name[n].index)
        columns[f"{field}_angles"] = tuple(i for n in names if by_name[n].kind == "angle" for i in by_name[n].index)
    return ModelConfig(obs_type=obs_type, obs_shape=obs_shape, action_dim=action_dim, **columns, **model)


def init_model(dataset: Dataset, episodes: Episodes, obs_type: str, model: dict, action_low, action_high,
               seed: int, state_variables=()) -> JEPA | Ensemble:
    """A fresh JEPA or ensemble (weights drawn from `seed`) for the dataset's shapes and `model` (the `model:`
    section), normalised by the episodes' action statistics, the training frames' statistics (and their states',
    for proprioception and state targets) and the env's native action bounds (A,)."""
    torch.manual_seed(seed)
    jepa = build_model(model_config(obs_type, dataset.meta["obs_shape"], dataset.meta["action_dim"], model,
                                    state_variables))
    jepa.set_normalization(*episodes.action_stats(), action_low, action_high, *episodes.obs_stats())
    jepa.set_state_normalization(episodes.states[:episodes.n_train].flatten(0, 1))
    return jepa


class Episodes:
    """The whole dataset in memory as tensors; its last `eval_episodes` are held out. `extra` datasets (e.g.
    planner-in-the-loop episodes, agent/collect.py) are trained on too, never held out, so the held-out numbers
    stay those of the data policy. Batches are a deterministic function of (seed, step), so a resumed run draws
    exactly what the killed one would have. `history` (the model's k) adds the k-1 frames before each sequence,
    the context of its first window."""

    def __init__(self, dataset: Dataset, eval_episodes: int, seq_len: int, history: int = 1, extra=()):
        if eval_episodes >= len(dataset):
            raise TrainingError(f"train.eval_episodes={eval_episodes}: the dataset has only {len(dataset)} episodes")
        T = dataset.meta["episode_len"]
        if seq_len > T + 1:
            raise TrainingError(f"train.seq_len={seq_len}: episodes have only {T + 1} frames")
        for more in extra:
            if more.meta["episode_len"] != T:
                raise TrainingError(f"data.extra {str(more.path)!r} has episodes of {more.meta['episode_len']} "
                                    f"steps, data.path's have {T}; collect it with episode_len={T}")
        n_train = len(dataset) - eval_episodes
        data = dataset.load_all()
        parts = [{k: v[:n_train] for k, v in data.items()}] + [more.load_all() for more in extra] + \
            [{k: v[n_train:] for k, v in data.items()}]
        data = {k: np.concatenate([p[k] for p in parts]) for k in data}   # training episodes first, held-out last
        self.obs = torch.from_numpy(data["obs"])                    # (N, T+1, ...) uint8 or float32
        self.actions = torch.from_numpy(data["actions"])            # (N, T, A) native
        self.states = torch.from_numpy(data["states"])              # (N, T+1, S)
        self.n_train = len(self.obs) - eval_episodes
        self.episode_len, self.seq_len, self.history = T, seq_len, history

    def batch(self, seed: int, step: int, batch_size: int, rank: int, world: int):
        """This rank's slice of the global batch of step `step`: obs (b, k-1+L, ...) - a sequence of L frames
        after the k-1 frames before it, where frames before the episode's first repeat it (as the agent's window
        at reset) -, native actions (b, L-1, A) and the frames' env states (b, k-1+L, S)."""
        rng = np.random.default_rng([seed, step])
        episode = torch.from_numpy(rng.integers(0, self.n_train, batch_size))
        start = torch.from_numpy(rng.integers(0, self.episode_len - self.seq_len + 2, batch_size))
        b = batch_size // world
        episode, start = episode[rank * b:(rank + 1) * b, None], start[rank * b:(rank + 1) * b, None]
        frames = start + torch.arange(1 - self.history, self.seq_len)   # (b, k-1+L), before frame 0 for context
        return (self.obs[episode, frames.clamp_min(0)], self.actions[episode, frames[:, self.history - 1:-1]],
                self.states[episode, frames.clamp_min(0)])

    def action_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-dimension mean and std (A,) of every episode's actions, float32; std is floored at 1e-6 so that
        normalising by it never divides by zero on a constant action dimension."""
        actions = self.actions.double().flatten(0, 1)               # (N*T, A)
        mean = actions.mean(0)
        std = (actions.pow(2).mean(0) - mean ** 2).clamp_min(0).sqrt()
        return mean.float().numpy(), std.clamp_min(1e-6).float().numpy()

    def obs_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-element mean and std (obs_shape) of the training frames, accumulated in chunks (float64)."""
        frames = self.obs[:self.n_train].flatten(0, 1)
        total = total_sq = 0
        for i in range(0, len(frames), CHUNK):
            chunk = frames[i:i + CHUNK].double()
            total, total_sq = total + chunk.sum(0), total_sq + chunk.pow(2).sum(0)
        mean = total / len(frames)
        return mean, (total_sq / len(frames) - mean ** 2).clamp_min(0).sqrt()

    def held_out(self):
        """obs (E, T+1, ...), native actions (E, T, A), states (E, T+1, S) of the held-out episodes."""
        return self.obs[self.n_train:], self.actions[self.n_train:], self.states[self.n_train:]


# ---- distributed ------------------------------------------------------------------------------------------------
class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for this rank's rows (each rank computes the
    regulariser of the whole global batch; DDP's gradient average then gives the single-process gradient)."""

    @staticmethod
    def forward(ctx, x):
        out = x.new_empty(dist.get_world_size() * x.shape[0], *x.shape[1:])
        dist.all_gather_into_tensor(out, x.contiguous())
        return out

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        b = grad.shape[0] // dist.get_world_size()
        return grad[dist.get_rank() * b:(dist.get_rank() + 1) * b]


def global_batch(z: torch.Tensor) -> torch.Tensor:
    """Every rank's rows of z (b, D) -> (world * b, D), differentiable; z itself outside a process group."""
    return _GatherWithGrad.apply(z) if dist.is_initialized() else z


def init_process_group(device: torch.device, world: int) -> torch.device:
    """This process's device; with `world` > 1 (torchrun) it joins the process group (NCCL on CUDA, each rank on
    its LOCAL_RANK's GPU; gloo on CPU)."""
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


# ---- the step ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StepLosses:
    """A step's losses per member: `loss` = pred_loss + reg_weight * reg_loss + state_weight * state_loss, what the
    JEPA minimises (state_loss 0 without state targets); the reach head minimises `reach_loss` (0 without one), see
    worldmodels/model.py."""
    loss: torch.Tensor
    pred_loss: torch.Tensor
    reg_loss: torch.Tensor
    reach_loss: torch.Tensor
    state_loss: torch.Tensor


def train_step(trainer, model: JEPA | Ensemble, optimizer, tc: TrainConfig, obs, actions, seed: int, step: int,
               states=None):
    """One update on this rank's batch: obs (b, k-1+L, ...) raw (`Episodes.batch`), actions (b, L-1, A) native,
    states (b, k-1+L, S) the frames' env states (read with proprioception or state targets only). `trainer` is the
    model or its DDP wrapper. Returns the losses (per member for an ensemble) and the global batch of JEPA latents
    (global b*L, D; K*D for an ensemble of K)."""
    device = model.device
    obs, actions = obs.to(device), model.normalize_actions(actions.to(device))
    states = None if states is None else states.to(device)
    z, pred_loss, reach_loss, state_loss = trainer(obs, actions, states)  # an ensemble's: summed over its members
    z_all = global_batch(z.flatten(0, 1))
    projections = torch.Generator(device=device).manual_seed(
        int(np.random.SeedSequence([seed, step]).generate_state(1)[0]))
    members = model.members
    # each member's own latent is regularised (not the ensemble's K*D side by side, which would push the members
    # to encode different things) and its own gradient clipped: member i trains as it would alone
    reg_loss = sum(regularizer(tc.regularizer, z_member, tc.sigreg_projections, projections)
                   for z_member in z_all.chunk(len(members), dim=-1))
    loss = pred_loss + tc.reg_weight * reg_loss + tc.state_weight * state_loss
    optimizer.zero_grad(set_to_none=True)
    (loss + reach_loss).backward()    # the reach head reads detached latents: its loss moves only its own weights
    for member in members:
        torch.nn.utils.clip_grad_norm_(member.jepa_parameters, tc.grad_clip)
        if member.reach is not None:
            torch.nn.utils.clip_grad_norm_(member.reach.parameters(), tc.grad_clip)
    optimizer.step()
    K = len(members)
    # losses per member, comparable across ensemble sizes
    return StepLosses(loss / K, pred_loss / K, reg_loss / K, reach_loss / K, state_loss / K), z_all


def train_scalars(losses: StepLosses, z_all: torch.Tensor, lr: float, reach: bool, state: bool
                  ) -> dict[str, float]:
    """The train/ scalars of a step: its losses (train/reach_loss with a reach head, train/state_loss with a state
    head) and learning rate, and the health of the global batch of latents (`latent_health`)."""
    scalars = {"train/loss": losses.loss.item(), "train/pred_loss": losses.pred_loss.item(),
               "train/reg_loss": losses.reg_loss.item()}
    if reach:
        scalars["train/reach_loss"] = losses.reach_loss.item()
    if state:
        scalars["train/state_loss"] = losses.state_loss.item()
    return {**scalars, "train/lr": lr, **{f"train/{k}": v for k, v in latent_health(z_all.detach()).items()}}


# ---- the checkpoint, resume -------------------------------------------------------------------------------------
def check_resume(saved: dict, config: dict) -> None:
    """A resumed run's resolved `config` must equal the checkpoint's `saved` one, but for
    `provenance.RESUME_MAY_CHANGE`."""
    change = config_change(saved, config)
    if change:
        k, was, now = change
        raise TrainingError(f"resume: {k}={now!r} differs from the checkpoint's {was!r}; "
                            f"a resumed run must keep its config")


def checkpoint_meta(env_cfg: EnvConfig, config: dict, model: JEPA | Ensemble, dataset: Dataset, episodes: Episodes,
                    world: int, metrics: dict, commit: str | None, extra=()) -> dict:
    """What a checkpoint records beside the weights: the env and resolved `config`, provenance (`commit`: the git
    commit when the run started, `provenance.git_commit`), the action normalisation, the data (with each `extra`
    dataset's size and the policy that made it), the DDP world size and the `metrics` so far (train.py adds the step
    and the seconds of training steps at each save)."""
    return {"env": asdict(env_cfg), "config": config, "seed": config["seed"], "git_commit": commit,
            "action_mean": model.members[0].action_mean.tolist(), "action_std": model.members[0].action_std.tolist(),
            "data": {"path": config["data"]["path"], "episodes": len(dataset),
                     "episode_len": dataset.meta["episode_len"], "train_episodes": episodes.n_train,
                     "transitions": episodes.n_train * episodes.episode_len,
                     "extra": [{"path": str(d.path), "episodes": len(d), "policy": d.meta.get("policy")}
                               for d in extra]},
            "versions": provenance.versions(), "world_size": world, "metrics": metrics}


def restore(path: Path, model: JEPA | Ensemble, optimizer, config: dict) -> tuple[int, dict, float]:
    """Loads the checkpoint at `path` into a fresh `model` and its `optimizer` for a resumed run with the resolved
    `config` (checked to be the checkpoint's, `check_resume`). Returns (step, metrics, seconds of training steps)
    to continue from."""
    saved = read_checkpoint(path)
    # runs from before frame history, ensembles, reach heads or proprioception had the model without them: the
    # config's defaults
    for key in ("history", "ensemble", "reach_dim", "reach_scale"):
        saved["meta"]["config"]["model"].setdefault(key, ModelConfig.__dataclass_fields__[key].default)
    saved["meta"]["config"]["model"].setdefault("proprio", [])
    saved["meta"]["config"]["model"].setdefault("state_targets", [])
    # nor a state head, so its weight did nothing: any value resumes them
    saved["meta"]["config"]["train"].setdefault("state_weight", config["train"]["state_weight"])
    check_resume(saved["meta"]["config"], config)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["training"]["optimizer"])
    train_time = saved["meta"].get("train_time_s", float("nan"))   # nan: a run from before it was recorded
    return saved["training"]["step"], dict(saved["meta"]["metrics"]), train_time
