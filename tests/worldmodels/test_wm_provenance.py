"""What a resumed run may change of the config it continues (train.py and evaluate.py share the rule), and when a
run's code is marked as uncommitted."""
import subprocess

from worldmodels import provenance
from worldmodels.provenance import config_change

SAVED = {"seed": 0, "resume": False, "logdir": "a", "device": "cpu", "threads": 1,
         "planner": {"name": "grasp", "iters": 10}, "mpc": {"horizon": 4}}


def test_only_resume_logdir_device_and_threads_may_change():
    assert config_change(SAVED, {**SAVED, "resume": True, "logdir": "b", "device": "cuda", "threads": None}) is None


def test_the_first_changed_nested_key_is_named_with_both_values():
    now = {**SAVED, "planner": {"name": "grasp", "iters": 20}, "seed": 3}
    assert config_change(SAVED, now) == ("planner.iters", 10, 20)  # the first in sorted order


def test_a_key_present_on_one_side_only_is_a_change():
    assert config_change(SAVED, {**SAVED, "mpc": {"horizon": 4, "budget": 9}}) == ("mpc.budget", None, 9)
    assert config_change({**SAVED, "batch": 2}, SAVED) == ("batch", 2, None)


def test_code_changes_mark_the_commit_but_results_folders_and_untracked_files_do_not(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                       capture_output=True)
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (tmp_path / "code.py").write_text("a = 1\n")
    (results / "r.json").write_text("{}\n")
    (results / "old.json").write_text("{}\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "init")
    (results / "r.json").write_text("{\"x\": 1}\n")      # a sweep rewriting and removing its committed results
    (results / "old.json").unlink()
    (tmp_path / "new.py").write_text("")
    assert not provenance.uncommitted_changes(tmp_path)
    head = provenance.git_commit(tmp_path)
    assert len(head) == 40
    (tmp_path / "code.py").write_text("a = 2\n")
    assert provenance.uncommitted_changes(tmp_path)
    assert provenance.git_commit(tmp_path) == f"{head} (with uncommitted changes)"
