import dataclasses
import io
import json
import queue
import re
import shlex
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest
import torch
from agent_fakes import PointBatch, PointModel, draw
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

import planners
from agent import MPCAgent, MPCConfig
from agent.pictures import COLORS, GOAL_TINT, PlanPanel, episode_frames, plan_picture, upscale
from agent.logging import EvalLogger, NearestFrames, gif_bytes, short_path, tensorboard_command


def point_to_pixel(states):
    """PointBatch's `draw`: x, y in [-2, 2] -> pixel (x + 2) * 2 of its 8-px frames."""
    return (np.asarray(states)[:, :2] + 2) * 2


def logged_run(logdir, nearest=None, to_pixel=None, **kwargs):
    planner = planners.make("grasp", iters=30, iters_warm=10, sync_every=10)
    agent = MPCAgent(PointModel(), planner, MPCConfig(horizon=5, budget=6), generator=torch.Generator())
    logger = EvalLogger(str(logdir), nearest, to_pixel, **kwargs)
    episodes, _ = agent.run(PointBatch(3), [1, 2, 3], record=[True, False, False], on_plan=logger.solve)
    for i, e in enumerate(episodes):
        logger.episode(i, e)
    logger.finish({"success_rate": 0.5, "mean_steps": 3.0, "median_time_to_success_s": None},
                  {"planner": "grasp", "mpc.horizon": 5, "x": None, "sigma": 0.2,
                   "checkpoint": "/very/long/absolute/path/to/some/run/dir/model.pt"},
                  "env:\n  name: point\ncheckpoint: null\n", resolved={"checkpoint": "run/model.pt"},
                  discrete={"planner": ["cem", "grasp", "gd"]})
    return episodes


def decoded(acc, tag):
    return [Image.open(io.BytesIO(e.encoded_image_string)) for e in acc.Images(tag)]


def test_gif_bytes_is_an_animated_gif():
    frames = [np.full((4, 6, 3), v, np.uint8) for v in (0, 120, 255)]
    image = Image.open(io.BytesIO(gif_bytes(frames)))
    assert image.format == "GIF" and image.n_frames == 3 and image.size == (6, 4)


def test_event_file_has_every_namespace(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (20, 8, 8, 3), dtype=np.uint8)
    nearest = NearestFrames(frames, torch.randn(20, 2))
    episodes = logged_run(tmp_path, nearest)
    acc = EventAccumulator(str(tmp_path), size_guidance={"images": 0, "scalars": 0}).Reload()
    scalars, images = set(acc.Tags()["scalars"]), set(acc.Tags()["images"])
    assert {"eval/success_rate", "eval/mean_steps", "perf/plan_time_s", "plan/iters", "plan/true_cost",
            "trajectory/0000/distance", "trajectory/0002/distance"} <= scalars
    assert "eval/median_time_to_success_s" not in scalars  # None: not logged
    for name in ("dyn_loss", "goal_loss", "rollout_cost", "gap", "best_cost"):
        assert {f"plan/cold/{name}", f"plan/warm/{name}"} <= scalars
    assert len(acc.Scalars("plan/cold/dyn_loss")) == 30 and len(acc.Scalars("plan/warm/dyn_loss")) == 10
    assert [e.value for e in acc.Scalars("trajectory/0001/distance")] == \
        [np.float32(d) for d in episodes[1].distances]
    counted = [e for e in episodes if not e.trivial]
    rates = acc.Scalars("eval/success_rate")  # a running curve over the episodes, then the final number
    assert [r.step for r in rates] == [*range(1, len(counted) + 1), len(counted)]
    assert rates[-2].value == np.float32(sum(e.success for e in counted) / len(counted)) and rates[-1].value == 0.5
    assert images == {"trajectory/0000/video", "plan/picture/0000"}
    gif = decoded(acc, "trajectory/0000/video")[0]
    assert gif.format == "GIF" and gif.n_frames > 1 and gif.size == (2 * 8 * 3 + 4, 8 * 3)  # frame | gap | goal
    durations = []
    for k in range(gif.n_frames):  # PIL merges identical consecutive frames, adding up their durations
        gif.seek(k)
        durations.append(gif.info["duration"])
    assert sum(durations) == 100 * (episodes[0].steps + 1)
    assert "config" in "".join(acc.Tags()["tensors"])  # the text summary
    start = plugin_data_pb2.HParamsPluginData.FromString(
        acc.SummaryMetadata("_hparams_/session_start_info").plugin_data.content).session_start_info
    assert start.hparams["planner"].string_value == "grasp"
    assert start.hparams["mpc.horizon"].string_value == "5"  # an int as text: not 5.000 in the table
    assert start.hparams["sigma"].number_value == np.float32(0.2)
    assert start.hparams["x"].string_value == "None"
    assert start.hparams["checkpoint"].string_value == "dir/model.pt"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        acc.SummaryMetadata("_hparams_/experiment").plugin_data.content).experiment
    assert {m.name.tag for m in experiment.metric_infos} == {"eval/success_rate", "eval/mean_steps"}
    planner_info = next(h for h in experiment.hparam_infos if h.name == "planner")
    assert [v.string_value for v in planner_info.domain_discrete.values] == ["cem", "gd", "grasp"]
    text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "checkpoint: run/model.pt" in text and "null" not in text
    assert "custom_scalars__config__" in acc.Tags()["tensors"]


