"""What a resumed run may change of the config it continues (train.py and evaluate.py share the rule)."""
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
