"""Env speed: steps per second of every env, pixels and state observations, alone and in an EnvBatch of 16.

    python -m benchmarks.env_speed [envs=wall,pointmaze,reacher,pusht] [seconds=1.0]

One step = one planner step (`action_block` native actions, default config); batched figures count every env of
the batch (B * batch steps / s). Actions are uniform random in the action box. Each cell runs for about `seconds`
after a reset and a warm-up step. Prints a markdown table.
"""
from __future__ import annotations

import sys
import time

import numpy as np

import envs
from benchmarks import cli

BATCH = 16


def steps_per_second(step, actions: np.ndarray, n_envs: int, seconds: float) -> float:
    step(actions[0])  # warm-up (first render, caches)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step(actions[steps % len(actions)])
        steps += 1
    return n_envs * steps / (time.perf_counter() - start)


def measure(name: str, obs_type: str, seconds: float) -> tuple[float, float, int]:
    rng = np.random.default_rng(0)
    env = envs.make(name, obs_type=obs_type)
    env.reset(seed=0)
    low, high = env.action_space.low, env.action_space.high
    single = steps_per_second(env.step, rng.uniform(low, high, (64, *low.shape)).astype(np.float32), 1, seconds)
    block = env.cfg.action_block
    env.close()
    batch = envs.EnvBatch(envs.env_config(name, obs_type=obs_type), BATCH)
    batch.reset(list(range(BATCH)))
    actions = rng.uniform(low, high, (64, BATCH, *low.shape)).astype(np.float32)
    batched = steps_per_second(batch.step, actions, BATCH, seconds)
    batch.close()
    return single, batched, block


def main(argv: list[str]) -> None:
    args = cli.parse(argv, {"envs": ",".join(envs.ENVS), "seconds": "1.0"}, "envs=NAME[,NAME...], seconds=S")
    names = cli.env_names(args["envs"])
    print(f"| env | obs | steps/s single | steps/s EnvBatch({BATCH}) | native actions/s single |")
    print("|---|---|---|---|---|")
    for name in names:
        for obs_type in ("pixels", "state"):
            single, batched, block = measure(name, obs_type, float(args["seconds"]))
            print(f"| {name} | {obs_type} | {single:,.0f} | {batched:,.0f} | {single * block:,.0f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
