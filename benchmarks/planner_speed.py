"""Planner speed: ms per iteration and seconds per default plan call for every planner, over horizons and batch
sizes, on one world model.

    python -m benchmarks.planner_speed [checkpoint=worldmodels/pretrained/wall.pt] [repeats=3] [device=cpu|cuda]
        [predictor_hidden=N] [latent_dim=N] [horizons=10,25,50,100] [batches=1,16] [planners=grasp,cem,...]
        [calls=1]

The world model is the shipped default (wall, pixels; planners only see its latent predictor) unless `checkpoint=`
names another. `predictor_hidden=` and/or `latent_dim=` swap in a model of the checkpoint's shape with those sizes
and RANDOM weights (the predictor's output layer too, so it is not the identity), so timings need not hinge on our
small models. Starts and goals are random latents: timing does not depend on them. `planners=` picks from the
columns below (default all; on CPU all but `grasp (eager)`, which there is `grasp`). Prints, per (H, B):
  - ms/iter: time from the first to the last iteration's callback / (n - 1), best of `repeats` after one warm-up,
    so per-solve setup is excluded; GRASP's periodic sync is amortised into its default column (n = 2 sync_every
    + 1: two syncs; an early stop by `patience` shortens n),
  - s/call: one whole `plan()` call at the planner's default (cold) budget, best of `calls` (0: skip), and
    s/first call: the same call on a new planner object, once (GRASP's CUDA graphs are captured then, per shape),
  - the same model's `predict` forward + action-backward on B*H rows (the call GRASP makes every iteration),
and two ratios:
  - one GRASP core iteration (sync=none) / predict fwd+bwd (target <= 1.5: planner overhead is small),
  - GD iteration time / GRASP iteration time at H=50 (target >= 5: time-parallel beats serial BPTT).
On CUDA every time stamp is taken after torch.cuda.synchronize(), so per-iteration numbers include one sync per
iteration (a plan call's time is what a caller sees). The machine may be shared: numbers are best-of wall times.
"""
from __future__ import annotations

import sys
import time

import torch

import planners
import worldmodels
from benchmarks import cli

DEFAULT_CHECKPOINT = worldmodels.checkpoint.PRETRAINED / "wall.pt"
# column -> (planner name, overrides, iterations timed for ms/iter; None: two sync periods of the config, + 1)
COLUMNS = {
    "grasp": ("grasp", {}, None),
    "grasp (eager)": ("grasp", {"cuda_graphs": False}, None),  # the same as grasp on CPU
    "grasp (sync=none)": ("grasp", {"sync": "none"}, 26),
    "latco": ("latco", {}, 26),
    "gd": ("gd", {}, 5),
    "gd (1 start)": ("gd", {"starts": 1}, 5),
    "cem": ("cem", {}, 3),
    "icem": ("icem", {}, 3),
    "mppi": ("mppi", {}, 3),
}


def load_model(checkpoint: str, device: str, predictor_hidden: str, latent_dim: str):
    try:
        model, _ = worldmodels.load_checkpoint(checkpoint)
    except worldmodels.CheckpointError as err:
        raise SystemExit(f"error: {err}")
    if predictor_hidden or latent_dim:
        sizes = model.cfg.to_dict()
        sizes.update({k: int(v) for k, v in (("predictor_hidden", predictor_hidden), ("latent_dim", latent_dim)) if v})
        torch.manual_seed(0)
        model = worldmodels.build_model(worldmodels.ModelConfig(**sizes))
        for member in model.members:
            last = member.predictor[-1]
            torch.nn.init.normal_(last.weight, std=0.5 / last.in_features ** 0.5)
    return model.to(device).eval().requires_grad_(False)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, repeats: int, device: torch.device) -> float:
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def generator(device: torch.device, seed: int = 0) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def ms_per_iter(planner, model, start, goal, horizon, iters, repeats) -> float:
    """Time between the first and the last iteration's callback / (iters - 1): per-solve setup is excluded."""
    device = start.device

    def stamp(it, diag):
        sync(device)
        stamps.append(time.perf_counter())

    best = float("inf")
    for _ in range(repeats + 1):  # the first run warms up
        stamps = []
        planner.plan(model, start, goal, horizon, iters=iters, generator=generator(device), callback=stamp)
        best = min(best, (stamps[-1] - stamps[0]) / (len(stamps) - 1))
    return 1e3 * best


def plan_call_s(planner, model, start, goal, horizon, calls) -> float:
    """One whole plan() call at the planner's default cold budget (after the ms/iter runs warmed it up)."""
    return timed(lambda: planner.plan(model, start, goal, horizon, generator=generator(start.device)), calls,
                 start.device)


