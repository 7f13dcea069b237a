"""Pictures for TensorBoard that a person can read at a glance, drawn with PIL and knowing nothing about the env.

`episode_frames`: one GIF frame per env step: the frame (upscaled) with the goal drawn ON it as a translucent
    green ghost and the step and task distance written in a corner, a separator, and the goal image labelled "goal".
    The ghost needs no env knowledge: the pixels where the goal image differs from the scene's background (the
    per-pixel median of the episode's frames, i.e. what stays when the agent moves) are tinted green in the frame.
`plan_picture`: one panel per chosen control step: the frame of that step, dimmed, with the start, the goal, the
    path executed so far, the plan's virtual states and the model's predicted rollout drawn as coloured marks at
    pixel positions, and one legend under the panels. Positions come from the caller (`to_pixel(states)` of the
    env, applied to true states and to the states of the dataset frames nearest to the plan's latents).
`frame_strip`: the older rows of nearest dataset frames, kept as an optional detail.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SCALE = 3  # 64-px frames upscaled 3x (nearest) so that text and marks are readable
GOAL_TINT = (40, 255, 90)
GOAL_ALPHA = 0.45
SEPARATOR = (255, 255, 255)
# one colour per thing on the plan picture; none of them the red, yellow or blue the envs draw their agents in
COLORS = {
    "start": (255, 255, 255),
    "goal": GOAL_TINT,
    "path": (255, 0, 255),      # executed so far
    "virtual": (0, 230, 255),   # the plan's virtual states (GRASP, LatCo)
    "rollout": (255, 150, 0),   # the model's prediction of the planned actions
}
LEGEND = {"start": "start", "goal": "goal", "path": "executed", "virtual": "plan states", "rollout": "model rollout"}


def upscale(frame: np.ndarray, k: int) -> np.ndarray:
    """Nearest-neighbour upscaling of an (H, W, 3) frame by an integer factor."""
    return np.repeat(np.repeat(np.asarray(frame, np.uint8), k, axis=0), k, axis=1)


def _font():
    return ImageFont.load_default()


def _label(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, fill=(255, 255, 255)) -> None:
    """Text on a black box, so it reads on any background."""
    left, top, right, bottom = draw.textbbox(xy, text, font=_font())
    draw.rectangle((left - 2, top - 1, right + 2, bottom + 1), fill=(0, 0, 0))
    draw.text(xy, text, fill=fill, font=_font())


def goal_ghost(frame: np.ndarray, goal: np.ndarray, background: np.ndarray, alpha: float = GOAL_ALPHA,
               tint=GOAL_TINT) -> np.ndarray:
    """`frame` with the goal's distinguishing pixels (where `goal` differs from `background`) tinted green."""
    diff = np.abs(goal.astype(np.float32) - background.astype(np.float32)).max(-1, keepdims=True)
    mask = np.clip(diff / 48.0, 0.0, 1.0) * alpha  # (H, W, 1)
    out = frame.astype(np.float32) * (1 - mask) + np.array(tint, np.float32) * mask
    return np.round(out).astype(np.uint8)


def episode_frames(frames: list[np.ndarray], goal_frame: np.ndarray, distances: list[float] | None = None,
                   scale: int = SCALE, gap: int = 4) -> list[np.ndarray]:
    """The GIF frames of an episode: [frame + goal ghost + "t=.. d=.."] | separator | [goal image + "goal"].
    Each output is (H*scale, 2*W*scale + gap, 3) uint8; `distances[t]` is the task distance after step t."""
    background = np.median(np.stack([*frames, goal_frame]), axis=0).astype(np.uint8)
    goal = Image.fromarray(upscale(goal_frame, scale))
    _label(ImageDraw.Draw(goal), (4, 3), "goal", fill=GOAL_TINT)
    goal = np.asarray(goal)
    out = []
    for t, frame in enumerate(frames):
        left = Image.fromarray(upscale(goal_ghost(frame, goal_frame, background), scale))
        text = f"t={t}" + (f"  d={distances[t]:.3g}" if distances is not None and t < len(distances) else "")
        _label(ImageDraw.Draw(left), (4, 3), text)
        sep = np.full((goal.shape[0], gap, 3), SEPARATOR, np.uint8)
        out.append(np.concatenate([np.asarray(left), sep, goal], axis=1))
    return out


