"""The bookkeeping of an interrupted and resumed evaluation (agent/resume.py); evaluate.py end to end is in
tests/test_evaluate.py."""
import json

import pytest

from agent import AgentError
from agent.resume import Progress, interrupted_run

CONFIG = {"seed": 0, "logdir": "a", "resume": False, "episodes": 5, "batch": 2, "mpc": {"horizon": 4}}
SHA = "ab" * 32  # the checkpoint's content hash


def row(i, success=True, trivial=False):
    return {"index": i, "trivial": trivial, "success": success}


def write_interrupted(logdir, config=CONFIG):
    """An interrupted run of 5 episodes in chunks of 2: chunk 0 finished, chunk 1 cut after episode 2."""
    logdir.mkdir()
    (logdir / "results.json").write_text(json.dumps({
        "complete": False, "config": config, "checkpoint": "m.pt", "checkpoint_sha256": SHA,
        "per_episode": [row(0), row(1, False), row(2)],
        "finished_chunks": [{"chunk": 0, "plan_calls": [[0.5, 10], [0.25, 4]]}]}))


def test_a_fresh_logdir_has_nothing_to_continue(tmp_path):
    assert interrupted_run(tmp_path, CONFIG, SHA, resume=False) == ({}, {})
    with pytest.raises(AgentError, match="resume=true but .* does not exist"):
        interrupted_run(tmp_path, CONFIG, SHA, resume=True)


def test_only_an_interrupted_run_with_resume_the_same_config_and_model_is_continued(tmp_path):
    write_interrupted(tmp_path / "cut")
    with pytest.raises(AgentError, match="holds an interrupted run; pass resume=true"):
        interrupted_run(tmp_path / "cut", CONFIG, SHA, resume=False)
    with pytest.raises(AgentError, match="resume: mpc.horizon=5 differs from the interrupted run's 4"):
        interrupted_run(tmp_path / "cut", {**CONFIG, "mpc": {"horizon": 5}}, SHA, resume=True)
    rows, calls = interrupted_run(tmp_path / "cut", {**CONFIG, "resume": True, "logdir": "b"}, SHA, resume=True)
    assert sorted(rows) == [0, 1, 2] and calls == {0: [[0.5, 10], [0.25, 4]]}
    with pytest.raises(AgentError, match="resume: the checkpoint 'm.pt' has changed since the interrupted run "
                                         r"\(sha256 cdcdcdcdcdcd, was abababababab\)"):
        interrupted_run(tmp_path / "cut", CONFIG, "cd" * 32, resume=True)
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "results.json").write_text(json.dumps({"complete": True}))
    with pytest.raises(AgentError, match="already holds a finished run"):
        interrupted_run(tmp_path / "done", CONFIG, SHA, resume=True)


def test_progress_reruns_a_cut_chunk_and_keeps_its_finished_episodes_for_a_partial_file(tmp_path):
    write_interrupted(tmp_path / "cut")
    progress = Progress(tmp_path / "cut", CONFIG, SHA, True, episodes=5, batch=2)
    assert progress.skip == {0} and sorted(progress.rows) == [0, 1]  # episode 2's chunk runs again
    assert progress.todo == 3 and progress.successes() == (1, 2)
    assert [(r.seconds, r.iters) for r in progress.records(["ran"])[:2]] == [(0.5, 10), (0.25, 4)]
    assert progress.records(["ran"])[2:] == ["ran"]
    rows, records, chunk_calls = progress.partial()  # cut again before episode 2 ran: the first attempt's is kept
    assert [r["index"] for r in rows] == [0, 1, 2] and len(records) == 2 and list(chunk_calls) == [0]
