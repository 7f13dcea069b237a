"""train.py end to end on tiny configs: outputs, exact resume, DDP equivalence, user errors. The pieces it drives
are tested in tests/worldmodels/test_wm_training.py and test_wm_metrics.py."""
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import configs
import train
from envs import EnvConfig
from envs.data import collect
from worldmodels import load_checkpoint, provenance, training
from worldmodels.checkpoint import read_checkpoint

TINY = ["env.image_size=16", "model.latent_dim=8", "model.channels=[4,8]", "model.hidden=16",
        "model.action_embed=8", "model.predictor_hidden=16", "train.batch_size=8", "train.seq_len=3",
        "train.warmup=2", "train.eval_episodes=4", "train.log_every=2", "train.eval_every=3",
        "train.sigreg_projections=16"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "wall"
    env = EnvConfig(name="wall", obs_type="pixels", image_size=16, options={"door_y": 32.0, "door_width": 12.0})
    return collect(env, out, episodes=16, episode_len=6, seed=0, episodes_per_shard=8)


def config(dataset, logdir, *extra):
    return configs.load_config("train", ["env=wall", f"data.path={dataset}", f"logdir={logdir}", *TINY, *extra])


def weights(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def killed_at_step(kill: int, monkeypatch, cfg) -> None:
    """Runs train.py with `cfg` until step `kill` raises KeyboardInterrupt, as a kill at that moment would."""
    batch = training.Episodes.batch

    def killed(self, seed, step, *args):
        if step == kill:
            raise KeyboardInterrupt
        return batch(self, seed, step, *args)

    with monkeypatch.context() as patch:
        patch.setattr(training.Episodes, "batch", killed)
        with pytest.raises(KeyboardInterrupt):
            train.run(cfg)


def test_git_commit_is_taken_when_the_run_starts(dataset, tmp_path, monkeypatch):
    # the tree is edited while the data loads (minutes for a pixel dataset): the record keeps the start's commit
    tree = {"commit": "aaa"}
    monkeypatch.setattr(provenance, "git_commit", lambda: tree["commit"])
    open_dataset = train.open_dataset

    def edited_while_loading(*args):
        tree["commit"] = "aaa (with uncommitted changes)"
        return open_dataset(*args)

    monkeypatch.setattr(train, "open_dataset", edited_while_loading)
    train.run(config(dataset, tmp_path, "train.steps=2", "train.ckpt_every=1"))
    assert read_checkpoint(tmp_path / "checkpoint.pt")["meta"]["git_commit"] == "aaa"
    assert read_checkpoint(tmp_path / "model.pt")["meta"]["git_commit"] == "aaa"


def test_run_writes_checkpoint_and_tensorboard(dataset, tmp_path):
    model = train.run(config(dataset, tmp_path, "train.steps=4", "train.ckpt_every=2", "mpc.horizon=4"))
    loaded, meta = load_checkpoint(tmp_path / "checkpoint.pt", env="wall", obs_type="pixels")
    for k, v in weights(model).items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert meta["step"] == 4 and meta["config"]["data"]["path"] == str(Path(dataset).resolve())
    final, final_meta = load_checkpoint(tmp_path / "model.pt", env="wall", obs_type="pixels")
    assert "training" not in read_checkpoint(tmp_path / "model.pt") and final_meta["step"] == 4
    for k, v in weights(model).items():
        assert torch.equal(final.state_dict()[k], v), k
    assert meta["env"]["image_size"] == 16 and meta["config"]["model"]["latent_dim"] == 8
    assert {"git_commit", "versions", "action_mean", "action_std", "seed"} <= set(meta)
    for key in ("train/pred_loss", "train/reg_loss", "train/effective_rank", "perf/steps_per_s",
                "model/rel_err_k1", "model/rel_err_k4", "model/rel_err_k5", "model/rel_err_k6", "model/probe_r2",
                "model/probe_r2/xy",
                "model/dist_spearman"):
        assert key in meta["metrics"], key
    assert not any(k.startswith("eval/") for k in meta["metrics"])
    assert meta["train_time_s"] > 0
    assert meta["data"]["train_episodes"] == 12 and meta["data"]["transitions"] == 12 * 6   # 16 - 4 held out
    assert list(tmp_path.glob("events.out.tfevents.*"))


def test_resume_after_a_kill_reaches_the_same_weights(dataset, tmp_path, monkeypatch):
    steps = ["train.steps=6", "train.ckpt_every=3"]
    uninterrupted = weights(train.run(config(dataset, tmp_path / "a", *steps)))

    killed_at_step(4, monkeypatch, config(dataset, tmp_path / "b", *steps))  # after the step-3 checkpoint and one more
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")[1]["step"] == 3
    resumed = weights(train.run(config(dataset, tmp_path / "b", *steps, "resume=true")))
    for k, v in uninterrupted.items():
        assert torch.equal(resumed[k], v), k


def _ddp_worker(rank, port, dataset, logdir, out, overrides):
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(2)
    model = train.run(config(dataset, logdir, *overrides))  # threads=1, the default
    assert torch.get_num_threads() == 1  # each process sets its own
    torch.save(weights(model), Path(out) / f"rank{rank}.pt")


@pytest.mark.slow  # several processes (or a server): the second CI step, `pytest -m slow`
@pytest.mark.parametrize("ensemble", [1, 2])  # per-member regulariser on the gathered batch, clip on averaged grads
def test_ddp_two_processes_match_each_other_and_one_process(dataset, tmp_path, ensemble):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    overrides = ("train.steps=3", "train.ckpt_every=3", f"model.ensemble={ensemble}")
    mp.spawn(_ddp_worker, args=(port, str(dataset), str(tmp_path / "ddp"), str(tmp_path), overrides), nprocs=2)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    single = weights(train.run(config(dataset, tmp_path / "single", *overrides)))
    for k in rank0:
        assert torch.equal(rank0[k], rank1[k]), k
        assert torch.allclose(rank0[k], single[k], atol=1e-5), k
    assert (tmp_path / "ddp" / "checkpoint.pt").exists()


@pytest.mark.parametrize("extra, message", [
    (["resume=true"], "does not exist"),
    (["train.regularizer=ica"], "choose one of: sigreg, vicreg"),
    (["train.seq_len=9"], "episodes have only 7 frames"),
    (["env.image_size=32"], "collected with env.image_size=16, but env.image_size=32"),
    (["threads=0"], "threads=0: must be >= 1"),
])
def test_user_errors_are_one_line_exit_2(dataset, tmp_path, capsys, extra, message):
    argv = ["env=wall", f"data.path={dataset}", f"logdir={tmp_path}", *TINY, *extra]
    assert configs.main(train.run, "train", argv, user_errors=train.USER_ERRORS) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_resume_refuses_a_changed_config(dataset, tmp_path):
    train.run(config(dataset, tmp_path, "train.steps=2"))
    with pytest.raises(training.TrainingError, match="train.lr=0.002 differs from the checkpoint's 0.001"):
        train.run(config(dataset, tmp_path, "train.steps=2", "train.lr=0.002", "resume=true"))


def trains_resumes_exactly_and_evaluates(dataset, tmp_path, monkeypatch, *overrides):
    """Trains with `overrides` for 4 steps, again killed at step 3 and resumed (the same final weights), then plans
    with the model in evaluate.py. Returns the model and meta of the checkpoint."""
    import evaluate

    extra = [*overrides, "train.steps=4", "train.ckpt_every=2"]
    uninterrupted = weights(train.run(config(dataset, tmp_path / "a", *extra)))
    killed_at_step(3, monkeypatch, config(dataset, tmp_path / "b", *extra))
    resumed = weights(train.run(config(dataset, tmp_path / "b", *extra, "resume=true")))
    for k, v in uninterrupted.items():
        assert torch.equal(resumed[k], v), k
    argv = [f"checkpoint={tmp_path / 'a' / 'model.pt'}", "env.image_size=16", f"logdir={tmp_path / 'eval'}",
            "episodes=2", "batch=2", "log_videos=1", "mpc.horizon=3", "mpc.budget=2", "planner.iters=4",
            "planner.iters_warm=2", "planner.sync_every=2"]
    assert configs.main(evaluate.run, "evaluate", argv, user_errors=evaluate.USER_ERRORS) == 0
    assert (tmp_path / "eval" / "results.json").exists()
    return load_checkpoint(tmp_path / "a" / "model.pt")


def test_frame_history_trains_resumes_exactly_and_evaluates(dataset, tmp_path, monkeypatch):
    """model.history=2 end to end: the checkpoint carries k, a resumed run ends with the uninterrupted run's
    weights, and evaluate.py plans with the model (windows at reset, plan pictures from the dataset's windows)."""
    model, meta = trains_resumes_exactly_and_evaluates(dataset, tmp_path, monkeypatch, "model.history=2")
    assert model.history == 2 and meta["config"]["model"]["history"] == 2 and "model/rel_err_k1" in meta["metrics"]


def test_resume_with_another_history_is_one_line_and_older_runs_resume(dataset, tmp_path, capsys):
    train.run(config(dataset, tmp_path, "train.steps=2"))
    capsys.readouterr()
    argv = ["env=wall", f"data.path={dataset}", f"logdir={tmp_path}", *TINY, "train.steps=2", "resume=true"]
    assert configs.main(train.run, "train", [*argv, "model.history=2"], user_errors=train.USER_ERRORS) == 2
    err = capsys.readouterr().err
    assert "model.history=2 differs from the checkpoint's 1" in err and err.count("\n") == 1
    payload = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    del payload["meta"]["config"]["model"]["history"], payload["model_config"]["history"]   # written before history
    del payload["meta"]["config"]["model"]["state_targets"], payload["meta"]["config"]["train"]["state_weight"]
    del payload["model_config"]["state_target_index"], payload["model_config"]["state_target_angles"]  # and them
    torch.save(payload, tmp_path / "checkpoint.pt")
    assert train.run(config(dataset, tmp_path, "train.steps=2", "resume=true")).history == 1


def test_a_model_unusable_for_planning_gets_a_warning_at_the_end(dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(train, "model_metrics", lambda *args: {"model/rel_err_k1": 1.3, "model/dist_spearman": 0.2})
    train.run(config(dataset, tmp_path, "train.steps=2"))
    err = capsys.readouterr().err
    assert "WARNING: the world model may be unusable for planning (model/rel_err_k1=1.3 >= 1" in err
    assert "Train longer" in err and "dist_spearman=0.2" not in err


def test_a_training_run_writes_an_hparams_entry_with_its_model_metrics(dataset, tmp_path):
    """Training runs used to be missing from TensorBoard's HParams table."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    train.run(config(dataset, tmp_path, "train.steps=2"))
    acc = EventAccumulator(str(tmp_path)).Reload()
    plugin = acc.PluginTagToContent("hparams")
    assert "_hparams_/experiment" in plugin and "_hparams_/session_start_info" in plugin
    assert b"model/rel_err_k1" in plugin["_hparams_/experiment"] and b"model.history" in plugin["_hparams_/experiment"]


def test_an_ensemble_trains_each_member_as_it_would_alone_and_evaluates(dataset, tmp_path):
    """model.ensemble=2: member 0 ends with exactly the single model's weights (same seed: same init, batches and
    SIGReg directions; its own regulariser and gradient clip), member 1 differs;
    the checkpoint loads as an Ensemble that evaluate.py plans with."""
    import evaluate
    from worldmodels import Ensemble

    steps = ["train.steps=3", "train.grad_clip=0.01"]   # a clip that binds: a joint clip would change member 0
    single = weights(train.run(config(dataset, tmp_path / "one", *steps)))
    pair = train.run(config(dataset, tmp_path / "two", *steps, "model.ensemble=2"))
    assert isinstance(pair, Ensemble) and pair.latent_dim == 16
    member0, member1 = (weights(m) for m in pair.members)
    for k, v in single.items():
        assert torch.equal(member0[k], v), k
    assert not torch.equal(member1["encoder.convs.0.weight"], single["encoder.convs.0.weight"])
    model, meta = load_checkpoint(tmp_path / "two" / "model.pt")
    assert isinstance(model, Ensemble) and meta["config"]["model"]["ensemble"] == 2
    argv = [f"checkpoint={tmp_path / 'two' / 'model.pt'}", "env.image_size=16", f"logdir={tmp_path / 'eval'}",
            "episodes=2", "batch=2", "log_videos=1", "mpc.horizon=3", "mpc.budget=2", "planner.iters=4",
            "planner.iters_warm=2", "planner.sync_every=2"]
    assert configs.main(evaluate.run, "evaluate", argv, user_errors=evaluate.USER_ERRORS) == 0
    assert (tmp_path / "eval" / "results.json").exists()


def test_state_targets_train_resume_exactly_and_evaluate(dataset, tmp_path, monkeypatch):
    """model.state_targets=[xy] end to end: the pixel model's state head is trained to wall's agent position
    (normalised by the training states), train/state_loss is logged, a resumed run ends with the uninterrupted
    run's weights, and evaluate.py plans with it (planning never reads the head, so no states are passed)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    model, meta = trains_resumes_exactly_and_evaluates(dataset, tmp_path, monkeypatch, "model.state_targets=[xy]")
    assert model.cfg.state_target_index == (0, 1) and meta["config"]["model"]["state_targets"] == ["xy"]
    assert float(model.state_target_std.min()) > 1.0   # the agent's position in pixel units spreads over the room
    assert meta["config"]["train"]["state_weight"] == 1.0 and "train/state_loss" in meta["metrics"]
    assert "train/state_loss" in EventAccumulator(str(tmp_path / "a")).Reload().Tags()["scalars"]


def test_proprioception_trains_resumes_exactly_and_evaluates(dataset, tmp_path, monkeypatch):
    """model.proprio=[xy] end to end: the checkpoint reads wall's agent position beside its pixels (columns 0, 1,
    normalised by the training states), a resumed run ends with the uninterrupted run's weights, and evaluate.py
    plans with it (the agent passes each frame's env state)."""
    model, meta = trains_resumes_exactly_and_evaluates(dataset, tmp_path, monkeypatch, "model.proprio=[xy]")
    assert model.cfg.proprio_index == (0, 1) and meta["config"]["model"]["proprio"] == ["xy"]
    assert float(model.proprio_std.min()) > 1.0   # the agent's position in pixel units spreads over the room
