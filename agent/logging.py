"""TensorBoard logging of an evaluation: one SummaryWriter, fixed namespaces, results first.

  eval/        the run's results: success rates as running curves over episodes (x = episodes counted so far; the
               last point is the run's rate), the final numbers (times, steps, distances) - also the HParams
               table's metrics. Sorts first in TensorBoard's Time Series page. Training logs its held-out world-model
               metrics under `model/`, not here.
  perf/        wall clock of every batched planner call
  plan/        planner diagnostics per iteration, averaged over every solve, cold and warm curves apart
               (`plan/cold/<name>`, `plan/warm/<name>`, x = iteration); true cost and iterations per control step;
               `plan/picture/<episode>`: the plan drawn on the env's frame at a few control steps (agent/pictures.py)
  trajectory/  per episode: `<episode>/distance` over env steps and `<episode>/video` (GIF: the frame with the goal
               ghost, step and distance, beside the goal image); last in the page, and all distances in one chart
               in the Custom Scalars tab
A custom-scalars layout (Custom Scalars tab) puts the results, every episode's distance in one multi-line chart and
the planner curves on one page. Videos are animated GIFs written by PIL as a plain image summary (TensorBoard plays
them); `add_video` would need moviepy. The run's resolved config goes in as text and as HParams (integers as text,
so they show as 50 rather than 50.000; strings as discrete values) so several runs compare in one table.
"""
from __future__ import annotations

import io
import os
import shlex
import sys
from collections import defaultdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import yaml
from PIL import Image
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from agent.mpc import Episode, PlanRecord
from agent.pictures import PlanPanel, episode_frames, frame_strip, plan_picture

RESULTS, TRAJECTORY = "eval", "trajectory"
RATES = ("success_rate", "success_final_rate")  # running curves over the episodes, logged by `episode`
PLAN_PICTURE_STEPS = 3  # control steps shown in a plan picture: the first, the middle and the last plan
FLUSH_SECS = 10
ToPixel = Callable[[np.ndarray], np.ndarray]  # (N, S) true env states -> (N, 2) pixel xy in the env's frames


def gif_bytes(frames: list[np.ndarray], fps: int = 10) -> bytes:
    """Animated GIF (looping) of uint8 (H, W, 3) frames."""
    images = [Image.fromarray(np.asarray(f, np.uint8)) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return buf.getvalue()


def image_summary(tag: str, encoded: bytes, height: int, width: int) -> Summary:
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=encoded)
    return Summary(value=[Summary.Value(tag=tag, image=image)])


grid = frame_strip  # the old name


