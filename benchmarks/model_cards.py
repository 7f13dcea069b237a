"""Model cards of world-model checkpoints, read from what train.py stored in them (config, commit, metrics).

    python -m benchmarks.model_cards [worldmodels/pretrained/*.pt]

Prints one markdown row per checkpoint: the env and observation, the frame history (`model.history`: observations
per encoder input), size, training steps and speed, and the held-out open-loop prediction error relative to the
constant-latent baseline (1.0 = no better than predicting that nothing moves) at k = 1, 5 and the episode length H,
the linear-probe R^2 latent -> physical state, and the Spearman correlation of latent distance with the env's task
distance (the planner's cost landscape).
"""
import sys
from pathlib import Path

from worldmodels.checkpoint import PRETRAINED, read_checkpoint


def card(path: Path) -> str:
    ckpt = read_checkpoint(path)
    meta, m = ckpt["meta"], ckpt["meta"]["metrics"]
    params = sum(v.numel() for v in ckpt["model"].values())
    horizon = meta["data"]["episode_len"]
    rel = lambda k: f"{m[f'eval/rel_err_k{k}']:.3f}" if f"eval/rel_err_k{k}" in m else "-"  # noqa: E731
    mb = path.stat().st_size / 2**20
    history = ckpt["model_config"].get("history", 1)  # checkpoints from before frame history have 1
    return (f"| {meta['env']['name']} | {meta['env']['obs_type']} | {history} | {params / 1e3:.0f}k / {mb:.1f} MB | "
            f"{meta['step']} | {m.get('perf/steps_per_s', float('nan')):.1f} | {rel(1)} | {rel(5)} | "
            f"{rel(horizon)} (H={horizon}) | {m.get('eval/probe_r2', float('nan')):.3f} | "
            f"{m.get('eval/dist_spearman', float('nan')):.2f} | "
            f"{(meta.get('git_commit') or '-')[:10]} |")


def main(paths: list[str]) -> None:
    paths = [Path(p) for p in paths] or sorted(PRETRAINED.glob("*.pt"))
    print("| env | obs | history | params / file | steps | train steps/s | rel. err k=1 | k=5 | k=H | probe R^2 | "
          "dist. Spearman | commit |\n|---|---|---|---|---|---|---|---|---|---|---|---|")
    for path in paths:
        print(card(path))


if __name__ == "__main__":
    main(sys.argv[1:])
