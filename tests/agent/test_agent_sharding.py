"""agent/sharding.py: chunks are split among ranks and merged back in order; evaluate.py under torchrun gives the
single-process results."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agent.sharding import Shard, chunk_generator, merge_chunks

REPO = Path(__file__).resolve().parents[2]


def test_ranks_split_the_chunks_and_merge_restores_their_order():
    shards = [Shard(rank, 3) for rank in range(3)]
    owned = [s.chunks(23, 5) for s in shards]
    assert [[k for k, _ in o] for o in owned] == [[0, 3], [1, 4], [2]]
    assert sorted(i for o in owned for _, c in o for i in c) == list(range(23))
    assert Shard().chunks(23, 5)[-1] == (4, range(20, 23))
    parts = [[(k, f"r{k}") for k, _ in o] for o in owned]
    assert merge_chunks(parts) == ["r0", "r1", "r2", "r3", "r4"]
    assert Shard().gather("x") == ["x"] and Shard().main and not Shard(1, 2).main


def test_chunk_generators_depend_on_seed_and_chunk_only():
    draw = lambda seed, chunk: torch.rand(3, generator=chunk_generator(seed, chunk))  # noqa: E731
    assert torch.equal(draw(0, 1), draw(0, 1))
    assert not torch.equal(draw(0, 1), draw(0, 2)) and not torch.equal(draw(0, 1), draw(1, 1))


@pytest.mark.slow  # several processes (or a server): the second CI step, `pytest -m slow`
def test_evaluate_under_torchrun_equals_one_process(tmp_path, tiny_checkpoint):
    ckpt = tiny_checkpoint(tmp_path / "wall.pt", "state")
    args = [f"checkpoint={ckpt}", "env.obs_type=state", "episodes=5", "batch=2", "log_videos=0", "mpc.horizon=4",
            "mpc.budget=3", "planner.iters=8", "planner.iters_warm=4", "planner.sync_every=4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for name, launch in (("one", [sys.executable]),
                         ("two", [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                                  f"--master_port={port}"])):
        proc = subprocess.run([*launch, "evaluate.py", f"logdir={tmp_path / name}", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
    one, two = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("one", "two"))
    timeless = lambda eps: [{k: v for k, v in e.items() if not k.endswith("_s")} for e in eps]  # noqa: E731
    assert len(one["per_episode"]) == 5 and timeless(two["per_episode"]) == timeless(one["per_episode"])
    assert two["success_rate"] == one["success_rate"]
    for name in ("one", "two"):  # rank 0 logs the other rank's episodes too, under their global indices
        tags = EventAccumulator(str(tmp_path / name)).Reload().Tags()["scalars"]
        assert {f"trajectory/{i:04d}/distance" for i in range(5)} <= set(tags) and "eval/success_rate" in tags
        assert len(EventAccumulator(str(tmp_path / name)).Reload().Scalars("plan/iters")) == one["plan_calls"]
