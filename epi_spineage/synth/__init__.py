"""Synthetic data: spine phantoms (images) and a cohort simulator with planted truth. Torch-free.

Everything made here is synthetic (``epi_spineage.schema.SYNTHETIC_NOTICE``).
``python -m epi_spineage.synth cohort|images --help``.
"""

from __future__ import annotations

from epi_spineage._lazy import lazy_exports
from epi_spineage.synth.cohort import (
    DERIVATION,
    EXTERNAL,
    CohortSpec,
    ManufacturerShift,
    SimulatedStudy,
    simulate_study,
    write_study,
)
from epi_spineage.synth.frax_surrogate import frax_surrogate


def main(argv=None) -> int:
    from epi_spineage.cli.synth import main as _main

    return _main(argv)


# phantoms and DICOM need cv2/pydicom: loaded on first use
_EXPORTS = {
    "render_phantom": "phantom",
    "write_phantom_archive": "archive",
    "write_dicom": "dicom",
}

__all__ = [
    *_EXPORTS,
    "CohortSpec",
    "DERIVATION",
    "EXTERNAL",
    "ManufacturerShift",
    "SimulatedStudy",
    "frax_surrogate",
    "main",
    "simulate_study",
    "write_study",
]
__all__.sort()
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
