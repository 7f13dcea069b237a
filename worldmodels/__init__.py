"""Latent world models for planning: a JEPA (encoder + Markov predictor, SIGReg/VICReg anti-collapse, no decoder)
or an ensemble of them, and self-describing checkpoints; these need only torch. `worldmodels.training` (datasets,
the training step, DDP) and `worldmodels.metrics` (held-out model quality) are the training extras, imported on
their own."""
from worldmodels.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from worldmodels.model import JEPA, Ensemble, ModelConfig, ModelError, build_model
from worldmodels.regularizers import REGULARIZERS, latent_health, regularizer, sigreg, vicreg

__all__ = ["FORMAT_VERSION", "JEPA", "REGULARIZERS", "CheckpointError", "Ensemble", "ModelConfig", "ModelError",
           "build_model", "latent_health", "load_checkpoint", "read_checkpoint", "regularizer", "save_checkpoint",
           "sigreg", "vicreg"]