@dataclass
class PlanPanel:
    """One control step of an episode, in continuous pixel coordinates of `frame` (x right, y down, pixel i spans
    [i, i+1); (N, 2) arrays).
    `virtual` is None for planners without virtual states."""

    step: int  # env steps executed before this plan
    frame: np.ndarray
    start: np.ndarray  # (2,)
    goal: np.ndarray  # (2,)
    path: np.ndarray  # (K, 2) executed so far, start first
    rollout: np.ndarray  # (H, 2)
    virtual: np.ndarray | None = None  # (H-1, 2)


def _dim(frame: np.ndarray) -> np.ndarray:
    """Greyed and darkened, so that the coloured marks stand out on any env's colours."""
    grey = frame.astype(np.float32).mean(-1, keepdims=True)
    return np.round(np.repeat(grey, 3, -1) * 0.45 + 20).astype(np.uint8)


def _polyline(draw, points: np.ndarray, color, width: int, dot: int, start_from=None) -> None:
    pts = [tuple(map(float, p)) for p in points]
    if start_from is not None:
        pts = [tuple(map(float, start_from))] + pts
    if len(pts) > 1:
        draw.line(pts, fill=color, width=width, joint="curve")
    for x, y in pts[1 if start_from is not None else 0:]:
        draw.ellipse((x - dot, y - dot, x + dot, y + dot), fill=color)


def _legend(draw, y: int, keys: list[str]) -> int:
    """Swatch + name per key from x = 4 on row y; returns the width used."""
    x = 4
    for key in keys:
        draw.rectangle((x, y + 6, x + 10, y + 16), fill=COLORS[key])
        draw.text((x + 14, y + 5), LEGEND[key], fill=(255, 255, 255), font=_font())
        x += 14 + int(draw.textlength(LEGEND[key], font=_font())) + 12
    return x


def plan_picture(panels: list[PlanPanel], scale: int = 4) -> np.ndarray:
    """Panels side by side (each the frame upscaled by `scale`, marks on it) above one legend; uint8 (H, W, 3)."""
    size = panels[0].frame.shape[0] * scale
    gap, legend_h = 4, 22
    keys = [k for k in COLORS if k != "virtual" or any(p.virtual is not None for p in panels)]
    legend_w = _legend(ImageDraw.Draw(Image.new("RGB", (1, 1))), 0, keys)
    width = max(len(panels) * size + (len(panels) - 1) * gap, legend_w)
    canvas = Image.new("RGB", (width, size + legend_h), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, p in enumerate(panels):
        x0 = i * (size + gap)
        canvas.paste(Image.fromarray(upscale(_dim(p.frame), scale)), (x0, 0))
        at = lambda xy: np.asarray(xy, np.float64).reshape(-1, 2) * scale + [x0, 0]  # noqa: E731
        current = at(p.path[-1:])[0] if len(p.path) else at(p.start)[0]
        _polyline(draw, at(p.path), COLORS["path"], 2, 2)
        if p.virtual is not None:
            _polyline(draw, at(p.virtual), COLORS["virtual"], 1, 3, start_from=current)
        _polyline(draw, at(p.rollout), COLORS["rollout"], 1, 2, start_from=current)
        (sx, sy), (gx, gy) = at(p.start)[0], at(p.goal)[0]
        draw.rectangle((sx - 5, sy - 5, sx + 5, sy + 5), outline=COLORS["start"], width=2)
        draw.ellipse((gx - 8, gy - 8, gx + 8, gy + 8), outline=COLORS["goal"], width=3)
        draw.line((gx - 4, gy, gx + 4, gy), fill=COLORS["goal"], width=2)
        draw.line((gx, gy - 4, gx, gy + 4), fill=COLORS["goal"], width=2)
        _label(draw, (x0 + 4, 3), f"step {p.step}")
    _legend(draw, size, keys)
    return np.asarray(canvas)


def frame_strip(rows: list[list[np.ndarray | None]], size: int) -> np.ndarray:
    """Rows of (size, size, 3) frames (None = blank) tiled into one uint8 image, 2-px gaps."""
    cols = max(len(r) for r in rows)
    out = np.full((len(rows) * (size + 2), cols * (size + 2), 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, frame in enumerate(row):
            if frame is not None:
                out[i * (size + 2):i * (size + 2) + size, j * (size + 2):j * (size + 2) + size] = frame
    return out
