"""Two evaluate.py runs on the same tasks, paired episode by episode.

    python -m benchmarks.compare a=RUN_A b=RUN_B        (evaluate.py logdirs, or their results.json files)

Episodes are matched by their seed, trivial ones left out; the two runs must draw tasks the same way (the same
`env` settings but the observation type and image size, which do not change the tasks), else a one-line error.
Prints each run's successes with the 95 % Wilson interval, the tasks only A solved and only B solved with the
exact McNemar p-value (is the difference more than the luck of these tasks?), in how many tasks each run ended nearer
the goal (the env's task distance after the episode's last step; a success stops the episode under the threshold)
with the exact sign-test p-value (ties left out; at low success rates this sees a difference that success counts
are too few to show), and how many episodes ended at the same final distance and after the same number of steps
(a re-run of the same run on the same versions and CPU kernel level matches on all of them; on another kernel level
the last-bit differences of the float sums change the episodes: `versions` of both runs is printed).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from agent.evaluation import wilson
from benchmarks import cli
from benchmarks.planner_sweep import mcnemar_exact


def load(path: str) -> dict:
    """The run in `path`: an evaluate.py logdir or its results.json."""
    if Path(path).is_dir():
        path = str(Path(path) / "results.json")
    try:
        with open(path) as f:
            run = json.load(f)
        task = {k: v for k, v in run["config"]["env"].items() if k not in ("obs_type", "image_size")}
        return {"versions": run.get("versions", {}), "commit": run.get("git_commit"), "task": task,
                "episodes": {e["seed"]: e for e in run["per_episode"] if not e["trivial"]}}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SystemExit(f"error: {path!r} is not a readable evaluate.py results.json ({type(err).__name__}: {err})")


def compare(a: dict, b: dict) -> dict:
    """Paired statistics of runs `a` and `b` (as `load` returns them) over the tasks both ran."""
    differ = sorted(k for k in a["task"].keys() | b["task"].keys() if a["task"].get(k) != b["task"].get(k))
    if differ:
        raise SystemExit(f"error: the two runs draw different tasks: env." + ", env.".join(
            f"{k}={a['task'].get(k)!r} vs {b['task'].get(k)!r}" for k in differ))
    seeds = sorted(a["episodes"].keys() & b["episodes"].keys())
    if not seeds:
        raise SystemExit("error: the two runs share no task (episode seed); compare runs of the same env, seed and "
                         "protocol")
    pairs = [(a["episodes"][s], b["episodes"][s]) for s in seeds]
    n, succ_a, succ_b = len(pairs), sum(x["success"] for x, _ in pairs), sum(y["success"] for _, y in pairs)
    only_a = sum(x["success"] and not y["success"] for x, y in pairs)
    only_b = sum(y["success"] and not x["success"] for x, y in pairs)
    nearer_a = sum(x["final_distance"] < y["final_distance"] for x, y in pairs)
    nearer_b = sum(y["final_distance"] < x["final_distance"] for x, y in pairs)
    return {"tasks": n, "a": succ_a, "b": succ_b, "a_ci95": wilson(succ_a, n),
            "b_ci95": wilson(succ_b, n), "only_a": only_a, "only_b": only_b,
            "p_mcnemar": mcnemar_exact(only_a, only_b), "nearer_a": nearer_a, "nearer_b": nearer_b,
            "p_nearer": mcnemar_exact(nearer_a, nearer_b),   # the same exact two-sided binomial test
            "same_final_distance": sum(x["final_distance"] == y["final_distance"] for x, y in pairs),
            "same_steps": sum(x["steps"] == y["steps"] for x, y in pairs)}


def main(argv: list[str]) -> None:
    args = cli.parse(argv, {"a": "", "b": ""}, "a=RUN_DIR|RESULTS_JSON b=RUN_DIR|RESULTS_JSON")
    if not args["a"] or not args["b"]:
        raise SystemExit("error: give both runs: a=RUN_A b=RUN_B (evaluate.py logdirs or their results.json)")
    a, b = load(args["a"]), load(args["b"])
    c = compare(a, b)
    pct = lambda k, ci: f"{c[k]}/{c['tasks']} ({100 * c[k] / c['tasks']:.1f} %; {100 * ci[0]:.0f}-{100 * ci[1]:.0f})"
    print(f"A: {args['a']}  (commit {a['commit']}, {a['versions']})")
    print(f"B: {args['b']}  (commit {b['commit']}, {b['versions']})")
    print(f"tasks in both: {c['tasks']}")
    print(f"success A: {pct('a', c['a_ci95'])}   B: {pct('b', c['b_ci95'])}")
    print(f"solved only by A: {c['only_a']}, only by B: {c['only_b']}, exact McNemar p = {c['p_mcnemar']:.3g}")
    print(f"ended nearer the goal: A in {c['nearer_a']}, B in {c['nearer_b']} (ties left out), exact sign test "
          f"p = {c['p_nearer']:.3g}")
    print(f"same final distance: {c['same_final_distance']}/{c['tasks']}, same steps: {c['same_steps']}/{c['tasks']}")


if __name__ == "__main__":
    main(sys.argv[1:])
