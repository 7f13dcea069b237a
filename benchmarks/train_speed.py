"""Train speed: seconds per world-model training step for each env's training config (configs/train.yaml merged
with configs/env/<env>.yaml), on synthetic batches of the right shapes (no data collection).

    python -m benchmarks.train_speed [envs=wall,pointmaze,reacher,pusht] [steps=20]

One step = forward (encode all frames, open-loop predictions), regulariser, backward, AdamW, exactly train.py's
step (`worldmodels.training.train_step`). Reports the median over `steps` timed steps after 3 warm-up steps, and the time the env's
`train.steps` would take at that speed. Prints a
markdown table.
"""
from __future__ import annotations

import statistics
import sys
import time

import torch
from omegaconf import OmegaConf

import configs
import envs
from benchmarks import cli
from worldmodels import build_model
from worldmodels.training import TrainConfig, model_config, train_step

WARMUP = 3


def seconds_per_step(name: str, steps: int) -> tuple[float, str, int]:
    cfg = configs.load_config("train", [f"env={name}"])
    tc = TrainConfig(**OmegaConf.to_container(cfg.train, resolve=True))
    env = envs.make(OmegaConf.to_container(cfg.env, resolve=True))
    obs_shape, A = tuple(env.observation_space.shape), int(env.action_space.shape[0])
    state_variables = env.state_variables
    S = 1 + max(i for v in state_variables for i in v.index)  # the variables cover every state column
    env.close()
    torch.manual_seed(0)
    model = build_model(model_config(cfg.env.obs_type, obs_shape, A, OmegaConf.to_container(cfg.model, resolve=True),
                                     state_variables))
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    B, L = tc.batch_size, tc.seq_len
    frames = model.history - 1 + L  # a sequence and the frames before it that its first window sees
    if cfg.env.obs_type == "pixels":
        obs = torch.randint(0, 256, (B, frames, *obs_shape), dtype=torch.uint8)
    else:
        obs = torch.randn(B, frames, *obs_shape)
    actions, states = torch.randn(B, L - 1, A), torch.randn(B, frames, S)
    times = []
    for step in range(WARMUP + steps):
        start = time.perf_counter()
        train_step(model, model, optimizer, tc, obs, actions, seed=0, step=step, states=states)
        times.append(time.perf_counter() - start)
    shape = f"{cfg.env.obs_type} {'x'.join(map(str, obs_shape))}, batch {B}x{L}"
    return statistics.median(times[WARMUP:]), shape, tc.steps


def main(argv: list[str]) -> None:
    args = cli.parse(argv, {"envs": ",".join(envs.ENVS), "steps": "20"}, "envs=NAME[,NAME...], steps=N")
    names = cli.env_names(args["envs"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| env | input | ms/step | steps/s | train.steps | est. minutes |")
    print("|---|---|---|---|---|---|")
    for name in names:
        sec, shape, total = seconds_per_step(name, int(args["steps"]))
        print(f"| {name} | {shape} | {1000 * sec:.1f} | {1 / sec:.1f} | {total} | {total * sec / 60:.1f} |")



if __name__ == "__main__":
    main(sys.argv[1:])
