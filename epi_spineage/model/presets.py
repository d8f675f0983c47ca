"""Named training configurations. ``phantom-tiny``: the CPU demo on the built-in phantoms.

``phantom-tiny`` deliberately departs from the study's settings to finish in about two CPU minutes on
one core: a small timm backbone (PP-LCNet 0.75, the best of the small backbones we tried on two cores) at
96 x 48, batch 16, a higher learning rate (3e-3) with a short linear warm-up, gradient clipping at norm 2
and cosine decay, small random affine augmentation for training from scratch, 24 epochs, the validation
fallback for bias correction, and one torch thread (two threads on a busy two-core machine wait on each
other at every operation; docs/guides/train.md). Everything it writes is synthetic and says so. 96 x 48
for 24 epochs gave nearly as good a model as 128 x 64 for 40 (test MAE 9.66 against 9.21 years, r 0.69
against 0.72) in about 60 % of the CPU time, which brings ``make demo`` to about three minutes
(docs/quickstart.md#demo). It needs the preset's 800 phantoms: on 300 (at 28 epochs) it ended flat.
It keeps the contiguous memory format: channels-last (``TrainConfig.channels_last``) took about 28 % less
CPU per step but gave a weaker model (test r 0.59 against 0.72 at 800 phantoms and 128 x 64, and a flat
one at 300).

Presets budget by epochs, never by wall clock: a preset trains the same number of optimizer steps,
and gives the same model, on a slow or busy machine as on a fast one (a time budget once stopped
phantom-tiny after 2 epochs on a loaded machine and produced a flat predictor; issue 11).
"""

from __future__ import annotations

import logging
from pathlib import Path

from epi_spineage.errors import UserError

log = logging.getLogger(__name__)

PRESETS: dict[str, dict] = {
    "phantom-tiny": {
        "backbone": "lcnet_075",
        "image_size": (96, 48),
        "batch_size": 16,
        "epochs": 24,
        "patience": 24,
        "lr": 3e-3,
        "lr_schedule": "cosine",
        "warmup_steps": 100,
        "clip_grad": 2.0,
        "bias_folds": 0,
        "workers": 0,
        "threads": 1,
        "augment": True,
        "synthetic": True,
        "phantoms": 800,
        "phantom_seed": 0,
        "phantom_scale": 0.1,
    },
    "phantom-bench": {  # benchmarks/train_phantom.py
        "backbone": "lcnet_075",
        "image_size": (128, 64),
        "batch_size": 16,
        "epochs": 60,
        "patience": 60,
        "lr": 3e-3,
        "lr_schedule": "cosine",
        "warmup_steps": 200,
        "clip_grad": 2.0,
        "bias_folds": 0,
        "workers": 0,
        "threads": 1,
        "augment": True,
        "synthetic": True,
        "phantoms": 2000,
        "phantom_seed": 1,
        "phantom_scale": 0.1,
    },
}


def preset(name: str) -> dict:
    try:
        return dict(PRESETS[name])
    except KeyError:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def make_phantoms(out_dir: Path, n: int, seed: int = 0, scale: float = 0.1, modality: str = "mixed"):
    """Write ``n`` phantom DICOMs into ``out_dir/phantoms.zip``; return the manifest DataFrame."""
    try:
        from epi_spineage.synth.archive import write_phantom_archive
    except ImportError as exc:
        raise UserError(f"the phantom generator is not available in this installation ({exc})") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / "phantoms.zip"
    log.info("writing %d synthetic phantoms to %s", n, archive)
    return write_phantom_archive(archive, n=n, seed=seed, scale=scale, modality=modality, image_format="dicom")
