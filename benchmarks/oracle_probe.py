"""Model or search? Plan to goals whose solution is known: the data policy's own actions.

    python -m benchmarks.oracle_probe env=NAME [checkpoint=PATH] [planner=grasp] [planner.KEY=VALUE ...]
                                      [env.KEY=VALUE ...] [tasks=50] [seed=0]

Each task is drawn as the env's `goal_mode=trajectory` tasks are (a start from `sample_state`, the goal where the
data policy is after one planning horizon, `mpc.horizon` x `action_block` native steps), and its actions are
kept: a plan that reaches the goal exactly. For each task, with the env's (or `checkpoint`'s) world model:
- the model's predicted terminal error ||s_H - z_g|| of those known actions (the oracle) and of the planner's cold
  plan, relative to the start's ||z_0 - z_g||;
- both plans executed open loop in the env: success at any of the H planner steps (the oracle's is 1 by
  construction: the probe checks it) and the final task distance;
- the realised errors: the env's last k = `model.history` planner-step states under each plan, encoded as the
  agent sees them, against z_g.
z_0 and z_g are encoded as evaluate.py encodes a first window and a goal: the state repeated k times (for k > 1 a
picture at rest). The goal is where the data policy is, usually moving, so for a model with history k > 1 the
oracle's realised error is not 0: it is how far the goal's velocity puts the state the task asks for from the
at-rest goal latent (for k = 1 it is exactly 0, a check of the probe).
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
    the states (H+1, S) at the start and after every block)."""
    env.set_state(start)
    hit, states = False, [env.get_state()]
    for block in block_actions:
        for action in block.reshape(env.cfg.action_block, env.action_dim):
            env._step_physics(np.clip(action, env.action_low, env.action_high).astype(np.float64))
        states.append(env.get_state())
        hit = hit or env.is_success(states[-1], goal)
    return hit, env.distance(states[-1], goal), np.array(states)


def last_window(states: np.ndarray, k: int) -> np.ndarray:
    """The last k of (T, S) planner-step states, oldest first, the first repeated where fewer than k came before
    (as the agent fills its first window)."""
    return np.concatenate([np.repeat(states[:1], max(0, k - len(states)), axis=0), states[-k:]])


def planner_label(planner_cfg) -> str:
    """The planner's name and every setting that differs from its configs/planner file: the env file's
    planner_settings and the command line's planner.KEY=VALUE, so a row says what planned."""
    own = OmegaConf.load(configs.CONFIG_DIR / "planner" / f"{planner_cfg.name}.yaml").planner
    return " ".join([planner_cfg.name, *(f"{k}={v}" for k, v in planner_cfg.items() if own.get(k) != v)])


def probe(env_name: str, checkpoint: str | None, planner_name: str, tasks: int, seed: int,
          overrides: tuple[str, ...] = ()) -> dict:
    cfg = configs.load_config("evaluate", [f"env={env_name}", f"planner={planner_name}", *overrides])
    env_cfg = envs.env_config(OmegaConf.to_container(cfg.env))
    model = load_world_model(env_cfg, checkpoint)[0]
    planner = planners.make(OmegaConf.to_container(cfg.planner))
    horizon, k = int(cfg.mpc.horizon), model.history
    env = envs.make(env_cfg)
    env.reset(seed=seed)   # some simulators must be reset once before set_state

    def encode(window):    # (k, S) states, oldest first -> (1, D)
        obs = np.stack([env.observe_state(state) for state in window])[None]
        return model.encode(torch.as_tensor(obs), torch.as_tensor(np.asarray(window)[-1:]))

    rows = []
    for i in range(tasks):
        rng = np.random.default_rng([seed, i])
        start, goal, native = draw_task(env, rng, horizon * env_cfg.action_block)
        oracle = native.reshape(horizon, -1)                                       # (H, A) native block actions
        z0, zg = encode(last_window(start[None], k)), encode(last_window(goal[None], k))  # as evaluate.py: at rest
        plan = planner.plan(model, z0, zg, horizon, generator=torch.Generator().manual_seed(seed + i))
        with torch.no_grad():
            oracle_err = (model.rollout(z0, model.normalize_actions(torch.as_tensor(oracle[None])))[:, -1] - zg).norm()
            plan_err = (model.rollout(z0, plan.actions)[:, -1] - zg).norm()
        plan_native = model.denormalize_actions(plan.actions)[0].numpy()
        executed, replayed = execute(env, start, goal, plan_native), execute(env, start, goal, oracle)
        with torch.no_grad():   # the env's last k states under each plan, encoded as the agent would see them
            realised_err = (encode(last_window(executed[2], k)) - zg).norm()
            oracle_realised = (encode(last_window(replayed[2], k)) - zg).norm()
        rows.append({"start": (z0 - zg).norm().item(), "oracle_err": oracle_err.item(), "plan_err": plan_err.item(),
                     "oracle_realised": oracle_realised.item(), "realised_err": realised_err.item(),
                     "oracle": replayed[:2], "plan": executed[:2]})
    env.close()
    return {"rows": rows, "horizon": horizon, "planner": planner_label(cfg.planner)}


def summary(env_name: str, planner_name: str, result: dict) -> str:
    rows = result["rows"]
    start = np.array([r["start"] for r in rows])
    rel = lambda key: np.median(np.array([r[key] for r in rows]) / start)   # noqa: E731
    better = np.mean([r["plan_err"] <= r["oracle_err"] for r in rows])
    return (f"| {env_name} | {planner_name} | {len(rows)} | {result['horizon']} | {rel('oracle_err'):.2f} | "
            f"{rel('oracle_realised'):.2f} | {rel('plan_err'):.2f} | {rel('realised_err'):.2f} | {better:.2f} | "
            f"{np.mean([r['oracle'][0] for r in rows]):.2f} | "
            f"{np.mean([r['plan'][0] for r in rows]):.2f} | {np.median([r['plan'][1] for r in rows]):.3g} |")


HEADER = ("| env | planner | tasks | H | oracle predicted ‖s_H − zg‖ / ‖z0 − zg‖ (median) | "
          "oracle realised ‖E(env's last k states) − zg‖ / ‖z0 − zg‖ (median) | planner's predicted (median) | "
          "planner's realised (median) | "
          "planner ≤ oracle in the model | oracle success (check) | planner open-loop success | "
          "planner final distance (median) |\n" + "|---" * 12 + "|")


def main(argv: list[str]) -> None:
    overrides = tuple(a for a in argv if a.startswith(("planner.", "env.")))   # checked by the config loader
    args = cli.parse([a for a in argv if a not in overrides],
                     {"env": "", "checkpoint": "", "planner": "grasp", "tasks": "50", "seed": "0"},
                     "env=NAME checkpoint=PATH planner=NAME planner.KEY=VALUE env.KEY=VALUE tasks=N seed=N")
    torch.set_num_threads(1)
    names = cli.env_names(args["env"]) if args["env"] else list(envs.ENVS)
    try:  # every env's config (their planner_settings differ) before the first task runs
        for name in names:
            configs.load_config("evaluate", [f"env={name}", f"planner={args['planner']}", *overrides])
    except configs.ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    env_overrides = [o for o in overrides if o.startswith("env.")]
    print(HEADER)
    for name in names:
        result = probe(name, args["checkpoint"] or None, args["planner"], int(args["tasks"]), int(args["seed"]),
                       overrides)
        print(summary(" ".join([name, *env_overrides]), result["planner"], result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
