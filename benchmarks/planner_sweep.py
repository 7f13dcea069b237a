"""Planner benchmark: success and time to success of every planner over horizons, on identical tasks and one model.

    python -m benchmarks.planner_sweep [env=NAME] [planners=[grasp,cem,gd,mppi,latco]] [horizons=[5,10,20,30]]
        [episodes=N] [seed=S] [logdir=DIR] [mode=open_loop|mpc] [checkpoint=PATH] [budget=field|equal_time]
        [allow_dirty=true]
    torchrun --nproc_per_node=K -m benchmarks.planner_sweep ...    (episodes shared among K processes)
                                                                   (defaults: configs/benchmark.yaml)
From the repo root; `python benchmarks/planner_sweep.py ...` works too where the project is installed (.ci/setup).
Tasks: a horizon-H task starts at a sampled state and its goal is where the env's data policy goes in H planner
steps (env goal_mode=trajectory, goal_steps = H * action_block native steps). Episode i has the same seed, hence
the same task, for every planner; its start state is also the same at every horizon.
  open_loop: one plan at horizon H from the start, all H planner steps executed. success = the goal reached after
      ANY of the H steps (LeWM protocol); success_final = reached at the last step (DINO-WM protocol).
  mpc: the MPC agent (agent/mpc.py) at horizon H with a budget of mpc.budget_factor * H env steps, ending at the
      first success; warm re-plans use the planner's warm iterations.
Both modes run through `agent.evaluation.run_episodes` (open loop is the MPC agent with budget = replan_every = H,
no warm start); each cell's row is `agent.evaluation.summarize`, the summary evaluate.py writes too.
Budgets: `field` runs each planner with its config's iterations (cold `iters`, warm `iters_warm`); `equal_time`
gives every planner `time_per_plan` seconds per plan call: each planner is calibrated at each horizon on a warm-up
batch of `batch` problems (per-call overhead and seconds per iteration fitted from two timed calls, then the count
corrected by timing calls at it, up to CALIBRATION_ROUNDS) and runs the iteration count whose call takes closest
to time_per_plan, cold and warm alike. The seconds that calibration call took and the mean seconds of the sweep's
own plan calls are in every row (in mpc mode later calls plan for fewer problems, as episodes finish).
Times: wall clock of batched plan calls, one torch thread per process. An episode's time to success is its own
planning time up to success: each batched solve's seconds divided by the problems in it, summed over its solves
(env stepping not counted; agent/mpc.py `Episode`); the table gives the median over successful episodes.
Search in the model: every row has `median_cold_plan_cost`, the median true rollout cost in the model of each
episode's first (cold) plan (what `Plan.cost` reports); lower is a better search of the model's cost, which does not
by itself mean more success in the env.
Paired comparison: every planner solves the same tasks, so results.md gives, per horizon, GRASP (or the first
planner when grasp is not swept) against each other planner: the tasks only one of the two solved and the exact
McNemar p-value (two-sided binomial test on those discordant tasks).
Provenance: results.json records the git commit, the host, CPU model, CPU count and torch threads, and the 1-min
load average at the start and end of every cell (other load on the machine slows every timing). A logdir under
benchmarks/results (where committed results live) is refused while tracked files outside benchmarks/results have
uncommitted changes, unless allow_dirty=true, which is recorded. Paths in results are relative to the repo.

Outputs in DIR: cells/<planner>-H<h>-<mode>.json (one per finished cell, written atomically; a rerun with the same
arguments and checkpoint content (sha256) skips them, one with another model at that path is refused), budgets.json
(timings and iteration counts, reused on rerun with the same model), results.json, results.md
(the paper's layout), results.png, and TensorBoard runs tb/<cell> with HParams
(`.venv/bin/tensorboard --logdir DIR/tb`; not committed: .gitignore leaves out benchmarks/results/*/tb/).
"""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import dataclasses
import json
import math
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

import configs
import envs
import planners
from agent import MPCConfig, sharding
from agent.evaluation import USER_ERRORS, episode_seeds, load_world_model, run_episodes, summarize, write_json
from agent.logging import EvalLogger, tensorboard_command
from configs import ConfigError
from worldmodels import provenance

