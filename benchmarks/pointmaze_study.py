"""What limits a pointmaze model's MPC success: the task classes it fails, and whether the model or the search does.

    python -m benchmarks.pointmaze_study results=PATH [checkpoint=PATH] [probes=40] [seed=0]

`results` is an `evaluate.py env=pointmaze` results.json (its env config and per-episode seeds are reused);
`checkpoint` defaults to the one that run used; state and pixel models alike (a pixel model sees the frames of the
probe's states: at rest its window repeats one frame, as the agent's at reset). Prints four markdown tables:
1. success by task class: whether the straight segment start -> goal crosses a wall block (`line_blocked`);
2. a stopping probe near the goals: from rest 0.6 away from each of the first `probes` goals, a PD controller that
   stops the ball on the goal (the data policy's stopping gains) for one planning horizon. Its real final distance
   checks the probe; the model's predicted terminal latent error ||s_H - z_g|| for the PD's actions says whether
   the model knows how to stop there, and the planner's (a cold solve) whether the search finds as good a plan;
3. a route probe on the wall-blocked tasks: a PD that follows the corridors (cell centres of the shortest route)
   and stops on the goal, from the task's start, for one planning horizon: the same columns, plus the latent
   distance of the real final state to the goal's (what the cost says about where the ball really ends).
A model that predicts the PD's terminal error well below the start's and a planner whose plans score worse in the
model point at the search; a PD terminal error near or above the start's points at the model.
4. the cost landscape at rest: for every pair of free cell centres (ball at rest), the planner's latent distance
   against the length of the shortest route between them in cells, and, for a single model with a reach head, the
   distances of its JEPA part and of its reach part (in planner steps: the part divided by reach_scale). A cost
   the planner can follow grows with the route; one that rates a cell across a wall as near as a neighbour does not.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import torch
from omegaconf import OmegaConf

import envs
import planners
from agent.evaluation import load_world_model
from benchmarks import cli
from benchmarks.oracle_probe import last_window
from envs.pointmaze import ROUTE_KD, ROUTE_KP, STOP_KD, STOP_KP
from worldmodels import provenance

PROBE_RADIUS = 0.6              # just outside the success radius 0.5


def pd_actions(env, goal_xy: np.ndarray, waypoints: list[np.ndarray], steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Run the PD from the env's current state for `steps` native steps; returns the native actions (steps, 2) and
    the states after each of them (steps, 4)."""
    actions, states = [], []
    for _ in range(steps):
        state = env.get_state()
        if waypoints and np.linalg.norm(waypoints[0] - state[:2]) < 0.35:
            waypoints.pop(0)
        force = (ROUTE_KP * (waypoints[0] - state[:2]) - ROUTE_KD * state[2:] if waypoints
                 else STOP_KP * (goal_xy - state[:2]) - STOP_KD * state[2:])
        force = np.clip(force, env.action_low, env.action_high)
        env._step_physics(force)
        actions.append(force)
        states.append(env.get_state())
    return np.array(actions, dtype=np.float32), np.array(states)


def encode_states(env, model, windows: np.ndarray) -> torch.Tensor:
    """Planner latents (N, D) of (N, k, 4) state windows, k = model.history, oldest first, observed as the env's
    observation type: a pixel model sees the frames of those states, as the agent's window would."""
    obs = np.stack([[env.observe_state(s) for s in window] for window in windows])
    with torch.no_grad():
        return model.encode(torch.as_tensor(obs), torch.as_tensor(windows[:, -1]))


def probe(env, model, planner, start: np.ndarray, goal: np.ndarray, waypoints: list, horizon: int) -> dict:
    """The PD's and the planner's predicted terminal latent errors from `start` (a state) to `goal`."""
    k, block = model.history, env.cfg.action_block
    env.set_state(start)
    native, visited = pd_actions(env, goal[:2], waypoints, horizon * block)
    final = last_window(visited[block - 1::block], k)   # the agent's window after the PD's planner steps
    windows = np.stack([last_window(start[None], k), last_window(goal[None], k), final])   # start, goal at rest
    z0, zg, z_real = encode_states(env, model, windows)[:, None]
    pd = model.normalize_actions(torch.as_tensor(native.reshape(1, horizon, -1)))
    plan = planner.plan(model, z0, zg, horizon)
    with torch.no_grad():
        pd_err = (model.rollout(z0, pd)[:, -1] - zg).norm().item()
        plan_err = (model.rollout(z0, plan.actions)[:, -1] - zg).norm().item()
    return {"start_err": (z0 - zg).norm().item(), "pd_real_dist": env.distance(env.get_state(), goal),
            "pd_real_latent": (z_real - zg).norm().item(), "pd_pred_err": pd_err, "plan_pred_err": plan_err}