def first_call_s(column: str, model, start, goal, horizon) -> float:
    """The same call on a new planner object: what a program's first plan() at a shape costs."""
    name, overrides, _ = COLUMNS[column]
    return plan_call_s(planners.make(name, **overrides), model, start, goal, horizon, 1)


def predict_fwd_bwd_ms(model, rows: int, repeats: int) -> float:
    s = torch.randn(rows, model.latent_dim, device=model.device)
    a = torch.zeros(rows, model.action_dim, device=model.device, requires_grad=True)

    def step():
        with torch.enable_grad():
            out = model.predict(s, a)
            torch.autograd.grad(out, a, torch.ones_like(out))
    step()
    return 1e3 * timed(step, 20 * repeats, model.device)  # fastest single call: robust to a shared machine


def ints(value: str) -> list[int]:
    return [int(v) for v in value.split(",")]


def main(argv: list[str]) -> None:
    args = cli.parse(argv, {"checkpoint": str(DEFAULT_CHECKPOINT), "repeats": "3", "device": "cpu",
                            "predictor_hidden": "", "latent_dim": "", "horizons": "10,25,50,100",
                            "batches": "1,16", "planners": "", "calls": "1"},
                     "checkpoint=PATH, repeats=N, device=cpu|cuda, predictor_hidden=N, latent_dim=N, "
                     "horizons=H,..., batches=B,..., planners=NAME,..., calls=N")
    repeats, calls = int(args["repeats"]), int(args["calls"])
    device = torch.device(args["device"])
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: device=cuda but torch sees no CUDA device")
    default = [n for n in COLUMNS if device.type == "cuda" or n != "grasp (eager)"]  # on CPU it repeats grasp
    names = args["planners"].split(",") if args["planners"] else default
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise SystemExit(f"error: unknown planner column(s) {unknown}; choose from: {', '.join(COLUMNS)}")
    names = [n for n in names if COLUMNS[n][0] in planners.PLANNERS]  # older trees lack some planners
    model = load_model(args["checkpoint"], device, args["predictor_hidden"], args["latent_dim"])
    D = model.latent_dim
    n_params = sum(p.numel() for m in model.members for part in (m.predictor, m.action_encoder, m.reach)
                   if part is not None for p in part.parameters())
    random = "RANDOM weights, " if args["predictor_hidden"] or args["latent_dim"] else ""
    print(f"model: {args['checkpoint']} ({random}latent {D}, action {model.action_dim}, predictor_hidden "
          f"{model.cfg.predictor_hidden}, {n_params / 1e6:.2f}M params a predict runs); device {device}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    made = {n: planners.make(COLUMNS[n][0], **COLUMNS[n][1]) for n in names}
    results = {}
    print("| H | B | " + " | ".join(f"{n} ms/iter" for n in names) + " | predict fwd+bwd B*H rows ms |"
          + ("".join(f" {n} s/call |" for n in names) + "".join(f" {n} s/first call |" for n in names)
             if calls else ""))
    print("|---|---|" + "---|" * (len(names) + 1 + (2 * len(names) if calls else 0)))
    for horizon in ints(args["horizons"]):
        for batch in ints(args["batches"]):
            gen = torch.Generator().manual_seed(1)
            start, goal = (torch.randn(batch, D, generator=gen).to(device) for _ in range(2))
            row = {n: ms_per_iter(made[n], model, start, goal, horizon,
                                  COLUMNS[n][2] or 2 * made[n].cfg.sync_every + 1, repeats) for n in names}
            row["predict"] = predict_fwd_bwd_ms(model, batch * horizon, repeats)
            call = {n: plan_call_s(made[n], model, start, goal, horizon, calls) for n in names} if calls else {}
            first = {n: first_call_s(n, model, start, goal, horizon) for n in names} if calls else {}
            results[horizon, batch] = row
            print(f"| {horizon} | {batch} | " + " | ".join(f"{row[n]:.2f}" for n in names)
                  + f" | {row['predict']:.2f} |" + "".join(f" {call[n]:.3f} |" for n in call)
                  + "".join(f" {first[n]:.3f} |" for n in first), flush=True)
    if not {"grasp", "grasp (sync=none)", "gd", "gd (1 start)"} <= set(names):
        return
    print("\n| H | B | GRASP core iter / predict fwd+bwd (target <= 1.5) | GD / GRASP iter "
          "| GD (1 start) / GRASP core |")
    print("|---|---|---|---|---|")
    for (horizon, batch), row in results.items():
        print(f"| {horizon} | {batch} | {row['grasp (sync=none)'] / row['predict']:.2f} | "
              f"{row['gd'] / row['grasp']:.1f} | {row['gd (1 start)'] / row['grasp (sync=none)']:.1f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
