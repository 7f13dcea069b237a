import io
import json
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

import numpy as np
import torch
from agent_fakes import PointBatch, PointModel
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

import planners
from agent import MPCAgent, MPCConfig
from agent.logging import EvalLogger, NearestFrames, gif_bytes


def logged_run(logdir, nearest=None):
    planner = planners.make("grasp", iters=30, iters_warm=10, sync_every=10)
    agent = MPCAgent(PointModel(), planner, MPCConfig(horizon=5, budget=6), generator=torch.Generator())
    logger = EvalLogger(str(logdir), nearest)
    episodes, _ = agent.run(PointBatch(3), [1, 2, 3], record=[True, False, False], on_plan=logger.solve)
    for i, e in enumerate(episodes):
        logger.episode(i, e)
    logger.finish({"success_rate": 0.5, "mean_steps": 3.0}, {"planner": "grasp", "mpc.horizon": 5, "x": None},
                  "env:\n  name: point\n")
    return episodes


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
            "episode/0000/distance", "episode/0002/distance"} <= scalars
    for name in ("dyn_loss", "goal_loss", "rollout_cost", "gap", "best_cost"):
        assert {f"plan/cold/{name}", f"plan/warm/{name}"} <= scalars
    assert len(acc.Scalars("plan/cold/dyn_loss")) == 30 and len(acc.Scalars("plan/warm/dyn_loss")) == 10
    assert [e.value for e in acc.Scalars("episode/0001/distance")] == \
        [np.float32(d) for d in episodes[1].distances]
    assert images == {"episode/0000/video", "plan/picture/0000"}
    video = acc.Images("episode/0000/video")[0]
    gif = Image.open(io.BytesIO(video.encoded_image_string))
    assert gif.format == "GIF" and gif.n_frames > 1 and gif.size == (16, 8)  # frame | goal
    durations = []
    for k in range(gif.n_frames):  # PIL merges identical consecutive frames, adding up their durations
        gif.seek(k)
        durations.append(gif.info["duration"])
    assert sum(durations) == 100 * (episodes[0].steps + 1)
    assert "config" in "".join(acc.Tags()["tensors"])  # the text summary
    start = plugin_data_pb2.HParamsPluginData.FromString(
        acc.SummaryMetadata("_hparams_/session_start_info").plugin_data.content).session_start_info
    assert start.hparams["planner"].string_value == "grasp" and start.hparams["mpc.horizon"].number_value == 5
    assert start.hparams["x"].string_value == "None"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        acc.SummaryMetadata("_hparams_/experiment").plugin_data.content).experiment
    assert {m.name.tag for m in experiment.metric_infos} == {"eval/success_rate", "eval/mean_steps"}


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

        tag = urllib.parse.quote("episode/0001/distance", safe="")
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
