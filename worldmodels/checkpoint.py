"""Self-describing checkpoints: weights + model config + metadata, plain containers only (no pickled modules).

File layout (a dict saved with torch.save, read with torch.load(weights_only=True)):
    format          "grasp-wm/jepa"      what kind of file this is
    format_version  1                    bumped on incompatible changes; old versions get a converter here
    model_config    ModelConfig.to_dict()
    model           state_dict (weights and normalisation buffers)
    meta            dict: env (EnvConfig fields), config (resolved run config), action stats, git commit,
                    metrics, step, versions, ...  (returned to the caller as is)
    training        optional dict for resuming (optimizer state, step); ignored by load_checkpoint
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from worldmodels.model import JEPA, Ensemble, ModelConfig, ModelError, build_model

FORMAT = "grasp-wm/jepa"
FORMAT_VERSION = 1
PRETRAINED = Path(__file__).resolve().parent / "pretrained"  # the shipped <env>.pt (and <env>-<obs_type>.pt) files


class CheckpointError(ModelError):
    """A missing, truncated, corrupt or foreign checkpoint file, or one trained for another env or observation
    type; the message is one line for the user."""


def save_checkpoint(path: str | os.PathLike, model: JEPA | Ensemble, meta: dict,
                    training: dict | None = None) -> None:
    """Write atomically: a crash leaves either the previous file or the new one, never a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "model_config": model.cfg.to_dict(),
               "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "meta": meta}
    if training is not None:
        payload["training"] = training
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The raw checkpoint dict, checked to be one of ours in a version this code reads."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:   # unpickling garbage can raise almost anything; all of it means "unreadable"
        if isinstance(err, pickle.UnpicklingError) and "weights only" in str(err).lower():
            # a pickle of arbitrary objects (refused, never executed): someone else's file
            raise CheckpointError(f"{str(path)!r} is not a grasp-wm world-model checkpoint") from None
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {str(path)!r} is truncated or corrupt ({reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a grasp-wm world-model checkpoint")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {str(path)!r} has format_version {payload.get('format_version')!r}; "
                              f"this code reads {FORMAT_VERSION}")
    return payload


def load_checkpoint(path: str | os.PathLike, env: str | None = None, obs_type: str | None = None,
                    device: str | torch.device = "cpu") -> tuple[JEPA | Ensemble, dict]:
    """(model, meta). With `env` / `obs_type`, a checkpoint trained for another env or observation type is an
    error naming both. The model is in eval mode on `device`."""
    payload = read_checkpoint(path)
    meta = payload["meta"]
    trained_env = meta.get("env", {})
    trained = f"{trained_env.get('name')!r} ({trained_env.get('obs_type')} observations)"
    if env is not None and trained_env.get("name") != env:
        raise CheckpointError(f"checkpoint {str(path)!r} was trained for env {trained}, not {env!r}")
    if obs_type is not None and trained_env.get("obs_type") != obs_type:
        raise CheckpointError(f"checkpoint {str(path)!r} was trained for env {trained}, not {obs_type} "
                              f"observations; set env.obs_type={trained_env.get('obs_type')} or use another "
                              f"checkpoint")
    model = build_model(ModelConfig(**payload["model_config"]))
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {str(path)!r}: weights do not match its model config "
                              f"({str(err).splitlines()[0]})") from None
    return model.to(device).eval(), meta