class NearestFrames:
    """Shows latents as pictures and places them on a frame: the dataset sample whose encoding is nearest (L2)
    to each latent, its frame and its true env state.

    latents (M, D) the encodings of a small sample of the training data; frames (M, S, S, 3) uint8 its pixels
    (None for state observations); states (M, S) its true env states (None if unknown).
    """

    def __init__(self, frames: np.ndarray | None, latents: torch.Tensor, states: np.ndarray | None = None):
        self.frames, self.latents, self.states = frames, latents.float().cpu(), states

    @classmethod
    @torch.no_grad()
    def from_dataset(cls, model, dataset, frames: int = 512, seed: int = 0) -> NearestFrames:
        """Encode `frames` observations of an `envs.data.Dataset`, drawn at random from frames // 8 random episodes,
        each from its window of the model's last k = `model.history` frames (before an episode's first frame,
        the first frame repeated, as in training)."""
        rng = np.random.default_rng(seed)
        picks = rng.choice(len(dataset), size=min(len(dataset), max(1, frames // 8)), replace=False)
        eps = [dataset.episode(int(i)) for i in sorted(picks)]
        obs, states = np.concatenate([e["obs"] for e in eps]), np.concatenate([e["states"] for e in eps])
        first = np.repeat(np.cumsum([0] + [len(e["obs"]) for e in eps[:-1]]), [len(e["obs"]) for e in eps])
        keep = rng.choice(len(obs), size=min(len(obs), frames), replace=False)
        window = np.maximum(keep[:, None] + np.arange(1 - model.history, 1), first[keep, None])  # (M, k) indices
        windows, obs, states = obs[window], obs[keep], states[keep]
        chunks = max(1, len(windows) // 256)
        latents = torch.cat([model.encode(torch.as_tensor(chunk, device=model.device), torch.as_tensor(state)).cpu()
                             for chunk, state in zip(np.array_split(windows, chunks), np.array_split(states, chunks))])
        return cls(obs if obs.ndim == 4 else None, latents, states)

    def index(self, latents: torch.Tensor) -> list[int]:
        return torch.cdist(latents.float().cpu(), self.latents).argmin(1).tolist()

    def __call__(self, latents: torch.Tensor) -> list[np.ndarray]:
        """The nearest sample's frame of each latent (N, D); needs `frames`."""
        return [self.frames[i] for i in self.index(latents)]

    def nearest_states(self, latents: torch.Tensor) -> np.ndarray:
        """(N, S) the nearest sample's true state of each latent (N, D); needs `states`."""
        return self.states[self.index(latents)]


def short_path(path) -> str:
    """A path as a reader wants it in a table: relative to the working directory when inside it, else its last
    two parts."""
    p = Path(str(path))
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(Path(*p.parts[-2:])) if len(p.parts) > 2 else str(p)


def hparam_value(value):
    """A value the HParams table shows as written: bools and floats as they are, ints and everything else as
    text (the table prints every number with three decimals; 50.000 reads badly)."""
    if isinstance(value, (bool, float)):
        return value
    if isinstance(value, str):
        return short_path(value) if os.sep in value and len(value) > 30 else value
    return str(value)


def tensorboard_command(logdir) -> str:
    """A command that opens `logdir` in TensorBoard as printed: the `tensorboard` beside the running Python (the
    project's .venv/bin/tensorboard when run from the venv), else `python -m tensorboard.main`."""
    exe = Path(sys.executable).parent / "tensorboard"
    if exe.exists():
        tool = os.path.relpath(exe) if exe.is_relative_to(Path.cwd()) else str(exe)
        return shlex.join([tool, "--logdir", str(logdir)])
    return shlex.join([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir)])


class EvalLogger:
    """The evaluation's TensorBoard writer. `solve` after every planner call, `episode` as each episode ends (any
    order; the index is the episode's place in the run), `finish` once with the run's numbers. Everything is on
    disk after each `episode` (and at most FLUSH_SECS after a solve), so TensorBoard shows a run while it goes.

    nearest: reference samples for plan pictures (None: no plan pictures).
    to_pixel: the env's map from true states to pixel xy in its frames (`GoalEnv.pixel_xy`); with it (and
        `nearest.states`) the plan is drawn on the frame, without it as rows of nearest frames (`frame_strip`).
    frame_strip: also log the rows of nearest frames as `plan/strip/<episode>` when the drawn picture exists.
    """

    def __init__(self, logdir: str, nearest: NearestFrames | None = None, to_pixel: ToPixel | None = None,
                 frame_strip: bool = False):
        self.writer = SummaryWriter(logdir, flush_secs=FLUSH_SECS)
        self.nearest, self.to_pixel, self.frame_strip = nearest, to_pixel, frame_strip
        self.solves = 0
        self.counted = self.successes = self.successes_final = 0
        self.curve_sum: dict[tuple[str, str], torch.Tensor] = defaultdict(lambda: torch.zeros(0))
        self.curve_count: dict[tuple[str, str], torch.Tensor] = defaultdict(lambda: torch.zeros(0))
        self.writer.add_custom_scalars(custom_layout())

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

    def count(self, trivial: bool, success: bool, success_final: bool) -> None:
        """Count an episode in the running rates without logging it (one an interrupted run logged already)."""
        if not trivial:
            self.counted += 1
            self.successes += success
            self.successes_final += success_final

    def episode(self, index: int, ep: Episode) -> None:
        """Its distance curve, the running success rates, and for recorded episodes the video and plan picture;
        flushed to disk."""
        w = self.writer
        for t, d in enumerate(ep.distances):
            w.add_scalar(f"{TRAJECTORY}/{index:04d}/distance", d, t)
        self.count(ep.trivial, ep.success, ep.success_final)
        if not ep.trivial:
            w.add_scalar(f"{RESULTS}/success_rate", self.successes / self.counted, self.counted)
            w.add_scalar(f"{RESULTS}/success_final_rate", self.successes_final / self.counted, self.counted)
        if ep.frames and ep.goal_frame is not None:
            frames = episode_frames(ep.frames, ep.goal_frame, ep.distances)
            h, wd = frames[0].shape[:2]
            w.file_writer.add_summary(image_summary(f"{TRAJECTORY}/{index:04d}/video", gif_bytes(frames), h, wd))
        if ep.first_plan and self.nearest is not None:
            drawn = self._plan_picture(index, ep)
            if (not drawn or self.frame_strip) and self.nearest.frames is not None:
                self._frame_strip(index, ep, "plan/strip" if drawn else "plan/picture")
        w.flush()

    def _plan_picture(self, index: int, ep: Episode) -> bool:
        """The plan drawn on the frame at a few control steps; False if positions are not available."""
        if self.to_pixel is None or self.nearest.states is None or not ep.states or ep.goal_state is None:
            return False
        plans = ep.plans or [(0, ep.first_plan)]
        picks = sorted({round(k * (len(plans) - 1) / max(PLAN_PICTURE_STEPS - 1, 1))
                        for k in range(PLAN_PICTURE_STEPS)})
        states = np.stack(ep.states)
        xy = self.to_pixel(states)
        goal = self.to_pixel(ep.goal_state[None])[0]
        panels = []
        for k in picks:
            step, latents = plans[k]
            step = min(step, len(states) - 1)
            virtual = latents.get("virtual")
            panels.append(PlanPanel(
                step=step, frame=ep.frames[step], start=xy[0], goal=goal, path=xy[:step + 1],
                rollout=self.to_pixel(self.nearest.nearest_states(latents["rollout"])),
                virtual=None if virtual is None else self.to_pixel(self.nearest.nearest_states(virtual))))
        self._png(f"plan/picture/{index:04d}", plan_picture(panels))
        return True

    def _frame_strip(self, index: int, ep: Episode, tag: str) -> None:
        """Rows: virtual states (if any), model rollout, frames reached; column 0 the start, the goal ends row 1."""
        start, size = ep.frames[0], ep.frames[0].shape[0]
        rows = []
        if "virtual" in ep.first_plan:
            rows.append([start, *self.nearest(ep.first_plan["virtual"]), ep.goal_frame])
        rows.append([start, *self.nearest(ep.first_plan["rollout"])])
        horizon = len(ep.first_plan["rollout"])
        reached = ep.frames[:horizon + 1]
        rows.append(reached + [None] * (horizon + 1 - len(reached)))
        self._png(f"{tag}/{index:04d}", frame_strip(rows, size))

    def _png(self, tag: str, picture: np.ndarray) -> None:
        buf = io.BytesIO()
        Image.fromarray(picture).save(buf, format="PNG")
        self.writer.file_writer.add_summary(image_summary(tag, buf.getvalue(), *picture.shape[:2]))

    def close(self) -> None:
        self.writer.close()

    def finish(self, metrics: dict[str, float], hparams_dict: dict, config: str | dict,
               resolved: dict | None = None, discrete: dict[str, list] | None = None,
               numeric: tuple[str, ...] = ()) -> None:
        """eval/ results, mean diagnostic curves, config text and the HParams entry; closes the writer.

        metrics: the run's numbers (None values are skipped); each becomes `eval/<name>`, at x = the episodes
            counted (so a rate's final point ends its running curve).
        hparams_dict: flat {name: value}; ints and other non-float values are shown as text, long paths shortened.
        config: the run's config as YAML text or a mapping; `resolved` replaces its top-level keys by the values
            the run actually used (e.g. {"checkpoint": path, "logdir": dir} for keys that were null).
        discrete: {hparam name: every value it may take} (e.g. all planner names), so the table offers them as
            a filter and shows the column; a string hparam without an entry gets its own value.
        numeric: int hparams to keep as numbers (an axis that should sort numerically, e.g. a sweep's horizon).
        """
        w = self.writer
        step = max(self.counted, 1)
        for name, value in metrics.items():
            if value is not None:
                w.add_scalar(f"{RESULTS}/{name}", value, step)
        for (kind, name), total in self.curve_sum.items():
            mean = total / self.curve_count[(kind, name)].clamp(min=1)
            for it, value in enumerate(mean.tolist()):
                if self.curve_count[(kind, name)][it] > 0:
                    w.add_scalar(f"plan/{kind}/{name}", value, it)
        w.add_text("config", "".join(f"    {line}\n" for line in config_text(config, resolved).splitlines()), 0)
        write_hparams(w, hparams_dict, {f"{RESULTS}/{k}": v for k, v in metrics.items()}, discrete, numeric)
        w.close()


def write_hparams(writer: SummaryWriter, hparams_dict: dict, metrics: dict[str, float],
                  discrete: dict[str, list] | None = None, numeric: tuple[str, ...] = ()) -> None:
    """One HParams entry (see `EvalLogger.finish`): `metrics` are full tags, None values skipped."""
    flat = {k: (v if k in numeric and isinstance(v, (int, float)) else hparam_value(v))
            for k, v in hparams_dict.items()}
    domains = {k: [v] for k, v in flat.items() if isinstance(v, str)}
    for k, values in (discrete or {}).items():
        if k in flat:
            domains[k] = sorted({*(hparam_value(v) if isinstance(flat[k], str) else v for v in values), flat[k]},
                                key=str)
    shown = {k: v for k, v in metrics.items() if v is not None}
    for summary in hparams(flat, shown, hparam_domain_discrete=domains):
        writer.file_writer.add_summary(summary)


def config_text(config: str | dict, resolved: dict | None = None) -> str:
    """The config as YAML with `resolved` top-level values in place of the ones it had (e.g. null defaults)."""
    if not resolved:
        return config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
    data = dict(yaml.safe_load(config) or {}) if isinstance(config, str) else dict(config)
    data.update({k: (str(v) if isinstance(v, Path) else v) for k, v in resolved.items()})
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def custom_layout() -> dict:
    """The Custom Scalars tab: results, every episode's distance in one chart, the planner's curves."""
    return {
        "results": {
            "success rate (running, over episodes)": ["Multiline", [rf"^{RESULTS}/success(_final)?_rate$"]],
            "time to success / plan time (s)":
                ["Multiline", [rf"^{RESULTS}/(median_time_to_success_s|mean_plan_time_s)$"]],
            "final distance and steps": ["Multiline", [rf"^{RESULTS}/mean_(final_distance|steps)$"]],
        },
        "episodes": {
            "distance to goal, every episode": ["Multiline", [rf"^{TRAJECTORY}/\d+/distance$"]],
        },
        "planner": {
            "cold solves (per iteration)": ["Multiline", [r"^plan/cold/"]],
            "warm solves (per iteration)": ["Multiline", [r"^plan/warm/"]],
            "plan time per call (s)": ["Multiline", [r"^perf/plan_time_s$"]],
        },
    }


def _pad(x: torch.Tensor, n: int) -> torch.Tensor:
    return torch.cat([x, x.new_zeros(n - len(x))]) if len(x) < n else x
