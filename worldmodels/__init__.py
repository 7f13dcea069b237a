"""Latent world models for planning: a JEPA (encoder + Markov predictor, SIGReg/VICReg anti-collapse, no decoder)
and self-describing checkpoints. Needs only torch; training lives in train.py."""
from worldmodels.checkpoint import FORMAT_VERSION, load_checkpoint, read_checkpoint, save_checkpoint
from worldmodels.model import JEPA, CheckpointError, ModelConfig
from worldmodels.regularizers import REGULARIZERS, latent_health, regularizer, sigreg, vicreg

__all__ = ["FORMAT_VERSION", "JEPA", "REGULARIZERS", "CheckpointError", "ModelConfig", "latent_health",
           "load_checkpoint", "read_checkpoint", "regularizer", "save_checkpoint", "sigreg", "vicreg"]
