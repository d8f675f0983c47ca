"""Grad-CAM gallery for the report (optional): needs torch, a checkpoint and an image manifest.

``build_gallery(model, images, n)`` picks the ``n`` images with the largest PAD (most accelerated)
from the manifest (all of them are scored first when the manifest gives ages; otherwise the first
``n``), and returns items for ``figures.image_gallery``; when it cannot be built it returns a one-line
reason that the report shows instead. Torch is imported only here, only when asked for.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

_MAX_SCORED = 256  # scoring the whole manifest to rank PAD would be a scoring job, not a report


def build_gallery(model: str | None, images: str | None, n: int = 8):
    if not model or not images:
        return "both --model (checkpoint) and --images (image manifest) are needed"
    try:
        import torch

        from epi_spineage.model.checkpoint import load_checkpoint
        from epi_spineage.model.gradcam import gradcam
        from epi_spineage.model.inference import predict_table, prepare_images
        from epi_spineage.tables.manifest import read_manifest
    except ImportError as exc:
        return f"the imaging extra is not installed ({exc.name}); pip install 'epi-spineage[imaging]'"
    try:
        loaded = load_checkpoint(model, map_location="cpu")
        df = read_manifest(images).head(_MAX_SCORED)
        refs = list(df["image"])
        mods = list(df["modality"]) if "modality" in df.columns else "auto"
        pred = predict_table(loaded, refs, mods)
        pred["age_years"] = df["age_years"].to_numpy(float) if "age_years" in df.columns else np.nan
        pred["pad"] = pred["spine_age_years"] - pred["age_years"]
        chosen = (
            pred.sort_values("pad", ascending=False, kind="stable").head(max(1, n))
            if pred["pad"].notna().any()
            else pred.head(max(1, n))
        )
        x, _ = prepare_images(list(chosen["image"]), loaded.preprocess_config, list(chosen["modality"]))
        cams = gradcam(loaded.network, torch.from_numpy(x), "older")  # target = the reported (untempered) spine age
    except Exception as exc:  # the gallery is an extra: say why, keep the report
        log.warning("Grad-CAM gallery failed: %s", exc)
        return f"Grad-CAM failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    items = []
    for i, r in enumerate(chosen.itertuples(index=False)):
        age = f"age {r.age_years:.0f}, " if np.isfinite(r.age_years) else ""
        # the image reference may hold a folder name; show only a running number (no identifiers)
        items.append({"image": x[i, 0], "overlay": cams[i], "title": f"#{i + 1}: {age}spine {r.spine_age_years:.1f} y"})
    return items
