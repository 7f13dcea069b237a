"""Running one evaluation's episodes on several processes started by torchrun, and merging what they produced.

    torchrun --nproc_per_node=K evaluate.py ...      (or -m benchmarks.planner_sweep)

Episodes run in chunks of `batch` (one EnvBatch, one batched planner call per control step). Chunk k belongs to
rank k % K, and its planner noise comes from a generator seeded by (seed, k) alone, so a chunk's results depend
neither on K nor on which rank ran it: the merged results equal the single-process run's (timings apart).
Sharding single episodes (i % K) would instead change which problems share a batched planner call, and with it
the noise each problem gets. Without torchrun's RANK/WORLD_SIZE variables everything runs in one process.
"""
from __future__ import annotations

import datetime
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist

# torchrun stops every rank when one fails, so a long wait in a collective means a slow peer, not a dead one
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=24)


@dataclass(frozen=True)
class Shard:
    """This process's place among `world` processes (rank 0 merges and writes the outputs)."""
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def chunks(self, n: int, size: int) -> list[tuple[int, range]]:
        """(chunk index, episode indices) of this rank's chunks of n episodes cut into chunks of `size`."""
        return [(k, range(first, min(first + size, n))) for k, first in enumerate(range(0, n, size))
                if k % self.world == self.rank]

    def gather(self, obj) -> list | None:
        """Every rank's `obj` in rank order on rank 0; None on the other ranks."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world if self.main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


@contextmanager
def from_env() -> Iterator[Shard]:
    """The Shard torchrun's RANK/WORLD_SIZE describe, inside a gloo process group (none for a single process)."""
    world, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
    if world == 1:
        yield Shard()
        return
    dist.init_process_group("gloo", timeout=COLLECTIVE_TIMEOUT)
    try:
        yield Shard(rank, world)
    finally:
        dist.destroy_process_group()


def chunk_generator(seed: int, chunk: int, device: str | torch.device = "cpu") -> torch.Generator:
    """The planner generator of chunk `chunk` of a run with `seed`."""
    state = np.random.SeedSequence([seed, chunk]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state))


def merge_chunks(parts: list[list[tuple[int, object]]]) -> list:
    """Per-rank lists of (chunk index, result) -> the results in chunk order."""
    return [result for _, result in sorted((item for part in parts for item in part), key=lambda item: item[0])]
