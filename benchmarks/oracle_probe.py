"""Model or search? Plan to goals whose solution is known: the data policy's own actions.

    python -m benchmarks.oracle_probe env=NAME [checkpoint=PATH] [planner=grasp] [planner.KEY=VALUE ...]
                                      [env.KEY=VALUE ...]
                                      [tasks=50] [seed=0]

Each task is drawn as the env's `goal_mode=trajectory` tasks are (a start from `sample_state`, the goal where the
data policy is after one planning horizon, `mpc.horizon` x `action_block` native steps), and its actions are
kept: a plan that reaches the goal exactly. For each task, with the env's (or `checkpoint`'s) world model:
- the model's predicted terminal error ||s_H - z_g|| of those known actions (the oracle) and of the planner's cold
  plan, relative to the start's ||z_0 - z_g||;
- both plans executed open loop in the env: success at any of the H planner steps (the oracle's is 1 by
  construction: the probe checks it) and the final task distance;
- the planner's realised error: the env's final state under its plan, encoded, against z_g.
Reading: if the planner's plans score at least as well as the oracle in the model but succeed far less in the env,
the model is what limits success (the planner exploits where it is wrong); if they score worse than the oracle, the
search is; if the oracle itself scores badly, the model does not know the solution. Of a model-limited env, the
realised error says which part: far above the predicted error, the plan exploits prediction errors; about as small
yet the task missed, latent distance does not measure the task (the cost landscape).
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import torch
from omegaconf import OmegaConf

import configs
import envs
import planners
from agent.evaluation import load_world_model
from benchmarks import cli


def draw_task(env, rng: np.random.Generator, native_steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start state, goal state, the data policy's native actions (native_steps, action_dim) from start to goal)."""
    start = env.sample_state(rng)
    env.set_state(start)
    actions = []
    for _ in range(native_steps):
        action = np.clip(env.data_action(rng), env.action_low, env.action_high).astype(np.float32)
        env._step_physics(action.astype(np.float64))
        actions.append(action)
    return start, env.get_state(), np.array(actions)


def execute(env, start: np.ndarray, goal: np.ndarray, block_actions: np.ndarray) -> tuple[bool, float, np.ndarray]:
    """Run (H, action_block * action_dim) native block actions from `start`: (success at any step, final distance,
    final state)."""
    env.set_state(start)
    hit = False
    for block in block_actions:
        for action in block.reshape(env.cfg.action_block, env.action_dim):
            env._step_physics(np.clip(action, env.action_low, env.action_high).astype(np.float64))
        hit = hit or env.is_success(env.get_state(), goal)
    return hit, env.distance(env.get_state(), goal), env.get_state()


def probe(env_name: str, checkpoint: str | None, planner_name: str, tasks: int, seed: int,
          overrides: tuple[str, ...] = ()) -> dict:
    cfg = configs.load_config("evaluate", [f"env={env_name}", f"planner={planner_name}", *overrides])
    env_cfg = envs.env_config(OmegaConf.to_container(cfg.env))
    model = load_world_model(env_cfg, checkpoint)[0]
    planner = planners.make(OmegaConf.to_container(cfg.planner))
    horizon, k = int(cfg.mpc.horizon), model.history
    env = envs.make(env_cfg)
    env.reset(seed=seed)   # some simulators must be reset once before set_state

    def encode(state):     # a state at rest, seen for k frames (as the agent encodes goals and first windows)
        obs = env.observe_state(state)
        return model.encode(torch.as_tensor(np.repeat(obs[None, None], k, axis=1)))

    rows = []
    for i in range(tasks):
        rng = np.random.default_rng([seed, i])
        start, goal, native = draw_task(env, rng, horizon * env_cfg.action_block)
        oracle = native.reshape(horizon, -1)                                       # (H, A) native block actions
        z0, zg = encode(start), encode(goal)
        plan = planner.plan(model, z0, zg, horizon, generator=torch.Generator().manual_seed(seed + i))
        with torch.no_grad():
            oracle_err = (model.rollout(z0, model.normalize_actions(torch.as_tensor(oracle[None])))[:, -1] - zg).norm()
            plan_err = (model.rollout(z0, plan.actions)[:, -1] - zg).norm()
        plan_native = model.denormalize_actions(plan.actions)[0].numpy()
        executed = execute(env, start, goal, plan_native)
        with torch.no_grad():
            realised_err = (encode(executed[2]) - zg).norm()
        rows.append({"start": (z0 - zg).norm().item(), "oracle_err": oracle_err.item(), "plan_err": plan_err.item(),
                     "realised_err": realised_err.item(), "oracle": execute(env, start, goal, oracle)[:2],
                     "plan": executed[:2]})
    env.close()
    return {"rows": rows, "horizon": horizon}


def summary(env_name: str, planner_name: str, result: dict) -> str:
    rows = result["rows"]
    start = np.array([r["start"] for r in rows])
    rel = lambda key: np.median(np.array([r[key] for r in rows]) / start)   # noqa: E731
    better = np.mean([r["plan_err"] <= r["oracle_err"] for r in rows])
    return (f"| {env_name} | {planner_name} | {len(rows)} | {result['horizon']} | {rel('oracle_err'):.2f} | "
            f"{rel('plan_err'):.2f} | {rel('realised_err'):.2f} | {better:.2f} | {np.mean([r['oracle'][0] for r in rows]):.2f} | "
            f"{np.mean([r['plan'][0] for r in rows]):.2f} | {np.median([r['plan'][1] for r in rows]):.3g} |")


HEADER = ("| env | planner | tasks | H | oracle predicted ‖s_H − zg‖ / ‖z0 − zg‖ (median) | "
          "planner's (median) | planner's realised: ‖enc(env's final state) − zg‖ / ‖z0 − zg‖ (median) | "
          "planner ≤ oracle in the model | oracle success (check) | planner open-loop success | "
          "planner final distance (median) |\n" + "|---" * 11 + "|")


def main(argv: list[str]) -> None:
    overrides = tuple(a for a in argv if a.startswith(("planner.", "env.")))   # checked by the config loader
    args = cli.parse([a for a in argv if a not in overrides],
                     {"env": "", "checkpoint": "", "planner": "grasp", "tasks": "50", "seed": "0"},
                     "env=NAME checkpoint=PATH planner=NAME planner.KEY=VALUE env.KEY=VALUE tasks=N seed=N")
    torch.set_num_threads(1)
    names = cli.env_names(args["env"]) if args["env"] else list(envs.ENVS)
    try:
        configs.load_config("evaluate", [f"env={names[0]}", f"planner={args['planner']}", *overrides])
    except configs.ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    label = " ".join([args["planner"], *(o for o in overrides if o.startswith("planner."))])
    env_overrides = [o for o in overrides if o.startswith("env.")]
    print(HEADER)
    for name in names:
        result = probe(name, args["checkpoint"] or None, args["planner"], int(args["tasks"]), int(args["seed"]),
                       overrides)
        print(summary(" ".join([name, *env_overrides]), label, result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
