import subprocess
import sys
from pathlib import Path

import pytest

from configs import ConfigError, comments, load_config, main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    (tmp_path / "env").mkdir()
    (tmp_path / "planner").mkdir()
    (tmp_path / "run.yaml").write_text(
        "defaults: {env: a, planner: p}\nseed: 0\nlr: 0.1\nname: run\ncheckpoint: null\nflag: false\n"
        "mpc: {horizon: 10, budget: 50}\nplanners: [p]\n")
    (tmp_path / "env" / "a.yaml").write_text("env: {name: a, size: 64}\nmpc: {horizon: 20}\n")
    (tmp_path / "env" / "b.yaml").write_text("env: {name: b, size: 32}\n")
    (tmp_path / "planner" / "p.yaml").write_text("planner: {name: p, iters: 300}\n")
    return tmp_path


def test_defaults_compose_group_members_at_the_root(config_dir):
    cfg = load_config("run", [], config_dir)
    assert cfg.env.name == "a" and cfg.planner.iters == 300
    assert cfg.mpc.horizon == 20 and cfg.mpc.budget == 50  # the env member overrides the base mpc section
    assert "defaults" not in cfg


def test_group_choice_and_overrides(config_dir):
    cfg = load_config("run", ["env=b", "mpc.horizon=40", "lr=1", "checkpoint=x.pt", "planners=[p,q]",
                              "flag=true"], config_dir)
    assert cfg.env.name == "b" and cfg.mpc.horizon == 40 and cfg.lr == 1
    assert cfg.checkpoint == "x.pt" and list(cfg.planners) == ["p", "q"] and cfg.flag is True


@pytest.mark.parametrize("argv, words", [
    (["env=c"], ["unknown env 'c'", "a, b"]),
    (["planner=zz"], ["unknown planner 'zz'", "p"]),
    (["mpc.horizn=3"], ["'mpc.horizn'", "budget, horizon"]),
    (["sed=1"], ["'sed'", "seed"]),
    (["seed=abc"], ["seed='abc'", "int"]),
    (["flag=3"], ["flag=3", "bool"]),
    (["seed"], ["key=value"]),
])
def test_bad_input_is_a_one_line_error_naming_value_and_choices(config_dir, argv, words):
    with pytest.raises(ConfigError) as err:
        load_config("run", argv, config_dir)
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_an_env_tunes_the_chosen_planner_and_the_command_line_still_wins(config_dir, capsys):
    (config_dir / "env" / "a.yaml").write_text(
        "env: {name: a, size: 64}\nplanner_settings:\n  p:\n    iters: 50  # tuned on a\n")
    (config_dir / "planner" / "q.yaml").write_text("planner: {name: q, iters: 300}\n")
    assert load_config("run", [], config_dir).planner.iters == 50
    assert "planner_settings" not in load_config("run", [], config_dir)
    assert load_config("run", ["planner.iters=7"], config_dir).planner.iters == 7
    assert load_config("run", ["planner=q"], config_dir).planner.iters == 300  # settings of another planner
    assert load_config("run", ["env=b"], config_dir).planner.iters == 300  # another env
    assert main(lambda cfg: None, "run", ["--help"], config_dir=config_dir) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("planner.iters="))
    assert line.split(None, 1)[1] == "[env/a.yaml planner_settings.p] tuned on a"
    (config_dir / "env" / "a.yaml").write_text("env: {name: a}\nplanner_settings: {pp: {iters: 50}}\n")
    with pytest.raises(ConfigError, match=r"planner_settings.pp names no planner; choose from: p, q$"):
        load_config("run", [], config_dir)
    for settings, message in (("{p: {iter: 50}}", "planner_settings.p: unknown key 'iter'; valid keys: iters, name"),
                              ("{p: {iters: 0.5}}", "planner_settings.p.iters=0.5: expected a value of type int"),
                              ("{p: null}", "planner_settings: expected a mapping of planner names to settings")):
        (config_dir / "env" / "a.yaml").write_text(f"env: {{name: a}}\nplanner_settings: {settings}\n")
        with pytest.raises(ConfigError, match=r"^env/a.yaml ") as err:
            load_config("run", [], config_dir)
        assert message in str(err.value) and "\n" not in str(err.value)


def test_the_entry_points_that_plan_take_an_envs_planner_settings_and_train_does_not():
    assert load_config("evaluate", ["env=pusht"]).planner.sync_steps == 30  # pusht's tuned GRASP
    assert load_config("evaluate", ["env=wall"]).planner.sync_steps == 10
    gd = load_config("evaluate", ["planner=gd"]).planner
    assert load_config("evaluate", ["env=pusht", "planner=gd"]).planner == gd  # settings for another planner only
    assert load_config("collect", ["env=pusht"]).planner.sync_steps == 30
    assert "planner_settings" not in load_config("train", ["env=pusht"])


def test_main_turns_user_errors_into_exit_2(config_dir, capsys):
    seen = []
    assert main(seen.append, "run", ["seed=3"], config_dir=config_dir) == 0 and seen[0].seed == 3
    assert main(seen.append, "run", ["env=nope"], config_dir=config_dir) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown env 'nope'")

    def fails(cfg):
        raise KeyError("a bug is not a user error")
    with pytest.raises(KeyError):
        main(fails, "run", [], config_dir=config_dir)


