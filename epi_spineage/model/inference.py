"""Images on disk -> model input -> spine age table (used by ``predict`` and ``explain``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from epi_spineage.errors import UserError

log = logging.getLogger(__name__)


def prepare_images(refs: Sequence[str], config, modality: str | Sequence[str] = "auto") -> tuple[np.ndarray, list[str]]:
    """Load and preprocess images with the model's config; returns ``(array (B,1,H,W), modalities)``.

    ``modality``: one value for all images or one per image; ``"auto"`` takes the modality inferred
    from the file (DICOM Modality / series), and radiograph when it cannot be told (logged once).
    """
    from epi_spineage.model._compat import load_image, preprocess

    mods_in = [modality] * len(refs) if isinstance(modality, str) else list(modality)
    arrays, modalities, unknown = [], [], 0
    for ref, mod in zip(refs, mods_in):
        img = load_image(ref)
        if mod == "auto":
            mod = img.meta.get("modality")
            if mod is None:
                unknown += 1
                mod = "radiograph"
        arrays.append(preprocess(img.pixels, mod, config))
        modalities.append(mod)
    if unknown:
        log.warning("%d image(s) do not record their modality; treated as radiographs (use --modality)", unknown)
    if not arrays:
        raise UserError("no images given")
    return np.stack(arrays).astype("float32"), modalities


def predict_table(loaded, refs: Sequence[str], modality: str | Sequence[str] = "auto", batch_size: int = 16) -> pd.DataFrame:
    """Spine age (expected age), SD and central 90% interval per image, in input order.

    Columns: image, modality, spine_age_years, spine_age_sd_years, interval90_low_years,
    interval90_high_years, model_id.
    """
    import torch

    from epi_spineage.model.calibration import predictive_interval

    rows = []
    for start in range(0, len(refs), batch_size):
        chunk = list(refs[start:start + batch_size])
        mods_chunk = modality if isinstance(modality, str) else list(modality[start:start + batch_size])
        x, mods = prepare_images(chunk, loaded.preprocess_config, mods_chunk)
        logits = loaded.logits(torch.from_numpy(x)).cpu().numpy()
        mean, sd = loaded.predict(torch.from_numpy(x))
        lo, hi = predictive_interval(logits, loaded.temperature, 0.9, loaded.min_age)
        for i, ref in enumerate(chunk):
            rows.append({"image": ref, "modality": mods[i], "spine_age_years": float(mean[i]),
                         "spine_age_sd_years": float(sd[i]), "interval90_low_years": float(lo[i]),
                         "interval90_high_years": float(hi[i]), "model_id": loaded.model_id})
    return pd.DataFrame(rows)
