"""Training (one typed entry point, checkpoints that resume) and inference over measurement stores.

* :class:`TrainConfig` + :func:`train` (``lemmse train``);
* :func:`load_trained` (the EMA network of a model directory) and :func:`infer_store`
  (``lemmse infer``).
"""
from lemmse.training.checkpoint import CHECKPOINT, OPTIONS, STATS, load_checkpoint
from lemmse.training.config import TrainConfig, resolve_config, validate
from lemmse.training.infer import infer_store, load_trained
from lemmse.training.loop import TrainingDivergedError, TrainingInterrupted, TrainResult, cosine_lr, train

__all__ = [
    "TrainConfig", "resolve_config", "validate", "train", "TrainResult", "TrainingDivergedError",
    "TrainingInterrupted",
    "cosine_lr", "load_checkpoint", "load_trained", "infer_store", "CHECKPOINT", "OPTIONS", "STATS",
]
