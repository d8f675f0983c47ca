"""Synthetic data: spine phantoms (images) and a cohort simulator with planted truth. Torch-free.

Everything made here is synthetic (``epi_spineage.schema.SYNTHETIC_NOTICE``).
``python -m epi_spineage.synth cohort|images --help``.
"""

from __future__ import annotations

from epi_spineage.synth.cohort import DERIVATION, EXTERNAL, CohortSpec, SimulatedStudy, simulate_study, write_study
from epi_spineage.synth.frax_surrogate import frax_surrogate


def main(argv=None) -> int:
    from epi_spineage.cli.synth import main as _main

    return _main(argv)


def __getattr__(name):  # phantoms and DICOM need numpy/cv2/pydicom; load them on first use
    if name in ("render_phantom", "write_phantom_archive"):
        from epi_spineage.synth import phantom

        return getattr(phantom, name)
    if name == "write_dicom":
        from epi_spineage.synth.dicom import write_dicom

        return write_dicom
    raise AttributeError(name)


__all__ = ["CohortSpec", "DERIVATION", "EXTERNAL", "SimulatedStudy", "frax_surrogate", "main",
           "render_phantom", "simulate_study", "write_dicom", "write_phantom_archive", "write_study"]
