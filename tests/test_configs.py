from pathlib import Path

import pytest

from configs import ConfigError, load_config, main


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