def landscape(env, model) -> str:
    """Table 4 (module docstring): mean latent distances between free cell centres at rest, by route length."""
    cells = [tuple(c) for c in env.free_cells]
    s = encode_states(env, model, np.stack([last_window(np.array([[*env.cell_xy(c), 0.0, 0.0]]), model.history)
                                            for c in cells]))
    parts = {"planner latent": s}
    if getattr(model, "reach", None) is not None:     # a single JEPA with a reach head
        D = model.cfg.latent_dim
        parts.update({"JEPA part": s[:, :D], "reach part / reach_scale": s[:, D:] / model.cfg.reach_scale})
    dist = {name: torch.cdist(x, x).cpu().numpy() for name, x in parts.items()}
    by_length: dict[int, list[tuple[int, int]]] = {}
    for i, a in enumerate(cells):
        for j, b in enumerate(cells[i + 1:], i + 1):
            by_length.setdefault(len(env._path(a, b)), []).append((i, j))
    lines = ["| route length (cells) | pairs | " + " | ".join(f"mean {n} distance" for n in dist) + " |",
             "|---" * (2 + len(dist)) + "|"]
    for length, pairs in sorted(by_length.items()):
        means = [np.mean([d[i, j] for i, j in pairs]) for d in dist.values()]
        lines.append(f"| {length} | {len(pairs)} | " + " | ".join(f"{m:.2f}" for m in means) + " |")
    return "\n".join(lines)


def table(rows: list[dict], title: str) -> str:
    keys = ("start_err", "pd_real_dist", "pd_real_latent", "pd_pred_err", "plan_pred_err")
    mean = {k: np.mean([r[k] for r in rows]) for k in keys}
    better = np.mean([r["plan_pred_err"] < r["pd_pred_err"] for r in rows])
    return (f"| {title} | {len(rows)} | {mean['start_err']:.2f} | {mean['pd_real_dist']:.2f} | "
            f"{mean['pd_real_latent']:.2f} | {mean['pd_pred_err']:.2f} | {mean['plan_pred_err']:.2f} | {better:.2f} |")


def main(argv: list[str]) -> None:
    args = cli.parse(argv, {"results": "", "checkpoint": "", "probes": "40", "seed": "0"},
                     "results=PATH checkpoint=PATH probes=N seed=N")
    if not args["results"] or not Path(args["results"]).is_file():
        raise SystemExit(f"error: results={args['results']!r}: give an evaluate.py env=pointmaze results.json")
    res = json.loads(Path(args["results"]).read_text())
    if res["env"] != "pointmaze":
        raise SystemExit(f"error: results={args['results']!r} is for env {res['env']!r}; this study is pointmaze's")
    if not args["checkpoint"] and res.get("checkpoint_sha256") and Path(res["checkpoint"]).is_file():
        now = provenance.file_sha256(res["checkpoint"])   # e.g. a shipped file replaced since the run
        if now != res["checkpoint_sha256"]:
            raise SystemExit(f"error: {res['checkpoint']} has changed since that run (sha256 {now[:12]} != "
                             f"{res['checkpoint_sha256'][:12]}); pass checkpoint=PATH, the model it evaluated")
    torch.set_num_threads(1)
    env_cfg = envs.env_config(res["config"]["env"])
    env = envs.make(env_cfg)
    model = load_world_model(env_cfg, args["checkpoint"] or res["checkpoint"])[0]
    planner = planners.make(OmegaConf.to_container(OmegaConf.create(res["config"]["planner"])))
    horizon = res["config"]["mpc"]["horizon"]
    rng = np.random.default_rng(int(args["seed"]))

    tasks = []
    for ep in res["per_episode"]:
        _, info = env.reset(seed=ep["seed"])
        tasks.append((info["state"], info["goal_state"], ep["success"]))
    print(f"model {args['checkpoint'] or res['checkpoint']}, {res['planner']}, horizon {horizon}\n")
    print("| straight line start -> goal | tasks | success |\n|---|---|---|")
    for name, blocked in (("clear", False), ("crosses a wall", True)):
        hits = [ok for start, goal, ok in tasks if env.line_blocked(start[:2], goal[:2]) == blocked]
        print(f"| {name} | {len(hits)} | {np.mean(hits):.2f} ({sum(hits)}/{len(hits)}) |")

    near = []
    for _, goal, _ in tasks[:int(args["probes"])]:
        for _ in range(20):   # a free point at rest PROBE_RADIUS from the goal
            angle = rng.uniform(0, 2 * np.pi)
            xy = goal[:2] + PROBE_RADIUS * np.array([np.cos(angle), np.sin(angle)])
            if not env.grid[env.xy_cell(xy)] and not env.line_blocked(xy, goal[:2]):
                near.append(probe(env, model, planner, np.array([*xy, 0.0, 0.0]), goal, [], horizon))
                break
    route = [probe(env, model, planner, start, goal,
                   [env.cell_xy(c) for c in env._path(env.xy_cell(start[:2]), env.xy_cell(goal[:2]))[:-1]], horizon)
             for start, goal, _ in tasks if env.line_blocked(start[:2], goal[:2])]
    print("\n| probe | tasks | ‖z0 − zg‖ | PD real final distance | ‖E(PD real final) − zg‖ | "
          "PD predicted ‖s_H − zg‖ | planner predicted ‖s_H − zg‖ | planner better in the model |")
    print("|---" * 8 + "|")
    print(table(near, f"stop from rest {PROBE_RADIUS} away"))
    print(table(route, "follow the corridors (wall-blocked tasks)"))
    print("\ncost landscape at rest, free cell centres:\n")
    print(landscape(env, model))
    env.close()


if __name__ == "__main__":
    main(sys.argv[1:])
