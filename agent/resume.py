"""Interrupting and resuming an evaluation (evaluate.py). Ctrl-C writes results.json with "complete": false: the
finished episodes and the plan calls of the finished chunks. `resume=true` runs the other chunks and ends with an
uninterrupted run's results: a chunk's planner noise comes from (seed, chunk) alone (`agent.evaluation.run_episodes`),
so a chunk is the unit that resumes, and one that was cut short runs again from its start.

  interrupted_run  the interrupted run in a logdir, checked to be one this run may continue
  Progress         its episodes and chunks, and this run's as they end: what results.json is written from
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from agent.mpc import AgentError, Episode, PlanRecord
from worldmodels.provenance import config_change


def interrupted_run(logdir: Path, config: dict, checkpoint_sha256: str, resume: bool) \
        -> tuple[dict[int, dict], dict[int, list]]:
    """(per-episode rows by index, {chunk: its plan calls as [seconds, iters]} of the finished chunks) of the
    interrupted run in `logdir` that `resume=true` continues; empty for a fresh logdir. A finished run, an
    interrupted one without resume=true, a config that differs in more than `provenance.RESUME_MAY_CHANGE`, or a
    checkpoint whose content differs (a model retrained to the same path) is an error."""
    path = logdir / "results.json"
    if not path.exists():
        if resume:
            raise AgentError(f"resume=true but {str(path)!r} does not exist; nothing to continue")
        return {}, {}
    old = json.loads(path.read_text())
    if old.get("complete", True):
        raise AgentError(f"logdir={str(logdir)!r} already holds a finished run; choose another logdir")
    if not resume:
        raise AgentError(f"logdir={str(logdir)!r} holds an interrupted run; pass resume=true to continue it or "
                         f"choose another logdir")
    change = config_change(old["config"], config)
    if change:
        k, was, now = change
        raise AgentError(f"resume: {k}={now!r} differs from the interrupted run's {was!r}; a resumed run must keep "
                         f"its config")
    if old.get("checkpoint_sha256") != checkpoint_sha256:
        raise AgentError(f"resume: the checkpoint {old.get('checkpoint')!r} has changed since the interrupted run "
                         f"(sha256 {checkpoint_sha256[:12]}, was {str(old.get('checkpoint_sha256'))[:12]}); a resumed "
                         f"run must plan with the same model")
    return ({r["index"]: r for r in old["per_episode"]},
            {c["chunk"]: c["plan_calls"] for c in old["finished_chunks"]})


class Progress:
    """The episodes of an evaluation of `episodes` episodes in chunks of `batch`, with the interrupted run in
    `logdir` it continues (`interrupted_run`).

    stored: the interrupted run's rows (already in TensorBoard); skip: its finished chunks, not run again;
    rows: every finished episode's results.json row by index (the interrupted run's finished chunks', then this
    run's as `episode` is called); chunk_calls: every finished chunk's plan calls [seconds, iters];
    live: this process's plan records; todo: the episodes this run has to run.
    """

    def __init__(self, logdir: Path, config: dict, checkpoint_sha256: str, resume: bool, episodes: int, batch: int):
        self.stored, self.chunk_calls = interrupted_run(logdir, config, checkpoint_sha256, resume)
        self.skip = frozenset(self.chunk_calls)
        self.rows = {i: row for i, row in self.stored.items() if i // batch in self.skip}  # a cut chunk runs again
        self.todo = sum(min(c + batch, episodes) - c for k, c in enumerate(range(0, episodes, batch))
                        if k not in self.skip)
        self.live: list[PlanRecord] = []

    def plan(self, rec: PlanRecord) -> None:
        self.live.append(rec)

    def episode(self, i: int, ep: Episode) -> None:
        self.rows[i] = {"index": i, **ep.summary(), "distances": ep.distances}

    def chunk(self, k: int, eps: list[Episode], recs: list[PlanRecord]) -> None:
        self.chunk_calls[k] = [[r.seconds, r.iters] for r in recs]

    def successes(self) -> tuple[int, int]:
        """(successes, counted episodes) so far, trivial ones left out."""
        counted = [r for r in self.rows.values() if not r["trivial"]]
        return sum(r["success"] for r in counted), len(counted)

    def records(self, ran: list[PlanRecord]) -> list:
        """What `summarize` reads of plan records (seconds, iters): the skipped chunks' stored ones, then `ran`."""
        return [SimpleNamespace(seconds=s, iters=it) for k in self.skip for s, it in self.chunk_calls[k]] + ran

    def partial(self) -> tuple[list[dict], list, dict[int, list]]:
        """(rows, plan records, finished chunks' plan calls) of an interrupted run's results.json: every finished
        episode, with those of a cut chunk that an earlier attempt finished."""
        kept = {**self.stored, **self.rows}
        return [kept[i] for i in sorted(kept)], self.records(self.live), self.chunk_calls
