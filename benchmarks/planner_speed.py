"""Planner speed: ms per iteration for every planner over horizons and batch sizes, on one world model.

    python -m benchmarks.planner_speed [checkpoint=worldmodels/pretrained/wall.pt] [repeats=3]

The world model is the shipped default (wall, pixels; planners only see its latent predictor) unless `checkpoint=`
names another. Starts and goals are random latents: timing does not depend on them. Prints a markdown table plus
two ratios:
  - one GRASP core iteration (sync=none) / one forward + action-backward of `model.predict` on B*H rows
    (the same call GRASP makes; target <= 1.5: planner overhead is small),
  - GD iteration time / GRASP iteration time at H=50 (target >= 5: time-parallel beats serial BPTT).
ms/iter = time from the first to the last iteration's callback / (n - 1), best of `repeats`, so per-solve setup is
excluded; GRASP's periodic sync (every 25 iterations) is amortised into its default column (n = 51: two syncs).
The machine is shared: numbers are best-of-repeats wall times.
"""
from __future__ import annotations

import sys
import time

import torch

import planners
import worldmodels
from benchmarks import cli

HORIZONS, BATCHES = (10, 25, 50, 100), (1, 16)
DEFAULT_CHECKPOINT = worldmodels.checkpoint.PRETRAINED / "wall.pt"


def load_model(checkpoint: str):
    try:
        model, _ = worldmodels.load_checkpoint(checkpoint)
    except worldmodels.CheckpointError as err:
        raise SystemExit(f"error: {err}")
    return model.eval().requires_grad_(False)


def timed(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def ms_per_iter(planner, model, start, goal, horizon, iters, repeats) -> float:
    """Time between the first and the last iteration's callback / (iters - 1): per-solve setup is excluded."""
    best = float("inf")
    for _ in range(repeats + 1):  # the first run warms up
        stamps = []
        planner.plan(model, start, goal, horizon, iters=iters, generator=torch.Generator().manual_seed(0),
                     callback=lambda it, diag: stamps.append(time.perf_counter()))
        best = min(best, (stamps[-1] - stamps[0]) / (iters - 1))
    return 1e3 * best


def predict_fwd_bwd_ms(model, rows: int, repeats: int) -> float:
    s = torch.randn(rows, model.latent_dim)
    a = torch.zeros(rows, model.action_dim, requires_grad=True)

    def step():
        with torch.enable_grad():
            out = model.predict(s, a)
            torch.autograd.grad(out, a, torch.ones_like(out))
    step()
    return 1e3 * timed(step, 20 * repeats)  # fastest single call: robust to other processes on a shared machine


def main(argv: list[str]) -> None:
    args = cli.parse(argv, {"checkpoint": str(DEFAULT_CHECKPOINT), "repeats": "3"}, "checkpoint=PATH, repeats=N")
    args["repeats"] = int(args["repeats"])
    model = load_model(args["checkpoint"])
    D = model.latent_dim
    print(f"model: {args['checkpoint']} (latent {D}, action {model.action_dim}); torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads\n")
    iters = {"grasp": 51, "grasp (sync=none)": 26, "latco": 26, "gd": 5, "cem": 3, "mppi": 3}
    made = {name: planners.make(name) for name in ("grasp", "latco", "gd", "cem", "mppi")}
    made["grasp (sync=none)"] = planners.make("grasp", sync="none")
    made["gd (1 start)"] = planners.make("gd", starts=1)
    iters["gd (1 start)"] = 5
    names = ["grasp", "grasp (sync=none)", "latco", "gd", "gd (1 start)", "cem", "mppi"]
    results = {}
    print("| H | B | " + " | ".join(f"{n} ms/iter" for n in names) + " | predict fwd+bwd B*H rows ms |")
    print("|---|---|" + "---|" * (len(names) + 1))
    for horizon in HORIZONS:
        for batch in BATCHES:
            gen = torch.Generator().manual_seed(1)
            start, goal = torch.randn(batch, D, generator=gen), torch.randn(batch, D, generator=gen)
            row = {n: ms_per_iter(made[n], model, start, goal, horizon, iters[n], args["repeats"]) for n in names}
            row["predict"] = predict_fwd_bwd_ms(model, batch * horizon, args["repeats"])
            results[horizon, batch] = row
            print(f"| {horizon} | {batch} | " + " | ".join(f"{row[n]:.2f}" for n in names)
                  + f" | {row['predict']:.2f} |", flush=True)
    print("\n| H | B | GRASP core iter / predict fwd+bwd (target <= 1.5) | GD / GRASP iter "
          "| GD (1 start) / GRASP core |")
    print("|---|---|---|---|---|")
    for (horizon, batch), row in results.items():
        print(f"| {horizon} | {batch} | {row['grasp (sync=none)'] / row['predict']:.2f} | "
              f"{row['gd'] / row['grasp']:.1f} | {row['gd (1 start)'] / row['grasp (sync=none)']:.1f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
