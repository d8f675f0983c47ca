"""``python -m epi_spineage.explain``: forwards to the tool in ``epi_spineage.cli.explain``.

The Grad-CAM functions moved to ``epi_spineage.model.gradcam``; they are re-exported here so that
``from epi_spineage.explain import gradcam`` keeps working.
"""

from __future__ import annotations

from epi_spineage.cli.explain import main
from epi_spineage.model.gradcam import TARGETS, gradcam, overlay, write_overlays

__all__ = ["TARGETS", "gradcam", "main", "overlay", "write_overlays"]

if __name__ == "__main__":
    raise SystemExit(main())