MODES, BUDGETS = ("open_loop", "mpc"), ("field", "equal_time")
PROBE_FRACTION = 0.1  # of a planner's field iterations: the first timed call
CALIBRATION_ROUNDS = 3  # equal_time: timed calls that correct the fitted iteration count
RESULTS_DIR = provenance.REPO / "benchmarks" / "results"  # committed results
TIMING_KEYS = ("median_time_to_success_s", "mean_plan_time_s", "sec_per_iter", "time_to_success_s", "plan_time_s")
PROTOCOL = {"open_loop": "one plan at horizon H, all H planner steps executed; success: goal reached after any of "
                         "them (LeWM); success_final: at the last one (DINO-WM)",
            "mpc": "MPC agent at horizon H, budget {factor} * H env steps, ends at first success; success: goal "
                   "reached after any step within the budget (LeWM)"}


def cell_name(planner: str, horizon: int, mode: str) -> str:
    return f"{planner}-H{horizon}-{mode}"


def machine() -> dict:
    """Where the timings were taken: host, CPU model, logical CPUs and torch threads."""
    cpu = platform.processor() or None
    if Path("/proc/cpuinfo").exists():
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {"host": platform.node(), "cpu": cpu, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}


def load_1min() -> float:
    return os.getloadavg()[0]


# ---- configuration ------------------------------------------------------------------------------------------------
def planner_configs(cfg) -> dict[str, dict]:
    """name -> full planner config (configs/planner/<base>.yaml with the variant's overrides), each checked."""
    variants = OmegaConf.to_container(cfg.variants, resolve=True)
    names = list(cfg.planners)
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"planners={names}: expected a non-empty list of distinct names")
    out = {}
    for name in names:
        overrides = dict(variants.get(name, {"base": name}))
        base = overrides.pop("base", None)
        if base not in planners.PLANNERS or (name in variants and name in planners.PLANNERS):
            raise ConfigError(f"unknown planner {name!r}; choose from {', '.join(planners.PLANNERS)} or the variants "
                              f"{', '.join(variants)}")
        field = OmegaConf.to_container(OmegaConf.load(configs.CONFIG_DIR / "planner" / f"{base}.yaml"))["planner"]
        out[name] = {**field, **overrides}
        planners.make(out[name])  # raises PlannerError naming a bad key or value
    return out


def check(cfg) -> tuple[envs.EnvConfig, list[int]]:
    env_cfg = envs.env_config(OmegaConf.to_container(cfg.env, resolve=True))
    horizons = cfg.horizons if cfg.horizons is not None else cfg.default_horizons.get(env_cfg.name)
    if horizons is None:
        raise ConfigError(f"no default horizons for env {env_cfg.name!r}; pass horizons=[...]")
    horizons = list(horizons)
    if not horizons or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in horizons):
        raise ConfigError(f"horizons={horizons}: expected a non-empty list of ints >= 1")
    for key, accepted in (("mode", MODES), ("budget", BUDGETS)):
        if cfg[key] not in accepted:
            raise ConfigError(f"{key}={cfg[key]!r}: choose one of {', '.join(accepted)}")
    for key in ("episodes", "batch", "mpc.budget_factor"):
        if OmegaConf.select(cfg, key) < 1:
            raise ConfigError(f"{key}={OmegaConf.select(cfg, key)}: must be >= 1")
    if cfg.time_per_plan <= 0:
        raise ConfigError(f"time_per_plan={cfg.time_per_plan}: must be > 0 seconds")
    logdir = Path(cfg.logdir or f"runs/bench/{env_cfg.name}-{cfg.mode}-{cfg.budget}")
    if logdir.resolve().is_relative_to(RESULTS_DIR) and not cfg.allow_dirty and provenance.uncommitted_changes():
        raise ConfigError(f"logdir={cfg.logdir} is where committed results live, but tracked files have uncommitted "
                          f"changes (git status); commit them first, or pass allow_dirty=true (recorded)")
    return env_cfg, horizons, logdir


