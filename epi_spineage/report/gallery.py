"""Grad-CAM gallery for the report (optional): needs torch and ``epi_spineage.explain``.

Returns a list of items for ``figures.image_gallery`` or, when it cannot be built, a one-line reason
that the report shows instead. Never imported unless ``--model``/``--images`` are given.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def build_gallery(model: str | None, images: str | None, n: int = 8):
    if not model or not images:
        return "both --model and --images are needed"
    try:
        import torch  # noqa: F401
        from epi_spineage import explain
    except ImportError as exc:
        return f"the imaging extra is not installed ({exc.name}); pip install 'epi-spineage[imaging]'"
    fn = getattr(explain, "gallery_items", None)
    if fn is None:
        return "this version of epi_spineage.explain has no gallery_items()"
    try:
        return fn(model, images, n=n)
    except Exception as exc:  # the gallery is an extra: report why, keep the report
        log.warning("Grad-CAM gallery failed: %s", exc)
        return f"Grad-CAM failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
