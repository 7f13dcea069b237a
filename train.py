"""Train a JEPA world model on data-policy episodes of one env.

    python train.py [env=NAME] [data.path=DIR] [data.extra=[DIR,...]] [logdir=DIR] [resume=true] [seed=S]
                    [device=cuda] [threads=N]
                    [model.KEY=V] [train.KEY=V] ...                      (defaults: configs/train.yaml + env yaml)
    torchrun --nproc_per_node=2 train.py env=NAME ...                   (DDP: gloo on CPU, NCCL on CUDA)

Without `data.path` the env's `data:` section is collected once into data/<env>-<obs_type>-<hash of env+data>
and reused by later runs; `data.extra` adds datasets trained on beside it (planner-in-the-loop episodes from
`python -m agent.collect`; data.path's held-out episodes stay the held-out ones). Writes DIR/checkpoint.pt
(weights, resolved config, normalisation, env config, format version, git commit, metrics, seconds of training
steps, data size, optimizer state) atomically every
`train.ckpt_every` steps and at the end, DIR/model.pt at the end (the same without the optimizer state: a third of
the size, what evaluate.py and the shipped worldmodels/pretrained/<env>.pt use), and TensorBoard logs in DIR
(train/, model/, perf/, HParams); a model whose final numbers make it unusable for planning gets a warning.
`resume=true logdir=DIR` continues a killed run and ends with the same weights as an uninterrupted run: every random
draw (batch, SIGReg directions) is a function of (seed, step). `train.batch_size` is the global batch; under DDP the
regulariser sees the gathered global batch. The pieces are in worldmodels/training.py and worldmodels/metrics.py.
"""
import datetime
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from omegaconf import OmegaConf
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import configs
import envs
from agent.logging import tensorboard_command, write_hparams
from configs import ConfigError
from worldmodels import JEPA, CheckpointError, ModelError, provenance, save_checkpoint
from worldmodels.metrics import model_metrics, planning_warning
from worldmodels.training import (Episodes, TrainConfig, TrainingError, checkpoint_meta, dataset_path, init_model,
                                  init_process_group, open_dataset, restore, train_scalars, train_step)

CHECKPOINT, FINAL_MODEL = "checkpoint.pt", "model.pt"