def test_plan_picture_is_drawn_on_the_frame_when_positions_are_known(tmp_path):
    """With `to_pixel` and reference states the plan is one readable picture (frames upscaled, a legend, a
    panel per chosen control step); the frame strip comes only on request."""
    rng = np.random.default_rng(0)
    states = rng.uniform(-2, 2, (200, 2))
    frames = np.stack([draw(s) for s in states])
    nearest = NearestFrames(frames, torch.as_tensor(states, dtype=torch.float32), states)
    episodes = logged_run(tmp_path, nearest, point_to_pixel, frame_strip=True)
    acc = EventAccumulator(str(tmp_path), size_guidance={"images": 0}).Reload()
    assert set(acc.Tags()["images"]) == {"trajectory/0000/video", "plan/picture/0000", "plan/strip/0000"}
    picture = np.asarray(decoded(acc, "plan/picture/0000")[0].convert("RGB"))
    panels = min(len(episodes[0].plans), 3)
    assert picture.shape == (8 * 4 + 22, max(panels * 8 * 4 + (panels - 1) * 4, picture.shape[1]), 3)
    legend = picture[8 * 4:]
    for color in COLORS.values():  # every legend swatch is there
        assert (legend == color).all(-1).sum() >= 100


@pytest.mark.slow  # several processes (or a server): the second CI step, `pytest -m slow`
def test_real_tensorboard_server_serves_the_logged_scalars(tmp_path):
    episodes = logged_run(tmp_path)
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(tmp_path), "--host",
                               "127.0.0.1", "--port", "0", "--reload_interval", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in server.stderr], daemon=True).start()
    try:
        deadline, url = time.monotonic() + 60, None
        while url is None:
            match = re.search(r"(http://127\.0\.0\.1:\d+)/", lines.get(timeout=max(deadline - time.monotonic(), 0)))
            url = match and match.group(1)

        def get(path):
            with urllib.request.urlopen(url + path, timeout=10) as response:
                return json.load(response)

        tag = urllib.parse.quote("trajectory/0001/distance", safe="")
        while True:  # the server loads event files in the background
            runs = get("/data/runs")
            if runs:
                points = get(f"/data/plugin/scalars/scalars?run={urllib.parse.quote(runs[0])}&tag={tag}")
                if points:
                    break
            assert time.monotonic() < deadline, "tensorboard served no data within 60 s"
            time.sleep(0.2)
        assert runs == ["."]
        assert [p[1] for p in points] == list(range(len(episodes[1].distances)))  # [wall_time, step, value]
        np.testing.assert_allclose([p[2] for p in points], episodes[1].distances, rtol=1e-6)
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_episode_frames_ghost_the_goal_in_green_beside_a_labelled_goal_image():
    agent = (255, 60, 30)
    def scene(x):
        frame = np.zeros((16, 16, 3), np.uint8)
        frame[6:9, x:x + 3] = agent
        return frame
    frames, goal = [scene(1), scene(4), scene(7)], scene(12)
    out = episode_frames(frames, goal, [5.0, 4.0, 3.0], scale=3, gap=4)
    assert len(out) == 3 and all(f.shape == (48, 2 * 48 + 4, 3) for f in out)
    first = out[0].astype(int)
    ghost, current = first[7 * 3 + 1, 13 * 3 + 1], first[7 * 3 + 1, 2 * 3 + 1]
    assert ghost[1] > 80 and ghost[1] > ghost[0] + 50  # the goal's place is green on the frame
    assert current[0] > 200 and current[1] < 100        # the agent keeps its red
    assert (first[:, 48:52] == 255).all()               # a visible separator
    assert (out[0][:12, :48] != upscale(frames[0], 3)[:12]).any()  # "t=0  d=5" written in the corner
    assert (out[0][:12, 52:] != upscale(goal, 3)[:12]).any()       # the "goal" label
    assert (out[0][:12, :48] != out[2][:12, :48]).any()            # the text changes with the step


