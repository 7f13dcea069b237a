"""benchmarks/compare.py: pairing by task on hand-made runs whose counts and McNemar p are known, and one-line
errors for unreadable or unrelated runs."""
import json

import pytest

from benchmarks import compare


def write_run(path, outcomes, distances=None, env=None):
    """A results.json with one episode per (seed, success); trivial episodes marked by success None."""
    env = env or {"name": "wall", "obs_type": "pixels", "image_size": 64, "goal_mode": "random"}
    rows = [{"seed": seed, "trivial": ok is None, "success": bool(ok), "steps": 3,
             "final_distance": (distances or {}).get(seed, 1.0)} for seed, ok in outcomes]
    path.write_text(json.dumps({"per_episode": rows, "config": {"env": env}, "git_commit": "abc",
                                "versions": {"torch_cpu_capability": "AVX2"}}))
    return str(path)


def test_paired_counts_and_mcnemar_on_a_known_case(tmp_path, capsys):
    # seeds 0-9 in both runs: A solves 0-5, B solves 4-6; seed 10 only in A, seed 11 trivial in B
    a = write_run(tmp_path / "a.json", [(s, s <= 5) for s in range(11)] + [(11, True)])
    b = write_run(tmp_path / "b.json", [(s, 4 <= s <= 6) for s in range(10)] + [(11, None)],
                  distances={0: 0.5, 1: 2.0, 2: 3.0, 3: 4.0})
    c = compare.compare(compare.load(a), compare.load(b))
    assert (c["tasks"], c["a"], c["b"], c["only_a"], c["only_b"]) == (10, 6, 3, 4, 1)
    assert c["p_mcnemar"] == pytest.approx(2 * (1 + 5) / 2 ** 5)   # Binomial(5, 1/2): P(X <= 1) = 6/32, two-sided
    assert (c["same_final_distance"], c["same_steps"]) == (6, 10)
    assert (c["nearer_a"], c["nearer_b"]) == (3, 1)   # A's 1.0 against B's 2, 3, 4 and B's 0.5; 6 ties
    assert c["p_nearer"] == pytest.approx(2 * (1 + 4) / 2 ** 4)   # Binomial(4, 1/2): P(X <= 1) = 5/16, two-sided
    compare.main([f"a={a}", f"b={b}"])
    out = capsys.readouterr().out
    assert "success A: 6/10 (60.0 %" in out and "only by A: 4, only by B: 1" in out and "p = 0.375" in out
    assert "ended nearer the goal: A in 3, B in 1 (ties left out), exact sign test p = 0.625" in out
    run_dir = tmp_path / "run"   # an evaluate.py logdir stands for its results.json
    run_dir.mkdir()
    (run_dir / "results.json").write_text((tmp_path / "b.json").read_text())
    assert compare.load(str(run_dir)) == compare.load(b)
    with pytest.raises(SystemExit, match="results.json' is not a readable"):
        compare.load(str(tmp_path))


def test_a_run_compared_with_itself_matches_everywhere(tmp_path):
    a = compare.load(write_run(tmp_path / "a.json", [(s, s % 3 == 0) for s in range(9)]))
    c = compare.compare(a, a)
    assert (c["only_a"], c["only_b"], c["p_mcnemar"], c["same_final_distance"]) == (0, 0, 1.0, 9)
    assert (c["nearer_a"], c["nearer_b"], c["p_nearer"]) == (0, 0, 1.0)


def test_runs_must_draw_the_same_tasks_whatever_they_observe(tmp_path):
    wall = {"name": "wall", "obs_type": "pixels", "image_size": 64, "goal_mode": "random"}
    a = write_run(tmp_path / "a.json", [(0, True), (1, False)], env=wall)
    state = write_run(tmp_path / "b.json", [(0, False), (1, False)],
                      env={**wall, "obs_type": "state", "image_size": 32})
    assert compare.compare(compare.load(a), compare.load(state))["only_a"] == 1
    other = write_run(tmp_path / "c.json", [(0, True)], env={**wall, "name": "pusht", "goal_mode": "trajectory"})
    with pytest.raises(SystemExit, match="different tasks: env.goal_mode='random' vs 'trajectory', env.name='wall' vs"):
        compare.main([f"a={a}", f"b={other}"])


def test_unreadable_or_unrelated_runs_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    good = write_run(tmp_path / "a.json", [(0, True)])
    other = write_run(tmp_path / "b.json", [(1, True)])
    with pytest.raises(SystemExit, match="not a readable evaluate.py results.json"):
        compare.main([f"a={bad}", f"b={good}"])
    with pytest.raises(SystemExit, match="share no task"):
        compare.main([f"a={good}", f"b={other}"])
    with pytest.raises(SystemExit, match="give both runs"):
        compare.main([f"a={good}"])
    with pytest.raises(SystemExit, match="bad argument 'c=1'"):
        compare.main(["c=1"])