def mpc_config(cfg, horizon: int) -> MPCConfig:
    if cfg.mode == "open_loop":
        return MPCConfig(horizon=horizon, budget=horizon, replan_every=horizon, warm_start=False,
                         stop_on_success=False)
    return MPCConfig(horizon=horizon, budget=cfg.mpc.budget_factor * horizon, replan_every=cfg.mpc.replan_every,
                     warm_start=cfg.mpc.warm_start)


# ---- iteration budgets -----------------------------------------------------------------------------------------------
def calibrate(model, pcfg: dict, h: int, start, goal, seconds: float | None) -> dict:
    """{sec_per_iter, overhead_s, iters, plan_s} of a planner at horizon h on the warm-up problems start/goal
    (B, D). Per-call overhead and seconds per iteration are fitted from calls of n and 2n iterations
    (n = PROBE_FRACTION of its field iterations). With `seconds` (equal_time), `iters` is the count whose call
    takes closest to it: the fit's count, corrected by timing calls at it; `plan_s` is the last timed call there."""
    planner = planners.make(pcfg)

    def timed(iters: int) -> float:
        tic = time.perf_counter()
        planner.plan(model, start, goal, h, iters=iters)
        return time.perf_counter() - tic

    timed(1)  # first-call allocations at this horizon are not iterations
    n = max(1, math.ceil(PROBE_FRACTION * pcfg["iters"]))
    t1, t2 = timed(n), timed(2 * n)
    per_iter = (t2 - t1) / n if t2 > t1 else t2 / (2 * n)  # timing noise: no overhead can be told apart
    overhead = max(t1 - n * per_iter, 0.0)
    out = {"sec_per_iter": per_iter, "overhead_s": overhead, "iters": None, "plan_s": None}
    if seconds is None:
        return out
    # a noisy fit must not send a timed call far past the budget: at most 4x the count that counts overhead as
    # iteration time (which errs low), and at most 4x per correction
    low = max(1, math.floor(seconds * 2 * n / t2))
    iters = min(max(low, round((seconds - overhead) / per_iter)), 4 * low)
    for _ in range(CALIBRATION_ROUNDS):
        plan_s = timed(iters)
        better = round(iters * max(seconds - overhead, 0.0) / max(plan_s - overhead, 1e-9))
        better = min(max(1, better, iters // 4), 4 * iters)
        if better == iters:
            break
        iters = better
    else:
        plan_s = timed(iters)
    return {**out, "iters": iters, "plan_s": plan_s}


def budgets(cfg, logdir: Path, model, checkpoint_sha256: str, configs_, horizons, tasks) -> dict[str, dict]:
    """'<planner>-H<h>' -> {sec_per_iter, iters, iters_warm}, from DIR/budgets.json when it has them for this
    checkpoint (a resumed sweep keeps its iteration counts), else timed now and added to it."""
    path = logdir / "budgets.json"
    settings = {"budget": cfg.budget, "time_per_plan": cfg.time_per_plan, "batch": cfg.batch, "calibration": 2,
                "checkpoint_sha256": checkpoint_sha256}
    saved = json.loads(path.read_text()) if path.exists() else {}
    entries = saved.get("entries", {}) if saved.get("settings") == settings else {}
    missing = {name: pcfg for name, pcfg in configs_.items() if any(f"{name}-H{h}" not in entries for h in horizons)}
    if missing:
        n = min(cfg.batch, cfg.episodes)
        states, goal_states, obs, goal_obs = (torch.as_tensor(np.stack(x))
                                              for x in zip(*(tasks(horizons[0], i) for i in range(n))))
        with torch.no_grad():  # (n, k, ...) windows of one observation repeated, as the agent encodes them at reset
            start = model.encode(obs[:, None].repeat_interleave(model.history, 1), states)
            goal = model.encode(goal_obs[:, None].repeat_interleave(model.history, 1), goal_states)
        for name, pcfg in missing.items():
            for h in horizons:
                fit = calibrate(model, pcfg, h, start, goal, cfg.time_per_plan if cfg.budget == "equal_time" else None)
                if cfg.budget == "field":
                    fit.update(iters=pcfg["iters"], iters_warm=pcfg["iters_warm"])
                else:
                    fit.update(iters_warm=fit["iters"])
                entries[f"{name}-H{h}"] = fit
        write_json(path, {"settings": settings, "entries": entries})
    return entries


def eta_seconds(cfg, todo, entries, world: int) -> float:
    """Planner time of the unfinished cells (mpc: as if every episode used its whole budget, an upper bound)."""
    chunks = math.ceil(math.ceil(cfg.episodes / cfg.batch) / world)
    total = 0.0
    for name, h in todo:
        b = entries[f"{name}-H{h}"]
        warm_calls = 0 if cfg.mode == "open_loop" else math.ceil(cfg.mpc.budget_factor * h / cfg.mpc.replan_every) - 1
        total += chunks * b["sec_per_iter"] * (b["iters"] + warm_calls * b["iters_warm"])
    return total


# ---- running cells ---------------------------------------------------------------------------------------------------
class Tasks:
    """(start_state, goal_state, start_obs, goal_obs) of episode i at horizon h, drawn by an env with
    goal_mode=trajectory and goal_steps = h * action_block from the episode's seed; cached."""

    def __init__(self, env_cfg: envs.EnvConfig, seeds: list[int]):
        self.env_cfg, self.seeds, self.cache, self.envs = env_cfg, seeds, {}, {}

    def __call__(self, h: int, i: int):
        if (h, i) not in self.cache:
            if h not in self.envs:
                self.envs[h] = envs.make(self.env_cfg, goal_mode="trajectory", goal_steps=h * self.env_cfg.action_block)
            obs, info = self.envs[h].reset(seed=self.seeds[i])
            self.cache[h, i] = (info["state"], info["goal_state"], obs, info["goal_obs"])
        return self.cache[h, i]

    def close(self):
        for env in self.envs.values():
            env.close()


def run_cell(cfg, shard, model, planner, mpc: MPCConfig, h: int, tasks: Tasks, seeds, batches, bar):
    """The cell's episodes, shared among the ranks: on rank 0 (per-episode rows with their index, plan records),
    None on the others."""
    ran = run_episodes(model, planner, mpc, tasks.env_cfg, seeds, cfg.batch, cfg.seed, shard,
                       options=lambda i: {"start_state": tasks(h, i)[0], "goal_state": tasks(h, i)[1]},
                       env_batches=batches, on_chunk=lambda k, eps, recs: bar.update(len(eps)))
    if ran is None:
        return None
    episodes, records = ran
    return [{"index": i, **e.summary()} for i, e in enumerate(episodes)], records


def median_cold_plan_cost(records) -> float | None:
    """Median over the episodes' first plans (cold solves, control step 0) of the returned plan's true rollout
    cost in the model, ||s_H(a) - g||^2, the cost every planner reports: on identical tasks and one model, how far
    each planner's search got in it. A plan with non-finite cost counts as +inf. None without a first solve."""
    costs = [c for r in records if r.control_step == 0 for c in r.cost.tolist()]
    return float(np.median(costs)) if costs else None


def log_cell(logdir: Path, name: str, row: dict, key: dict, records) -> None:
    """One TensorBoard run per cell: planner curves (plan/, perf/), eval/ metrics and its HParams entry."""
    run_dir = logdir / "tb" / name
    shutil.rmtree(run_dir, ignore_errors=True)  # leftovers of an interrupted attempt at this cell
    logger = EvalLogger(str(run_dir))
    for rec in records:
        logger.solve(rec)
    metrics = {k: row[k] for k in ("success_rate", "success_final_rate", "median_time_to_success_s",
                                   "mean_plan_time_s") if row[k] is not None}
    hparams = {"env": key["env"]["name"], "planner": row["planner"], "base": key["planner"]["name"],
               "horizon": row["horizon"], "mode": row["mode"], "budget": key["budget"], "episodes": row["episodes"],
               "seed": key["seed"], "checkpoint": key["checkpoint"], "mpc.budget": key["mpc"]["budget"],
               **{f"planner.{k}": v for k, v in key["planner"].items()}}
    logger.finish(metrics, hparams, json.dumps(key, indent=1), numeric=("horizon",))


# ---- outputs ---------------------------------------------------------------------------------------------------------
def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(res: dict) -> str:
    rows = {(r["planner"], r["horizon"]): r for r in res["rows"]}
    names, horizons = res["planners"], res["horizons"]

    def table(cell) -> list[str]:
        lines = [f"| H | {' | '.join(names)} |", "|---:|" + "---|" * len(names)]
        return lines + [f"| {h} | " + " | ".join(cell(rows[n, h]) for n in names) + " |" for h in horizons]

    pct = lambda v: fmt(None if v is None else 100 * v, ".1f")  # noqa: E731
    ci = lambda v: "-" if v is None else f"{100 * v[0]:.1f}-{100 * v[1]:.1f}"  # noqa: E731
    budget = ("each planner's config iterations (cold / warm)" if res["budget"] == "field" else
              f"equal time: {res['time_per_plan']} s per plan call; iterations = the count whose call on a "
              f"warm-up batch of {res['batch']} took closest to it (calibrated per planner and horizon)")
    out = [f"# Planner benchmark: {res['env']}, {res['mode']}, budget={res['budget']}", "",
           f"Protocol: {res['protocol']}. {res['episodes']} episodes per cell, identical tasks for every planner; "
           f"trivial tasks (solved at reset) excluded: {sum(r['excluded_trivial'] for r in res['rows'])} in all.",
           f"World model: `{res['checkpoint']}` (sha256 {res['checkpoint_sha256'][:12]}). Times: wall clock of batched "
           f"plan calls on up to {res['batch']} problems, 1 torch thread per process, {res['processes']} process(es); "
           f"an episode's time to success is its own planning time (each solve's seconds / the problems in it, "
           f"summed).", "",
           "## Success % / median seconds to success (over successful episodes; - : none)", "",
           *table(lambda r: f"{pct(r['success_rate'])} / {fmt(r['median_time_to_success_s'], '.2f')}"), "",
           "## 95% Wilson interval of success (%)", "", *table(lambda r: ci(r["success_ci95"])), ""]
    if res["mode"] == "open_loop":
        out += ["## Success at the last step % (DINO-WM protocol) [95% interval]", "",
                *table(lambda r: f"{pct(r['success_final_rate'])} [{ci(r['success_final_ci95'])}]"), ""]
    if any(r.get("median_cold_plan_cost") is not None for r in res["rows"]):
        out += ["## Cold plans in the model: median true-rollout cost ||s_H(a) − g||² of the returned plan", "",
                "Each episode's first (cold) plan, costed in the model (same tasks, same model): lower is a better "
                "search of the model's cost, not by itself more success in the env; - : not recorded.", "",
                *table(lambda r: fmt(r.get("median_cold_plan_cost"), ".3g")), ""]
    pairs = {(p["other"], p["horizon"]): p for p in res["paired"]}
    if pairs:
        ref, others = res["paired"][0]["reference"], [n for n in names if n != res["paired"][0]["reference"]]
        out += [f"## Paired: {ref} against each planner on the same tasks", "",
                f"Tasks only {ref} solved / only the other solved, and the exact McNemar p-value (two-sided).", "",
                f"| H | {' | '.join(others)} |", "|---:|" + "---|" * len(others),
                *[f"| {h} | " + " | ".join(f"{pairs[n, h]['reference_only']} / {pairs[n, h]['other_only']}, "
                                           f"p = {pairs[n, h]['p_value']:.3g}" for n in others) + " |"
                  for h in horizons], ""]
    used = ("seconds of the calibration call, " if res["budget"] == "equal_time" else "")
    out += [f"## Budget: {budget}", "", f"Cells: iterations cold / warm, fitted seconds per iteration, {used}measured "
            "mean seconds of the sweep's plan calls.", "",
            *table(lambda r: f"{r['iters']} / {r['iters_warm']} it, {fmt(r['sec_per_iter'], '.3g')} s/it, "
                             + (f"{fmt(r.get('calibration_plan_time_s'), '.2f')} s calibrated, "
                                if res["budget"] == "equal_time" else "")
                             + f"{fmt(r['mean_plan_time_s'], '.2f')} s/call"), ""]
    m = res["machine"]
    out += [f"## Machine: {m['host']}, {m['cpu']} ({m['cpus']} logical CPUs), {m['torch_threads']} torch thread(s) "
            f"per process", "", "1-min load average at the start / end of each cell (this sweep's processes count "
            "in it; more means other load slowed the timings):", "",
            *table(lambda r: "-" if "load_1min" not in r else f"{r['load_1min'][0]:.2f} / {r['load_1min'][1]:.2f}"),
            "", f"Command: `{res['command']}`", "", f"Git commit: `{res['git_commit']}`"
            + (" (allow_dirty=true)" if res["allow_dirty"] else ""), ""]
    return "\n".join(out)


COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
          (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def plot(res: dict, path: Path) -> None:
    """Two panels drawn with PIL (matplotlib is not a dependency): success % with 95% intervals, and median
    seconds to success, against the horizon; one colour per planner."""
    font = ImageFont.load_default(size=13)
    img = Image.new("RGB", (1000, 440), "white")
    draw = ImageDraw.Draw(img)
    rows = {(r["planner"], r["horizon"]): r for r in res["rows"]}
    hs = res["horizons"]
    times = [r["median_time_to_success_s"] for r in res["rows"] if r["median_time_to_success_s"] is not None]
    panels = [("success % (95% interval)", 100.0,
               lambda r: None if r["success_rate"] is None else 100 * r["success_rate"],
               lambda r: None if r["success_ci95"] is None else [100 * v for v in r["success_ci95"]]),
              ("median s to success", max(times, default=1.0) * 1.1 or 1.0, lambda r: r["median_time_to_success_s"],
               lambda r: None)]
    for p, (title, top, value, interval) in enumerate(panels):
        x0, x1, y0, y1 = 70 + p * 500, 460 + p * 500, 60, 390
        sx = lambda h: x0 + 20 + (x1 - x0 - 40) * ((h - hs[0]) / (hs[-1] - hs[0]) if len(hs) > 1 else 0.5)  # noqa
        sy = lambda v: y1 - (y1 - y0) * v / top  # noqa: E731
        draw.rectangle((x0, y0, x1, y1), outline="black")
        draw.text(((x0 + x1) / 2, y0 - 10), title, fill="black", font=font, anchor="md")
        for i in range(6):
            v = top * i / 5
            draw.line((x0 - 4, sy(v), x0, sy(v)), fill="black")
            draw.text((x0 - 6, sy(v)), f"{v:.3g}", fill="black", font=font, anchor="rm")
        for h in hs:
            draw.line((sx(h), y1, sx(h), y1 + 4), fill="black")
            draw.text((sx(h), y1 + 6), str(h), fill="black", font=font, anchor="ma")
        draw.text(((x0 + x1) / 2, y1 + 24), "horizon H (planner steps)", fill="black", font=font, anchor="ma")
        for j, name in enumerate(res["planners"]):
            color, points = COLORS[j % len(COLORS)], []
            for k, h in enumerate(hs):
                r = rows[name, h]
                if value(r) is None:
                    continue
                x = sx(h) + 3 * (j - len(res["planners"]) / 2)  # small offsets keep intervals apart
                points.append((x, sy(value(r))))
                if interval(r) is not None:
                    draw.line((x, sy(interval(r)[0]), x, sy(interval(r)[1])), fill=color)
                draw.ellipse((x - 3, sy(value(r)) - 3, x + 3, sy(value(r)) + 3), fill=color)
            if len(points) > 1:
                draw.line(points, fill=color, width=2)
    for j, name in enumerate(res["planners"]):
        x = 70 + j * 130
        draw.line((x, 20, x + 20, 20), fill=COLORS[j % len(COLORS)], width=3)
        draw.text((x + 25, 20), name, fill="black", font=font, anchor="lm")
    draw.text((990, 20), f"{res['env']}, {res['mode']}, budget={res['budget']}", fill="black", font=font, anchor="rm")
    img.save(path)


# ---- entry point --------------------------------------------------------------------------------------------------
def cell_keys(cfg, env_cfg, checkpoint, checkpoint_sha256: str, configs_, horizons, entries) \
        -> dict[tuple[str, int], dict]:
    """(planner, horizon) -> everything that determines the cell's results; a finished cell file must match it
    (the checkpoint by content: a model retrained to the same path makes other cells)."""
    keys = {}
    for h in horizons:
        for name in configs_:
            pcfg = {**configs_[name], "iters": entries[f"{name}-H{h}"]["iters"],
                    "iters_warm": entries[f"{name}-H{h}"]["iters_warm"]}
            task_env = envs.env_config(env_cfg, goal_mode="trajectory", goal_steps=h * env_cfg.action_block)
            keys[name, h] = {"env": dataclasses.asdict(task_env), "checkpoint": provenance.repo_path(checkpoint),
                             "checkpoint_sha256": checkpoint_sha256, "seed": cfg.seed, "episodes": cfg.episodes,
                             "batch": cfg.batch, "budget": cfg.budget,
                             "planner": pcfg, "mpc": dataclasses.asdict(mpc_config(cfg, h))}
    return keys


def unfinished(cfg, logdir: Path, keys: dict) -> list[tuple[str, int]]:
    """The cells without a cell file; one made with other settings is an error."""
    todo = []
    for (name, h), key in keys.items():
        path = logdir / "cells" / f"{cell_name(name, h, cfg.mode)}.json"
        if not path.exists():
            todo.append((name, h))
        elif json.loads(path.read_text())["key"] != json.loads(json.dumps(key)):
            raise ConfigError(f"{path} was made with other settings; use another logdir or delete that file")
    return todo


def run(cfg, shard: sharding.Shard = sharding.Shard(), argv=()) -> dict | None:
    env_cfg, horizons, logdir = check(cfg)
    commit = provenance.git_commit()  # the code the cells run: an edit or commit mid-sweep must not relabel them
    configs_ = planner_configs(cfg)
    model, meta, checkpoint = load_world_model(env_cfg, cfg.checkpoint, cfg.device)
    checkpoint_sha256 = provenance.file_sha256(checkpoint)
    torch.set_num_threads(1)  # times compare planners, so every process plans on one thread; scale with torchrun
    seeds = episode_seeds(cfg.seed, cfg.episodes)
    tasks = Tasks(env_cfg, seeds)
    if shard.main:
        budgets(cfg, logdir, model, checkpoint_sha256, configs_, horizons, tasks)
    shard.barrier()  # the other ranks read the budgets rank 0 wrote
    entries = json.loads((logdir / "budgets.json").read_text())["entries"]
    keys = cell_keys(cfg, env_cfg, checkpoint, checkpoint_sha256, configs_, horizons, entries)
    todo = unfinished(cfg, logdir, keys)
    if shard.main:
        print(f"{len(keys) - len(todo)} of {len(keys)} cells done in {logdir}; {len(todo)} to run on "
              f"{shard.world} process(es)")
        for name in configs_:
            print(f"  {name}: iterations per horizon (cold/warm) " + ", ".join(
                f"H{h} {entries[f'{name}-H{h}']['iters']}/{entries[f'{name}-H{h}']['iters_warm']}" for h in horizons))
        print(f"ETA ~{eta_seconds(cfg, todo, entries, shard.world) / 60:.1f} min of planning (timed at start"
              + ("; mpc: as if every episode used its whole budget, an upper bound)" if cfg.mode == "mpc" else ")"))

    batches: dict[int, envs.EnvBatch] = {}
    mine = sum(len(c) for _, c in shard.chunks(cfg.episodes, cfg.batch))
    with tqdm(total=mine * len(todo), unit="ep", disable=not shard.main) as bar:
        for name, h in todo:
            bar.set_description(cell_name(name, h, cfg.mode))
            key = keys[name, h]
            load_start = load_1min()
            ran = run_cell(cfg, shard, model, planners.make(key["planner"]), mpc_config(cfg, h), h, tasks, seeds,
                           batches, bar)
            if ran is None:
                continue
            episodes, records = ran
            budget = entries[f"{name}-H{h}"]
            row = {"planner": name, "horizon": h, "mode": cfg.mode, **summarize(episodes, records),
                   "median_cold_plan_cost": median_cold_plan_cost(records),
                   "iters": key["planner"]["iters"], "iters_warm": key["planner"]["iters_warm"],
                   "sec_per_iter": budget["sec_per_iter"], "calibration_plan_time_s": budget.get("plan_s"),
                   "load_1min": [load_start, load_1min()], "git_commit": commit,
                   "machine": {**machine(), "processes": shard.world, "allow_dirty": cfg.allow_dirty}}
            log_cell(logdir, cell_name(name, h, cfg.mode), row, key, records)
            write_json(logdir / "cells" / f"{cell_name(name, h, cfg.mode)}.json",
                       {"row": row, "key": key, "per_episode": episodes})
    for batch in batches.values():
        batch.close()
    tasks.close()
    return write_results(cfg, logdir, env_cfg, checkpoint, checkpoint_sha256, horizons, list(configs_), shard.world,
                         argv, commit) \
        if shard.main else None


def write_results(cfg, logdir: Path, env_cfg, checkpoint, checkpoint_sha256: str, horizons, names, world: int, argv,
                  commit) -> dict:
    """results.json, results.md and results.png of the finished cells; the table printed. `git_commit` is the
    commit the cells ran at (each cell records its own; those of a sweep resumed at other commits are all listed;
    a cell from before cells recorded one counts as this run's `commit`)."""
    cells = {(n, h): json.loads((logdir / "cells" / f"{cell_name(n, h, cfg.mode)}.json").read_text())
             for h in horizons for n in names}
    commits = sorted({str(c["row"].get("git_commit", commit)) for c in cells.values()})
    launcher = f"torchrun --nproc_per_node={world} " if world > 1 else "python "
    results = {"env": env_cfg.name, "mode": cfg.mode, "budget": cfg.budget, "time_per_plan": cfg.time_per_plan,
               "checkpoint": provenance.repo_path(checkpoint), "checkpoint_sha256": checkpoint_sha256,
               "seed": cfg.seed, "episodes": cfg.episodes, "batch": cfg.batch,
               "horizons": horizons, "planners": names, "processes": world,
               "protocol": PROTOCOL[cfg.mode].format(factor=cfg.mpc.budget_factor),
               "command": launcher + shlex.join(["-m", "benchmarks.planner_sweep", *argv]),
               "git_commit": ", ".join(commits), "allow_dirty": cfg.allow_dirty, "machine": machine(),
               "versions": provenance.versions(), "rows": [cells[n, h]["row"] for h in horizons for n in names],
               "paired": paired(cells, names, horizons), "config": OmegaConf.to_container(cfg, resolve=True)}
    write_json(logdir / "results.json", results)
    (logdir / "results.md").write_text(markdown(results))
    plot(results, logdir / "results.png")
    print("\n" + markdown(results).split("## 95%")[0].split("\n\n", 2)[2])
    print(f"results: {logdir / 'results.md'}\nTensorBoard: {tensorboard_command(logdir / 'tb')}")
    return results


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs (tasks only the first, resp. only the second
    planner solved): under equal success the discordant ones split as Binomial(b + c, 1/2), so
    p = min(1, 2 * P(X <= min(b, c))); 1 without discordant pairs."""
    n = b + c
    return min(1.0, 2 * sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2 ** n)


def paired(cells: dict, names: list[str], horizons: list[int]) -> list[dict]:
    """Per horizon, the reference planner (grasp, else the first) against every other on the same counted tasks:
    tasks only the reference solved, only the other solved, and the exact McNemar p-value."""
    ref = "grasp" if "grasp" in names else names[0]
    out = []
    for h in horizons:
        solved = {n: {e["index"]: e["success"] for e in cells[n, h]["per_episode"] if not e["trivial"]} for n in names}
        for other in (n for n in names if n != ref):
            tasks = sorted(solved[ref].keys() & solved[other].keys())
            b = sum(solved[ref][i] and not solved[other][i] for i in tasks)
            c = sum(solved[other][i] and not solved[ref][i] for i in tasks)
            out.append({"horizon": h, "reference": ref, "other": other, "tasks": len(tasks), "reference_only": b,
                        "other_only": c, "p_value": mcnemar_exact(b, c)})
    return out


def main(argv: list[str]) -> int:
    with sharding.from_env() as shard:
        return configs.main(lambda cfg: run(cfg, shard, argv), "benchmark", argv, user_errors=USER_ERRORS)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