@pytest.mark.parametrize("arg, shown", [("seed=null", "seed='null'"), ("seed=", "seed=''"),
                                        ("mpc.horizon=null", "mpc.horizon='null'"), ("lr=", "lr=''")])
def test_null_or_empty_for_a_typed_key_is_a_one_line_error_with_exit_2(config_dir, capsys, arg, shown):
    """Pins a bug: `episodes=`, `episodes=null`, `seed=null` passed the type check (null took anything) and the
    entry point crashed later with a traceback and exit 1."""
    assert main(lambda cfg: None, "run", [arg], config_dir=config_dir) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and shown in err[0] and ("int" in err[0] or "float" in err[0])
    assert "default" in err[0]


def test_null_is_taken_by_a_null_default_or_a_key_whose_comment_says_what_null_means(config_dir):
    (config_dir / "run.yaml").write_text((config_dir / "run.yaml").read_text()
                                         + "threads: 1   # (null: torch's default)\n")
    cfg = load_config("run", ["checkpoint=null", "threads=null", "checkpoint=", "planner.iters=5"], config_dir)
    assert cfg.checkpoint is None and cfg.threads is None


def test_comments_reader_nests_by_indentation(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("# header\na: 1   # top\nb:\n  c: x  # nested # hash\n  d: {e: 1}  # flow\nf: 2\n")
    assert comments(path) == {"a": "top", "b.c": "nested # hash", "b.d": "flow"}


def test_help_lists_every_key_with_default_and_comment(config_dir, capsys):
    (config_dir / "run.yaml").write_text("defaults: {env: a}\nseed: 0   # task seed\nmpc:\n  horizon: 10  # steps\n")
    (config_dir / "env" / "a.yaml").write_text("env: {name: a, size: 64}\n")
    (config_dir / "env" / "b.yaml").write_text("env:\n  name: b   # which env\n  size: 32  # pixels\n")
    assert main(lambda cfg: None, "run", ["--help"], config_dir=config_dir) == 0
    out = capsys.readouterr().out
    assert "env=a" in out and "choices: a, b" in out
    for key, note in (("seed=0", "task seed"), ("mpc.horizon=10", "steps"), ("env.size=64", "pixels")):
        line = next(line for line in out.splitlines() if line.strip().startswith(key))
        assert line.rstrip().endswith(note)  # env a documents nothing: b's comments fill in
    assert main(lambda cfg: None, "run", ["env=b", "-h"], config_dir=config_dir) == 0
    assert "env.size=32" in capsys.readouterr().out


def test_help_of_the_real_entry_points_documents_their_main_keys():
    from configs import help_text
    text = help_text("evaluate", ["planner=cem"])
    for key in ("episodes=50", "mpc.horizon=", "planner.samples=300", "env.obs_type=pixels", "log_videos=4"):
        line = next(line for line in text.splitlines() if line.strip().startswith(key))
        assert len(line.split(None, 1)) == 2, line  # a comment follows the value


@pytest.mark.parametrize("command, usage", [
    (["-m", "benchmarks.planner_sweep", "--help"], "usage: python -m benchmarks.planner_sweep "),
    (["train.py", "--help"], "usage: python train.py "),
    (["evaluate.py", "-h", "planner=cem"], "usage: python evaluate.py "),
])
def test_help_of_every_entry_point_names_its_real_invocation(command, usage):
    """`python -m benchmarks.planner_sweep --help` used to print `usage: python benchmark.py`, a file that does
    not exist."""
    proc = subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(usage) and "keys (key=value" in proc.stdout


@pytest.mark.parametrize("entry, argv, words", [
    # pins a bug: each was accepted and ignored, the section belonging to another entry point
    ("evaluate", ["train.steps=1"], ["'train.steps'", "valid keys: batch, checkpoint"]),
    ("evaluate", ["model.latent_dim=7"], ["'model.latent_dim'"]),
    ("benchmark", ["mpc.horizon=99"], ["'mpc.horizon'", "budget_factor"]),
    ("train", ["env=pusht", "planner.iters=3"], ["'planner.iters'"]),
])
def test_each_entry_point_refuses_keys_of_sections_it_does_not_use(entry, argv, words):
    with pytest.raises(ConfigError) as err:
        load_config(entry, argv)
    for word in words:
        assert word in str(err.value)


def test_member_sections_keep_what_each_entry_point_uses():
    evaluate = load_config("evaluate", ["env=pusht"])
    assert set(evaluate) >= {"env", "planner", "mpc"} and not {"data", "model", "train"} & set(evaluate)
    assert evaluate.mpc.horizon == 5 and evaluate.env.options.relative_actions is True
    train = load_config("train", ["env=pusht"])
    assert train.train.batch_size == 128 and train.data.episodes == 600 and "planner" not in train
    assert train.mpc.horizon == 5  # the k-step error at the planning horizon
    bench = load_config("benchmark", ["env=pusht"])
    assert bench.env.name == "pusht" and set(bench.mpc) == {"budget_factor", "replan_every", "warm_start"}
