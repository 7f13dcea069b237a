"""TensorBoard logging of an evaluation: one SummaryWriter, fixed namespaces.

  eval/     the run's headline numbers (success rates, times) - also the HParams table's metrics
  episode/  per episode: distance to goal over env steps; GIF videos (frames beside the goal image)
  plan/     planner diagnostics per iteration, averaged over every solve, cold and warm curves apart
            (`plan/cold/<name>`, `plan/warm/<name>`, x = iteration); true cost and iterations per control step;
            pictures of plans (nearest dataset frame of every planned latent above the frames reached)
  perf/     wall clock of every batched planner call
Videos are animated GIFs written by PIL as a plain image summary (TensorBoard plays them); `add_video` would need
moviepy. The run's config goes in as text and as HParams so several runs compare in one table.
"""
from __future__ import annotations

import io
from collections import defaultdict

import numpy as np
import torch
from PIL import Image
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from agent.mpc import Episode, PlanRecord


def gif_bytes(frames: list[np.ndarray], fps: int = 10) -> bytes:
    """Animated GIF (looping) of uint8 (H, W, 3) frames."""
    images = [Image.fromarray(np.asarray(f, np.uint8)) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return buf.getvalue()


def image_summary(tag: str, encoded: bytes, height: int, width: int) -> Summary:
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=encoded)
    return Summary(value=[Summary.Value(tag=tag, image=image)])


def grid(rows: list[list[np.ndarray | None]], size: int) -> np.ndarray:
    """Rows of (size, size, 3) frames (None = blank) tiled into one uint8 image, 2-px gaps."""
    cols = max(len(r) for r in rows)
    out = np.full((len(rows) * (size + 2), cols * (size + 2), 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, frame in enumerate(row):
            if frame is not None:
                out[i * (size + 2):i * (size + 2) + size, j * (size + 2):j * (size + 2) + size] = frame
    return out


class NearestFrames:
    """Shows latents as pictures: the dataset frame whose encoding is nearest (L2) to each latent.

    frames (M, S, S, 3) uint8 from a small sample of the training data, latents (M, D) their encodings.
    """

    def __init__(self, frames: np.ndarray, latents: torch.Tensor):
        self.frames, self.latents = frames, latents.float().cpu()

    @classmethod
    @torch.no_grad()
    def from_dataset(cls, model, dataset, frames: int = 512, seed: int = 0) -> NearestFrames:
        """Encode `frames` observations of an `envs.data.Dataset`, drawn at random from frames // 8 random episodes."""
        rng = np.random.default_rng(seed)
        picks = rng.choice(len(dataset), size=min(len(dataset), max(1, frames // 8)), replace=False)
        obs = np.concatenate([dataset.episode(int(i))["obs"] for i in sorted(picks)])
        obs = obs[rng.choice(len(obs), size=min(len(obs), frames), replace=False)]
        latents = torch.cat([model.encode(torch.as_tensor(chunk, device=model.device)).cpu()
                             for chunk in np.array_split(obs, max(1, len(obs) // 256))])
        return cls(obs, latents)

    def __call__(self, latents: torch.Tensor) -> list[np.ndarray]:
        nearest = torch.cdist(latents.float().cpu(), self.latents).argmin(1)  # (N,)
        return [self.frames[i] for i in nearest.tolist()]


class EvalLogger:
    """The evaluation's TensorBoard writer. `solve` after every planner call, `episode` after every episode,
    `finish` once with the run's numbers."""

    def __init__(self, logdir: str, nearest: NearestFrames | None = None):
        self.writer = SummaryWriter(logdir)
        self.nearest = nearest
        self.solves = 0
        self.curve_sum: dict[tuple[str, str], torch.Tensor] = defaultdict(lambda: torch.zeros(0))
        self.curve_count: dict[tuple[str, str], torch.Tensor] = defaultdict(lambda: torch.zeros(0))

    def solve(self, rec: PlanRecord) -> None:
        w, step = self.writer, self.solves
        w.add_scalar("perf/plan_time_s", rec.seconds, step)
        w.add_scalar("perf/plan_time_per_episode_s", rec.seconds / len(rec.rows), step)
        w.add_scalar("plan/iters", rec.iters, step)
        w.add_scalar("plan/active_episodes", len(rec.rows), step)
        cost = rec.cost[torch.isfinite(rec.cost)]
        if len(cost):
            w.add_scalar("plan/true_cost", cost.mean().item(), step)
        kind = "warm" if rec.warm else "cold"
        for name, values in rec.diagnostics.items():  # (iters, B); NaN where an iteration did not run
            finite = torch.isfinite(values)
            key = (kind, name)
            n = max(len(self.curve_sum[key]), len(values))
            self.curve_sum[key] = _pad(self.curve_sum[key], n) + _pad(torch.where(finite, values, 0).sum(1), n)
            self.curve_count[key] = _pad(self.curve_count[key], n) + _pad(finite.sum(1).float(), n)
        self.solves += 1

    def episode(self, index: int, ep: Episode) -> None:
        for t, d in enumerate(ep.distances):
            self.writer.add_scalar(f"episode/{index:04d}/distance", d, t)
        if ep.frames:
            frames = [np.concatenate([f, ep.goal_frame], axis=1) for f in ep.frames]
            h, w = frames[0].shape[:2]
            self.writer.file_writer.add_summary(image_summary(f"episode/{index:04d}/video", gif_bytes(frames), h, w))
        if ep.first_plan and self.nearest is not None:
            self._plan_picture(index, ep)

    def _plan_picture(self, index: int, ep: Episode) -> None:
        """Rows: virtual states (if any), model rollout, frames reached; column 0 the start, the goal ends row 1."""
        start, size = ep.frames[0], ep.frames[0].shape[0]
        rows = []
        if "virtual" in ep.first_plan:
            rows.append([start, *self.nearest(ep.first_plan["virtual"]), ep.goal_frame])
        rows.append([start, *self.nearest(ep.first_plan["rollout"])])
        horizon = len(ep.first_plan["rollout"])
        reached = ep.frames[:horizon + 1]
        rows.append(reached + [None] * (horizon + 1 - len(reached)))
        picture = grid(rows, size)
        buf = io.BytesIO()
        Image.fromarray(picture).save(buf, format="PNG")
        self.writer.file_writer.add_summary(
            image_summary(f"plan/picture/{index:04d}", buf.getvalue(), *picture.shape[:2]))

    def finish(self, metrics: dict[str, float], hparams_dict: dict, config_yaml: str) -> None:
        """eval/ scalars, mean diagnostic curves, config text and the HParams entry; closes the writer."""
        w = self.writer
        for name, value in metrics.items():
            w.add_scalar(f"eval/{name}", value, 0)
        for (kind, name), total in self.curve_sum.items():
            mean = total / self.curve_count[(kind, name)].clamp(min=1)
            for it, value in enumerate(mean.tolist()):
                if self.curve_count[(kind, name)][it] > 0:
                    w.add_scalar(f"plan/{kind}/{name}", value, it)
        w.add_text("config", "".join(f"    {line}\n" for line in config_yaml.splitlines()), 0)
        flat = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hparams_dict.items()}
        for summary in hparams(flat, {f"eval/{k}": v for k, v in metrics.items()}):
            w.file_writer.add_summary(summary)
        w.close()


def _pad(x: torch.Tensor, n: int) -> torch.Tensor:
    return torch.cat([x, x.new_zeros(n - len(x))]) if len(x) < n else x
