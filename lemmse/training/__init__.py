"""Training (one typed entry point, checkpoints that resume) and inference over measurement stores.

* :class:`TrainConfig` + :func:`train` (``lemmse train``);
* :func:`load_trained` (the EMA network of a model directory) and :func:`infer_store`
  (``lemmse infer``).
"""
from __future__ import annotations

from lemmse.lazy import lazy_exports

#: Public name -> the submodule that defines it. Imported on first use (PEP 562), so that
#: ``lemmse.training.sigma_spec`` and ``lemmse.training.config`` can be reached without PyTorch's
#: import cost in workflow jobs that only plan paths.
_EXPORTS = {
    "CHECKPOINT": "checkpoint", "OPTIONS": "checkpoint", "STATS": "checkpoint", "load_checkpoint": "checkpoint",
    "TrainConfig": "config", "resolve_config": "config", "validate": "config",
    "infer_store": "infer", "load_trained": "infer",
    "TrainingDivergedError": "loop", "TrainingInterrupted": "loop", "TrainResult": "loop", "cosine_lr": "loop",
    "train": "loop",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