def run(cfg) -> JEPA:
    commit = provenance.git_commit()  # the code this run trains with: edits while the data loads must not relabel it
    world, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
    if not (cfg.device == "cpu" or (cfg.device.startswith("cuda") and torch.cuda.is_available())):
        raise ConfigError(f"device={cfg.device!r}: choose cpu" + (" or cuda" if torch.cuda.is_available() else ""))
    if cfg.threads is not None and cfg.threads < 1:
        raise ConfigError(f"threads={cfg.threads}: must be >= 1, or null for torch's default")
    tc = TrainConfig(**OmegaConf.to_container(cfg.train, resolve=True))
    if tc.batch_size % world:
        raise ConfigError(f"train.batch_size={tc.batch_size} is not divisible by the {world} DDP processes")
    env_cfg = envs.env_config(OmegaConf.to_container(cfg.env, resolve=True))
    if cfg.resume and not cfg.logdir:
        raise ConfigError("resume=true needs logdir=DIR, the directory of the run to continue")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    logdir = Path(cfg.logdir or f"runs/train/{env_cfg.name}-{stamp}")
    OmegaConf.update(cfg, "logdir", str(logdir), merge=False)
    if cfg.resume and not (logdir / CHECKPOINT).exists():
        raise CheckpointError(f"resume=true but {str(logdir / CHECKPOINT)!r} does not exist")
    if not cfg.resume and (logdir / CHECKPOINT).exists():
        raise ConfigError(f"logdir={str(logdir)!r} already holds a run; pass resume=true or choose another logdir")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)  # per process: under torchrun each rank sets its own
    device = init_process_group(torch.device(cfg.device), world)
    try:
        return train(cfg, tc, env_cfg, logdir, device, rank, world, commit)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def train(cfg, tc: TrainConfig, env_cfg, logdir: Path, device: torch.device, rank: int, world: int,
          commit: str | None) -> JEPA:
    # ---- build: data, model, optimizer (from the checkpoint when resuming) -------------------------------------
    is_main = rank == 0
    data = OmegaConf.to_container(cfg.data, resolve=True)
    OmegaConf.update(cfg, "data.path", str(dataset_path(env_cfg, data, is_main)), merge=False)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    dataset = open_dataset(cfg.data.path, env_cfg)
    extra = [open_dataset(path, env_cfg, "data.extra") for path in cfg.data.extra]
    episodes = Episodes(dataset, tc.eval_episodes, tc.seq_len, cfg.model.history, extra)
    probe_env = envs.make(env_cfg)   # action bounds; the task distance and state variables for model/
    model = init_model(dataset, episodes, env_cfg.obs_type, resolved["model"], probe_env.action_space.low,
                       probe_env.action_space.high, cfg.seed, probe_env.state_variables).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    start, metrics, train_time = 0, {}, 0.0
    if cfg.resume:
        start, metrics, train_time = restore(logdir / CHECKPOINT, model, optimizer, resolved)
    trainer = DistributedDataParallel(model, broadcast_buffers=False) if world > 1 else model
    meta = checkpoint_meta(env_cfg, resolved, model, dataset, episodes, world, metrics, commit, extra)
    writer = None
    if is_main:
        logdir.mkdir(parents=True, exist_ok=True)
        writer = SummaryWriter(str(logdir), purge_step=start if cfg.resume else None)
        writer.add_text("config", "    " + OmegaConf.to_yaml(OmegaConf.create(resolved)).replace("\n", "\n    "), start)

    # ---- run: every rank steps; rank 0 logs train/ and model/, and writes the checkpoints ------------------------
    bar = tqdm(total=tc.steps, initial=start, desc=f"train {env_cfg.name}", unit="step", disable=not is_main)
    model.train()
    step_time, timed_steps = 0.0, 0
    for step in range(start, tc.steps):
        t0 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = tc.lr_at(step)
        obs, actions, states = episodes.batch(cfg.seed, step, tc.batch_size, rank, world)
        losses, z_all = train_step(trainer, model, optimizer, tc, obs, actions, cfg.seed, step, states)
        step_time, timed_steps = step_time + time.perf_counter() - t0, timed_steps + 1
        train_time += time.perf_counter() - t0   # training steps only: no data collection, evaluation or saving
        done = step + 1
        bar.update(1)
        if not is_main:
            continue
        scalars = {}
        if done % tc.log_every == 0 or done == tc.steps:
            scalars = {**train_scalars(losses, z_all, tc.lr_at(step), model.cfg.reach_dim > 0,
                                         bool(model.cfg.state_target_index)),
                       "perf/steps_per_s": timed_steps / step_time}
            bar.set_postfix(loss=f"{scalars['train/loss']:.4f}", pred=f"{scalars['train/pred_loss']:.4f}")
            step_time, timed_steps = 0.0, 0
        if done % tc.eval_every == 0 or done == tc.steps:
            model.eval()
            scalars.update(model_metrics(model, *episodes.held_out(), probe_env.distance, probe_env.state_variables,
                                         OmegaConf.select(cfg, "mpc.horizon")))
            model.train()
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, done)
        meta["metrics"].update(scalars)
        if done % tc.ckpt_every == 0 or done == tc.steps:
            meta.update(step=done, train_time_s=train_time)
            save_checkpoint(logdir / CHECKPOINT, model, meta, {"optimizer": optimizer.state_dict(), "step": done})
    bar.close()
    probe_env.close()

    # ---- write ------------------------------------------------------------------------------------------------
    if is_main:
        write_hparams(writer, {"env": env_cfg.name, "obs_type": env_cfg.obs_type, "steps": tc.steps, "seed": cfg.seed,
                               **{f"model.{k}": v for k, v in resolved["model"].items()}}, meta["metrics"])
        writer.close()
        save_checkpoint(logdir / FINAL_MODEL, model, meta)
        shown = ", ".join(f"{k.removeprefix('model/')}={v:.4g}" for k, v in meta["metrics"].items()
                          if k.startswith("model/"))
        print(f"trained {env_cfg.name} to step {tc.steps} ({train_time:.0f} s of training steps): {shown}\n"
              f"checkpoint: {logdir / CHECKPOINT}\nmodel for planning: {logdir / FINAL_MODEL}\n"
              f"TensorBoard: {tensorboard_command(logdir)}")
        warning = planning_warning(meta["metrics"])
        if warning:
            print(f"WARNING: {warning}", file=sys.stderr)
    return model


USER_ERRORS = (envs.EnvError, ModelError, TrainingError)  # ModelError covers CheckpointError

if __name__ == "__main__":
    sys.exit(configs.main(run, "train", user_errors=USER_ERRORS))
