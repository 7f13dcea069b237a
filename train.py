"""Train a JEPA world model on data-policy episodes of one env.

    python train.py [env=NAME] [data.path=DIR] [logdir=DIR] [resume=true] [seed=S] [device=cuda]
                    [model.KEY=V] [train.KEY=V] ...                      (defaults: configs/train.yaml + env yaml)
    torchrun --nproc_per_node=2 train.py env=NAME ...                   (DDP: gloo on CPU, NCCL on CUDA)

Without `data.path` the env's `data:` section is collected once into data/<env>-<obs_type>-<hash of env+data>
and reused by later runs. Writes DIR/checkpoint.pt (weights, resolved config, normalisation, env config, format
version, git commit, metrics, optimizer state) atomically every `train.ckpt_every` steps and at the end,
DIR/model.pt at the end (the same without the optimizer state: a third of the size, what evaluate.py and the
shipped worldmodels/pretrained/<env>.pt use), and TensorBoard logs in DIR (train/, eval/, perf/). `resume=true logdir=DIR` continues a killed run from its last
checkpoint and ends with the same weights as an uninterrupted run: every random draw (batch, SIGReg directions)
is a function of (seed, step) alone, so the checkpoint's weights, optimizer state and step are the whole state.
`train.batch_size` is the global batch; under DDP each rank takes its slice and the regulariser sees the gathered
global batch, so N processes compute the same update as one process.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from omegaconf import OmegaConf
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

import configs
import envs
from configs import ConfigError, provenance
from envs.data import Dataset, collect
from worldmodels import (JEPA, REGULARIZERS, CheckpointError, ModelConfig, latent_health, read_checkpoint,
                         regularizer, save_checkpoint)

CHECKPOINT = "checkpoint.pt"
FINAL_MODEL = "model.pt"
MIN_LR_FRACTION = 0.1          # cosine decay ends at this fraction of train.lr
CHUNK = 512               # frames processed at once for statistics and evaluation (bounds memory)
RESUME_MAY_CHANGE = ("resume", "device", "logdir")


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
    sigreg_projections: int
    eval_episodes: int         # the dataset's last episodes, held out for eval/
    ckpt_every: int
    eval_every: int
    log_every: int

    def __post_init__(self):
        if self.regularizer not in REGULARIZERS:
            raise ConfigError(f"train.regularizer={self.regularizer!r}; choose one of: {', '.join(REGULARIZERS)}")
        for key in ("steps", "batch_size", "sigreg_projections", "eval_episodes", "ckpt_every", "eval_every",
                    "log_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key}={getattr(self, key)}: must be >= 1")
        if self.seq_len < 2:
            raise ConfigError(f"train.seq_len={self.seq_len}: must be >= 2 (a context frame and a target)")
        if self.lr <= 0 or self.warmup < 0 or self.weight_decay < 0 or self.grad_clip <= 0 or self.reg_weight < 0:
            raise ConfigError(f"train: lr={self.lr}, warmup={self.warmup}, weight_decay={self.weight_decay}, "
                              f"grad_clip={self.grad_clip}, reg_weight={self.reg_weight}: need lr > 0, "
                              f"grad_clip > 0 and the others >= 0")

    def lr_at(self, step: int) -> float:
        """Linear warmup, then cosine decay to MIN_LR_FRACTION * lr at the last step."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.steps - self.warmup)
        return self.lr * (MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress)))


# ---- data -------------------------------------------------------------------------------------------------------
def dataset_path(cfg, is_main: bool) -> Path:
    """`data.path`, or the cache directory of the env's `data:` section, collected by rank 0 if missing."""
    if cfg.data.path:
        path = Path(cfg.data.path)
        if not (path / "meta.json").exists():
            raise ConfigError(f"data.path={cfg.data.path!r}: no dataset there (meta.json missing)")
        return path.resolve()
    env_cfg = envs.env_config(OmegaConf.to_container(cfg.env, resolve=True))
    spec = {k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items() if k != "path"}
    digest = hashlib.sha1(json.dumps({"env": asdict(env_cfg), "data": spec}, sort_keys=True).encode()).hexdigest()
    path = (Path("data") / f"{env_cfg.name}-{env_cfg.obs_type}-{digest[:10]}").resolve()
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