def test_plan_picture_size_legend_and_distinct_colours():
    frame = np.zeros((16, 16, 3), np.uint8)
    frame[6:9, 1:4] = (255, 60, 30)
    line = lambda a, b, n: np.linspace(a, b, n)  # noqa: E731
    panel = PlanPanel(step=2, frame=frame, start=np.array([2.0, 7.0]), goal=np.array([13.0, 7.0]),
                      path=line([2, 7], [4, 8], 3), rollout=line([5, 8], [12, 6], 5), virtual=line([5, 9], [12, 8], 4))
    picture = plan_picture([panel, panel, panel], scale=4)
    assert picture.shape[0] == 16 * 4 + 22 and picture.shape[1] >= 3 * 64 + 2 * 4 and picture.dtype == np.uint8
    big = plan_picture([dataclasses.replace(panel, frame=upscale(frame, 4))] * 3, scale=4)  # 64-px frames
    assert big.shape == (64 * 4 + 22, 3 * 256 + 2 * 4, 3)
    colors = list(COLORS.values())
    assert len(set(colors)) == len(colors)
    assert GOAL_TINT == COLORS["goal"] and all(
        np.abs(np.subtract(COLORS["goal"], agent)).sum() > 150 for agent in [(255, 60, 30), (255, 217, 25)])
    for color in colors:  # every colour is on the panels and in the legend
        assert (picture[:64] == color).all(-1).any() and (picture[64:] == color).all(-1).any()
    bare = plan_picture([PlanPanel(0, frame, panel.start, panel.goal, panel.path[:1], panel.rollout)], scale=4)
    assert not (bare == COLORS["virtual"]).all(-1).any()  # no virtual states, no legend entry
    assert bare.shape[1] > 64  # the legend fits: the canvas widens past one narrow panel


def test_short_path_keeps_the_part_a_reader_needs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert short_path(tmp_path / "runs" / "a" / "model.pt") == "runs/a/model.pt"
    assert short_path("/elsewhere/deep/dir/model.pt") == "dir/model.pt"


def test_reference_frames_are_encoded_from_windows_of_their_episode():
    class Episodes:   # envs.data.Dataset's surface: 4 episodes whose 1-d observation is 100 * episode + frame
        def __len__(self):
            return 4

        def episode(self, i):
            obs = (100 * i + np.arange(6, dtype=np.float32))[:, None]     # (T+1, 1)
            return {"obs": obs, "states": obs}

    class WindowModel(PointModel):   # latent = the window itself, oldest first
        def encode(self, windows, states=None):
            assert windows.shape[1:] == (self.history, 1)
            return windows[..., 0].float()

    nearest = NearestFrames.from_dataset(WindowModel(history=3), Episodes(), frames=16, seed=0)  # 2 episodes
    frame = nearest.states[:, 0].astype(int)                               # the sample's own (newest) frame
    episode, t = frame // 100, frame % 100
    expected = 100 * episode[:, None] + np.maximum(t[:, None] + np.arange(-2, 1), 0)
    assert nearest.latents.shape == (12, 3) and (t < 2).any()
    np.testing.assert_array_equal(nearest.latents.numpy(), expected)


def test_tensorboard_command_runs_as_printed(tmp_path):
    """The printed hint used to say `tensorboard --logdir DIR`, which is not on PATH unless the venv is active."""
    command = tensorboard_command(tmp_path)
    proc = subprocess.run([*shlex.split(command)[:-2], "--version_tb"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr
    assert shlex.split(command)[-2:] == ["--logdir", str(tmp_path)]
