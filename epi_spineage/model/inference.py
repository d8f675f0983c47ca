"""Images on disk -> model input -> spine age table (used by ``predict`` and ``explain``)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from epi_spineage.errors import UserError

log = logging.getLogger(__name__)


def _summarise(notes: list[str]) -> None:
    """A few reader notes are shown as they are; many (a whole manifest) become one line."""
    if len(notes) <= 5:
        for note in notes:
            warnings.warn(note, stacklevel=3)
    else:
        warnings.warn(f"{len(notes)} reader notes, e.g. {notes[0]}", stacklevel=3)


def prepare_images(
    refs: Sequence[str], config, modality: str | Sequence[str] = "auto", notes: list[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """Load and preprocess images with the model's config; returns ``(array (B,1,H,W), modalities)``.

    ``modality``: one value for all images or one per image; ``"auto"`` takes the modality inferred
    from the file (DICOM Modality / series), and radiograph when it cannot be told (logged once).
    Reader notes (e.g. "MONOCHROME1 inverted") are warned, as one summary line when there are many,
    or appended to ``notes`` when a list is given.
    """
    from epi_spineage.imaging import load_image, preprocess

    mods_in = [modality] * len(refs) if isinstance(modality, str) else list(modality)
    arrays, modalities, unknown, found = [], [], 0, []
    mod: str | None
    for ref, mod in zip(refs, mods_in):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            img = load_image(ref)
        found += [str(w.message) for w in caught]
        if mod == "auto":
            mod = img.meta.get("modality")
            if mod is None:
                unknown += 1
                mod = "radiograph"
        arrays.append(preprocess(img.pixels, modality=mod or "radiograph", config=config))
        modalities.append(mod)
    if notes is None:
        _summarise(found)
    else:
        notes += found
    if unknown:
        log.warning("%d image(s) do not record their modality; treated as radiographs (use --modality)", unknown)
    if not arrays:
        raise UserError("no images given")
    return np.stack(arrays).astype("float32"), modalities


def predict_table(
    loaded, refs: Sequence[str], modality: str | Sequence[str] = "auto", batch_size: int = 16
) -> pd.DataFrame:
    """Spine age (expected age), SD and central 90% interval per image, in input order.

    Columns: image, modality, spine_age_years, spine_age_sd_years, interval90_low_years,
    interval90_high_years, model_id.
    """
    rows: list[dict] = []
    notes: list[str] = []
    _predict_chunks(loaded, refs, modality, batch_size, rows, notes)
    _summarise(notes)
    return pd.DataFrame(rows)


def _predict_chunks(loaded, refs, modality, batch_size, rows, notes) -> None:
    import torch

    from epi_spineage.model.calibration import predictive_interval
    from epi_spineage.model.network import logits_to_age

    for start in range(0, len(refs), batch_size):
        chunk = list(refs[start : start + batch_size])
        mods_chunk = modality if isinstance(modality, str) else list(modality[start : start + batch_size])
        x, mods = prepare_images(chunk, loaded.preprocess_config, mods_chunk, notes=notes)
        logits_t = loaded.logits(torch.from_numpy(x)).cpu()
        mean, sd = (t.double().numpy() for t in logits_to_age(logits_t, loaded.network.ages.cpu(), loaded.temperature))
        logits = logits_t.numpy()
        lo, hi = predictive_interval(logits, loaded.temperature, 0.9, loaded.min_age)
        for i, ref in enumerate(chunk):
            rows.append(
                {
                    "image": ref,
                    "modality": mods[i],
                    "spine_age_years": float(mean[i]),
                    "spine_age_sd_years": float(sd[i]),
                    "interval90_low_years": float(lo[i]),
                    "interval90_high_years": float(hi[i]),
                    "model_id": loaded.model_id,
                }
            )