class Episodes:
    """The whole dataset in memory as tensors; the last `eval_episodes` are held out. Batches are a
    deterministic function of (seed, step), so a resumed run draws exactly what the killed one would have."""

    def __init__(self, dataset: Dataset, eval_episodes: int, seq_len: int):
        if eval_episodes >= len(dataset):
            raise ConfigError(f"train.eval_episodes={eval_episodes}: the dataset has only {len(dataset)} episodes")
        T = dataset.meta["episode_len"]
        if seq_len > T + 1:
            raise ConfigError(f"train.seq_len={seq_len}: episodes have only {T + 1} frames")
        data = dataset.load_all()
        self.obs = torch.from_numpy(data["obs"])                    # (N, T+1, ...) uint8 or float32
        self.actions = torch.from_numpy(data["actions"])            # (N, T, A) native
        self.states = torch.from_numpy(data["states"])              # (N, T+1, S)
        self.n_train = len(dataset) - eval_episodes
        self.episode_len, self.seq_len = T, seq_len

    def batch(self, seed: int, step: int, batch_size: int, rank: int, world: int):
        """This rank's slice of the global batch of step `step`: obs (b, L, ...), native actions (b, L-1, A)."""
        rng = np.random.default_rng([seed, step])
        episode = torch.from_numpy(rng.integers(0, self.n_train, batch_size))
        start = torch.from_numpy(rng.integers(0, self.episode_len - self.seq_len + 2, batch_size))
        b = batch_size // world
        episode, start = episode[rank * b:(rank + 1) * b, None], start[rank * b:(rank + 1) * b, None]
        frames = start + torch.arange(self.seq_len)                 # (b, L)
        return self.obs[episode, frames], self.actions[episode, frames[:, :-1]]

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
        return self.obs[self.n_train:], self.actions[self.n_train:], self.states[self.n_train:]


# ---- evaluation -------------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model: JEPA, obs: torch.Tensor, actions: torch.Tensor, states: torch.Tensor,
             task_distance=None) -> dict[str, float]:
    """Open-loop k-step latent prediction error on held-out episodes (mean over episodes and start frames of
    ||s_hat_{t+k} - E(o_{t+k})||^2), for k = 1, 5 and the episode length H, each also relative to the
    constant-latent baseline ||E(o_t) - E(o_{t+k})||^2; a linear probe latent -> physical state (R^2); and, given
    the env's `task_distance(state, goal)`, how well latent distance ranks task distance over random pairs of
    held-out frames (Spearman): the planner's cost is latent distance, so a low value means a cost landscape
    that is flat away from the goal however well the model predicts."""
    E, T = actions.shape[:2]
    flat = obs.reshape(-1, *obs.shape[2:])
    z = torch.cat([model.encode(flat[i:i + CHUNK]) for i in range(0, len(flat), CHUNK)])
    z = z.reshape(E, T + 1, -1)                                                      # (E, T+1, D)
    metrics = {}
    ks = sorted({k for k in (1, 5, T) if k <= T})
    for k, pred in enumerate(model.open_loop(z[:, :-1], model.normalize_actions(actions.to(model.device))), 1):
        if k in ks:
            err = (pred - z[:, k:]).pow(2).sum(-1).mean().item()
            baseline = (z[:, :-k] - z[:, k:]).pow(2).sum(-1).mean().item()
            metrics[f"eval/pred_err_k{k}"] = err
            metrics[f"eval/rel_err_k{k}"] = err / max(baseline, 1e-12)
    metrics["eval/probe_r2"] = linear_probe_r2(z.cpu(), states)
    if task_distance is not None:
        metrics["eval/dist_spearman"] = distance_rank_correlation(z.cpu().flatten(0, 1), states.flatten(0, 1),
                                                                  task_distance)
    return metrics


def distance_rank_correlation(z: torch.Tensor, states: torch.Tensor, task_distance, pairs: int = 1000) -> float:
    """Spearman correlation of ||z_i - z_j|| and task_distance(state_i, state_j) over fixed random pairs."""
    gen = torch.Generator().manual_seed(0)
    i, j = torch.randint(len(z), (2, pairs), generator=gen)
    latent = (z[i] - z[j]).norm(dim=-1)
    task = torch.tensor([task_distance(states[a].numpy(), states[b].numpy()) for a, b in zip(i, j)])
    rank = lambda x: x.argsort().argsort().double()  # noqa: E731
    return torch.corrcoef(torch.stack([rank(latent), rank(task)]))[0, 1].item()


