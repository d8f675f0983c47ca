"""The spine-age model: timm backbone + age head, mean-variance loss, checkpoints, bias correction.

Importing this package does not import torch; names are resolved on first use, so
``from epi_spineage.model import BiasCorrection`` stays torch-free.
"""

from __future__ import annotations

from epi_spineage._lazy import lazy_exports

_EXPORTS = {
    "BiasCorrection": "bias",
    "ManufacturerBiasCorrection": "bias",
    "MeanVarianceLoss": "loss",
    "SpineAgeNet": "network",
    "build_model": "network",
    "load_init_weights": "network",
    "logits_to_age": "network",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "LoadedModel": "checkpoint",
    "read_meta": "checkpoint",
    "fit_temperature": "calibration",
    "interval_coverage": "calibration",
    "predictive_interval": "calibration",
    "TrainConfig": "training",
    "run_training": "pipeline",
    "predict_table": "inference",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