def linear_probe_r2(z: torch.Tensor, states: torch.Tensor) -> float:
    """Least squares latent -> state fitted on the first half of the episodes, R^2 on the second half
    (mean over state dimensions that vary)."""
    half = max(1, len(z) // 2)
    x = torch.cat([z, torch.ones(*z.shape[:2], 1)], -1).double()                 # (E, T+1, D+1)
    y = states.double()
    fit_x, fit_y = x[:half].flatten(0, 1), y[:half].flatten(0, 1)
    test_x, test_y = x[half:].flatten(0, 1), y[half:].flatten(0, 1)
    if len(test_x) == 0:
        test_x, test_y = fit_x, fit_y
    weights = torch.linalg.lstsq(fit_x, fit_y).solution
    residual = (test_x @ weights - test_y).pow(2).sum(0)
    total = (test_y - test_y.mean(0)).pow(2).sum(0)
    varies = total > 1e-8 * len(test_y)
    return (1 - residual[varies] / total[varies]).mean().item() if varies.any() else float("nan")


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
    return _GatherWithGrad.apply(z) if dist.is_initialized() else z


# ---- run --------------------------------------------------------------------------------------------------------
def train_step(trainer, model: JEPA, optimizer, tc: TrainConfig, obs, actions, seed: int, step: int):
    """One update on this rank's batch: obs (b, L, ...) raw, actions (b, L-1, A) native. `trainer` is the model
    or its DDP wrapper. Returns the losses and the global batch of latents (global b*L, D)."""
    device = model.device
    obs, actions = obs.to(device), model.normalize_actions(actions.to(device))
    z, pred_loss = trainer(obs, actions)
    z_all = global_batch(z.flatten(0, 1))
    projections = torch.Generator(device=device).manual_seed(
        int(np.random.SeedSequence([seed, step]).generate_state(1)[0]))
    reg_loss = regularizer(tc.regularizer, z_all, tc.sigreg_projections, projections)
    loss = pred_loss + tc.reg_weight * reg_loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
    optimizer.step()
    return loss, pred_loss, reg_loss, z_all


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def run(cfg) -> JEPA:
    world, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
    if not (cfg.device == "cpu" or (cfg.device.startswith("cuda") and torch.cuda.is_available())):
        raise ConfigError(f"device={cfg.device!r}: choose cpu" + (" or cuda" if torch.cuda.is_available() else ""))
    tc = TrainConfig(**OmegaConf.to_container(cfg.train, resolve=True))
    if tc.batch_size % world:
        raise ConfigError(f"train.batch_size={tc.batch_size} is not divisible by the {world} DDP processes")
    env_cfg = envs.env_config(OmegaConf.to_container(cfg.env, resolve=True))
    if cfg.resume and not cfg.logdir:
        raise ConfigError("resume=true needs logdir=DIR, the directory of the run to continue")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    logdir = Path(cfg.logdir or f"runs/train/{env_cfg.name}-{stamp}")
    OmegaConf.update(cfg, "logdir", str(logdir), merge=False)
    ckpt_path = logdir / CHECKPOINT
    if cfg.resume and not ckpt_path.exists():
        raise CheckpointError(f"resume=true but {str(ckpt_path)!r} does not exist")
    if not cfg.resume and ckpt_path.exists():
        raise ConfigError(f"logdir={str(logdir)!r} already holds a run; pass resume=true or choose another logdir")
    device = torch.device(cfg.device)
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        return _train(cfg, tc, env_cfg, logdir, device, rank, world)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg, tc: TrainConfig, env_cfg, logdir: Path, device: torch.device, rank: int, world: int) -> JEPA:
    is_main = rank == 0
    OmegaConf.update(cfg, "data.path", str(dataset_path(cfg, is_main)), merge=False)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    dataset = Dataset(cfg.data.path)
    differ = [k for k, v in asdict(env_cfg).items() if dataset.meta["env"].get(k) != v]
    if differ:
        k = differ[0]
        raise ConfigError(f"data.path={cfg.data.path!r} was collected with env.{k}={dataset.meta['env'].get(k)!r}, "
                          f"but env.{k}={getattr(env_cfg, k)!r}; set env.{k} to match or collect new data")
    episodes = Episodes(dataset, tc.eval_episodes, tc.seq_len)
    probe_env = envs.make(env_cfg)   # bounds, and the task distance for eval/dist_spearman
    native_low, native_high = probe_env.action_space.low, probe_env.action_space.high

    torch.manual_seed(cfg.seed)   # weight init
    model_cfg = ModelConfig(obs_type=env_cfg.obs_type, obs_shape=dataset.meta["obs_shape"],
                            action_dim=dataset.meta["action_dim"], **OmegaConf.to_container(cfg.model, resolve=True))
    model = JEPA(model_cfg)
    action_mean, action_std = dataset.action_stats()
    model.set_normalization(action_mean, action_std, native_low, native_high, *episodes.obs_stats())
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    start, metrics = 0, {}
    if cfg.resume:
        saved = read_checkpoint(logdir / CHECKPOINT)
        before, now = flat(saved["meta"]["config"]), flat(resolved)
        changed = sorted(k for k in before.keys() | now.keys()
                         if k.split(".")[0] not in RESUME_MAY_CHANGE and before.get(k) != now.get(k))
        if changed:
            k = changed[0]
            raise ConfigError(f"resume: {k}={now.get(k)!r} differs from the checkpoint's {before.get(k)!r}; "
                              f"a resumed run must keep its config")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["training"]["optimizer"])
        start, metrics = saved["training"]["step"], dict(saved["meta"]["metrics"])
    trainer = DistributedDataParallel(model, broadcast_buffers=False) if world > 1 else model

    writer = None
    if is_main:
        from torch.utils.tensorboard import SummaryWriter
        logdir.mkdir(parents=True, exist_ok=True)
        writer = SummaryWriter(str(logdir), purge_step=start if cfg.resume else None)
        text = OmegaConf.to_yaml(OmegaConf.create(resolved))
        writer.add_text("config", "    " + text.replace("\n", "\n    "), start)
    meta = {"env": asdict(env_cfg), "config": resolved, "seed": cfg.seed, "git_commit": provenance.git_commit(),
            "action_mean": action_mean.tolist(), "action_std": action_std.tolist(),
            "data": {"path": cfg.data.path, "episodes": len(dataset), "episode_len": dataset.meta["episode_len"]},
            "versions": provenance.versions(),
            "world_size": world, "metrics": metrics}

    def checkpoint(step: int):
        meta.update(step=step)
        save_checkpoint(logdir / CHECKPOINT, model, meta, {"optimizer": optimizer.state_dict(), "step": step})

    def run_eval(step: int):
        model.eval()
        metrics = evaluate(model, *episodes.held_out(), probe_env.distance)
        model.train()
        for tag, value in metrics.items():
            writer.add_scalar(tag, value, step)
        meta["metrics"].update(metrics)

    bar = tqdm(total=tc.steps, initial=start, desc=f"train {env_cfg.name}", unit="step", disable=not is_main)
    model.train()
    step_time, timed_steps = 0.0, 0
    for step in range(start, tc.steps):
        t0 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = tc.lr_at(step)
        obs, actions = episodes.batch(cfg.seed, step, tc.batch_size, rank, world)
        loss, pred_loss, reg_loss, z_all = train_step(trainer, model, optimizer, tc, obs, actions, cfg.seed, step)
        step_time, timed_steps = step_time + time.perf_counter() - t0, timed_steps + 1
        done = step + 1
        bar.update(1)
        if not is_main:
            continue
        if done % tc.log_every == 0 or done == tc.steps:
            scalars = {"train/loss": loss.item(), "train/pred_loss": pred_loss.item(),
                       "train/reg_loss": reg_loss.item(), "train/lr": tc.lr_at(step),
                       **{f"train/{k}": v for k, v in latent_health(z_all.detach()).items()},
                       "perf/steps_per_s": timed_steps / step_time}
            for tag, value in scalars.items():
                writer.add_scalar(tag, value, done)
            meta["metrics"].update(scalars)
            bar.set_postfix(loss=f"{scalars['train/loss']:.4f}", pred=f"{scalars['train/pred_loss']:.4f}")
            step_time, timed_steps = 0.0, 0
        if done % tc.eval_every == 0 or done == tc.steps:
            run_eval(done)
        if done % tc.ckpt_every == 0 or done == tc.steps:
            checkpoint(done)
    bar.close()
    probe_env.close()
    if is_main:
        writer.close()
        save_checkpoint(logdir / FINAL_MODEL, model, meta)
        shown = ", ".join(f"{k.split('/')[1]}={v:.4g}" for k, v in meta["metrics"].items() if k.startswith("eval/"))
        print(f"trained {env_cfg.name} to step {tc.steps}: {shown}\ncheckpoint: {logdir / CHECKPOINT}\n"
              f"model for planning: {logdir / FINAL_MODEL}")
    return model


USER_ERRORS = (envs.EnvError, CheckpointError)

if __name__ == "__main__":
    sys.exit(configs.main(run, "train", user_errors=USER_ERRORS))
